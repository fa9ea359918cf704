"""What a Ray actor needs to build its own predictor: a small picklable recipe (SAM2, or the
classical backend for per-image jobs such as ``autolabel --ray``).

A predictor (torch modules, a cache, threads) cannot travel to another process; its recipe
can. Each actor builds the model once in its constructor, then serves many batches."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.images import content_hash
from app.core.threads import THREADS_ENV
from app.predict.base import PredictorError
from app.predict.models.registry import REGISTRY, get_model, installed_checkpoint

if TYPE_CHECKING:
    from app.predict.cache.store import EmbeddingCache
    from app.predict.classical.predictor import ClassicalPredictor
    from app.predict.sam2.predictor import SAM2Predictor


@dataclass(frozen=True)
class WorkerModel:
    """A SAM2 checkpoint and how to run it in a worker: ``device`` "auto" takes the GPU Ray
    gave the actor, else the CPU with ``threads`` torch threads (one per worker on a CPU:
    the workers, not the threads, use the cores)."""

    checkpoint: str
    model_id: str
    config: str | None = None
    name: str | None = None
    device: str = "auto"
    runtime: str | None = None
    threads: int = 1

    def build(self, cache: EmbeddingCache | None = None) -> SAM2Predictor:
        """The predictor, built in this process (an actor's constructor)."""
        os.environ[THREADS_ENV] = str(max(1, self.threads))  # read by the predictor
        import torch

        from app.predict.sam2.predictor import SAM2Predictor

        torch.set_num_threads(max(1, self.threads))
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        predictor = SAM2Predictor(self.checkpoint, self.config, self.model_id, device, cache,
                                  name=self.name, runtime=self.runtime)
        if predictor.model_id != self.model_id:  # the driver's id keys the cache checks
            raise PredictorError(f"{self.checkpoint} built model {predictor.model_id}, "
                                 f"not {self.model_id}")
        return predictor

    @property
    def description(self) -> str:
        return self.name or f"SAM2 {Path(self.checkpoint).name}"


@dataclass(frozen=True)
class ClassicalModel:
    """The classical (GrabCut) backend as a worker recipe: no weights, ``threads`` OpenCV
    threads per worker (the workers, not the threads, use the cores)."""

    threads: int = 1

    def build(self, cache: EmbeddingCache | None = None) -> ClassicalPredictor:
        """The predictor, built in this process (``cache`` unused: it keeps no embeddings)."""
        import cv2

        from app.predict.classical.predictor import ClassicalPredictor

        cv2.setNumThreads(max(1, self.threads))
        return ClassicalPredictor()

    @property
    def model_id(self) -> str:
        from app.predict.classical.predictor import MODEL_ID

        return MODEL_ID

    @property
    def description(self) -> str:
        return "Classical GrabCut"


def worker_model(model: str | None = None, checkpoint: Path | None = None,
                 config: str | None = None, device: str = "auto", runtime: str | None = None,
                 threads: int = 1) -> WorkerModel:
    """The recipe for ``--model NAME`` or ``--checkpoint PATH [--config]`` (else the first
    installed registry model), as ``predictor_from_args`` picks it; PredictorError if none."""
    if config is not None and checkpoint is None:
        raise PredictorError("--config goes with --checkpoint (a --model knows its config)")
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise PredictorError(f"checkpoint {path} not found")
        # the id SAM2Predictor gives a custom checkpoint: its sha256 prefix
        return WorkerModel(str(path.resolve()), f"custom-{content_hash(path)[:16]}", config,
                           None, device, runtime, threads)
    names = [model] if model is not None else list(REGISTRY)
    for name in names:
        found = installed_checkpoint(name)
        if found is not None:
            spec = get_model(name)
            return WorkerModel(str(found), spec.model_id, spec.config, f"SAM2.1 {spec.name}",
                               device, runtime, threads)
    if model is not None:
        raise PredictorError(f"SAM2 model {model!r} is not installed: run 'maskloop models "
                             f"download {model}' or pass --checkpoint PATH")
    raise PredictorError("--ray needs a SAM2 model: run 'maskloop models download tiny' or "
                         "pass --checkpoint PATH")
