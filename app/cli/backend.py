"""Choosing the prediction backend from command-line options (shared by every command).

``--model NAME`` (a registry name) or ``--checkpoint PATH [--config NAME]`` pick SAM2;
without either, the first installed registry model is used, else the classical backend
(GrabCut, no download needed). torch and sam2 are imported only when SAM2 is chosen.
``--tiled`` (commands that call ``add_tiled_arg``) wraps a local backend in
``TiledPredictor``: full-resolution tiles on images over twice the model's input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.predict.base import Predictor, PredictorError
from app.predict.models.registry import REGISTRY, get_model, installed_checkpoint

if TYPE_CHECKING:
    from app.predict.cache.store import EmbeddingCache

DEVICES = ("auto", "cpu", "cuda", "mps")
# app.predict.sam2.runtimes.RUNTIMES (not imported here: it imports torch)
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
BACKENDS = ("sam2", "classical")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--model NAME | --checkpoint PATH [--config NAME]``, ``--device`` and
    ``--runtime``."""
    group = parser.add_argument_group("model")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--model", metavar="NAME", choices=list(REGISTRY),
        help=f"SAM2.1 model from the registry ({', '.join(REGISTRY)}); "
        "download it with 'maskloop models download NAME'",
    )
    which.add_argument(
        "--checkpoint", metavar="PATH", type=Path,
        help="a SAM2 checkpoint file of your own ({'model': state_dict})",
    )
    group.add_argument(
        "--config", metavar="NAME",
        help="the SAM2 config of --checkpoint: a registry name (tiny, small, base_plus, large) "
        "or a sam2 config such as configs/sam2.1/sam2.1_hiera_t.yaml (default: guessed)",
    )
    group.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="where SAM2 runs (default: auto = CUDA, then MPS, then CPU)",
    )
    group.add_argument(
        "--runtime", choices=RUNTIMES, default=None,
        help="what computes SAM2 on a CPU: auto = ONNX Runtime where installed (the model is "
        "converted once and cached; torch if that fails), torch, onnxruntime or openvino "
        "(default: $MASKLOOP_RUNTIME, else auto; CUDA and MPS always run torch)",
    )


def add_tiled_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--tiled``: opt-in, since tiling multiplies the encode work on ordinary photos."""
    parser.add_argument(
        "--tiled", action="store_true",
        help="full-resolution tiles on large images (local sam2/classical backends): an "
        "image over twice the model's input side is encoded in tiles at native resolution "
        "and a mask spanning tiles is stitched into one; costs 4+ encodes per large image",
    )


def tiled(predictor: Predictor) -> Predictor:
    """``predictor`` wrapped in ``TiledPredictor`` (its capabilities pass through, less
    batched decode and stepped encode)."""
    from app.predict.tiles.predictor import TiledPredictor

    return TiledPredictor(predictor)


def check_tiled(args: argparse.Namespace) -> None:
    """Refuse ``--tiled`` with a remote backend (its server encodes whole images)."""
    if getattr(args, "tiled", False) and (getattr(args, "server", None)
                                          or getattr(args, "hosted", None)):
        raise PredictorError("--tiled works with the local backends (sam2, classical), "
                             "not with --server or --hosted")


def predictor_from_args(
    args: argparse.Namespace,
    backend: str | None = None,
    cache: EmbeddingCache | None = None,
) -> Predictor:
    """The Predictor the options ask for. ``backend`` "sam2" requires a SAM2 model,
    "classical" forces GrabCut, None picks SAM2 when one is given or installed, else
    classical. Raises PredictorError with what to do when a model is missing.
    ``--server URL`` / ``--hosted NAME`` (see remote_backend.py) take precedence.
    ``--tiled`` wraps the local backend in ``TiledPredictor``."""
    from app.cli.remote_backend import remote_predictor_from_args

    check_tiled(args)
    remote = remote_predictor_from_args(args)
    if remote is not None:
        return remote
    local = _local_predictor(args, backend, cache)
    return tiled(local) if getattr(args, "tiled", False) else local


def _local_predictor(
    args: argparse.Namespace,
    backend: str | None,
    cache: EmbeddingCache | None,
) -> Predictor:
    """The local SAM2 or classical predictor of ``args`` (``predictor_from_args``)."""
    model = getattr(args, "model", None)
    checkpoint = getattr(args, "checkpoint", None)
    config = getattr(args, "config", None)
    device = getattr(args, "device", None) or "auto"
    runtime = getattr(args, "runtime", None)
    if backend not in (None, *BACKENDS):
        raise PredictorError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
    if config is not None and checkpoint is None:
        raise PredictorError("--config goes with --checkpoint (a --model knows its config)")
    if backend == "classical":
        if model is not None or checkpoint is not None:
            raise PredictorError("--model/--checkpoint need the sam2 backend, not classical")
        return _classical()
    if checkpoint is not None:
        return sam2_predictor(checkpoint, config=config, device=device, cache=cache,
                              runtime=runtime)
    if model is not None:
        path = installed_checkpoint(model)
        if path is None:
            raise PredictorError(_not_installed(model))
        return sam2_predictor(path, model_name=model, device=device, cache=cache,
                              runtime=runtime)
    for name in REGISTRY:
        path = installed_checkpoint(name)
        if path is not None:
            return sam2_predictor(path, model_name=name, device=device, cache=cache,
                                  runtime=runtime)
    if backend == "sam2":
        raise PredictorError(
            "no SAM2 model is installed: run 'maskloop models download tiny' "
            "(or another size), or pass --checkpoint PATH"
        )
    return _classical()


def sam2_predictor(
    checkpoint: Path | str,
    *,
    model_name: str | None = None,
    config: str | None = None,
    device: str = "auto",
    cache: EmbeddingCache | None = None,
    runtime: str | None = None,
) -> Predictor:
    """A local SAM2 predictor: a registry model's checkpoint (``model_name``) or a custom
    checkpoint with an optional config; ``runtime`` None: $MASKLOOP_RUNTIME, else auto."""
    from app.predict.sam2.predictor import SAM2Predictor

    if model_name is not None:
        spec = get_model(model_name)
        return SAM2Predictor(checkpoint, spec.config, spec.model_id, device, cache,
                             name=f"SAM2.1 {spec.name}", runtime=runtime)
    return SAM2Predictor(checkpoint, config, None, device, cache, runtime=runtime)


def random_weight_sam2(config: str = "tiny", device: str = "cpu", seed: int = 0) -> object:
    """A SAM2 model (torch module) with seeded random weights: tests and benchmarks."""
    from app.predict.sam2 import model as sam2_model
    return sam2_model.random_weight_sam2(config, device, seed)


def save_random_checkpoint(path: Path | str, config: str = "tiny", seed: int = 0) -> Path:
    """Write a seeded random-weight SAM2 checkpoint ({"model": state_dict}) to ``path``."""
    from app.predict.sam2 import model as sam2_model
    return sam2_model.save_random_checkpoint(path, config, seed)


def _not_installed(name: str) -> str:
    spec = get_model(name)
    return (
        f"SAM2 model {spec.name!r} is not installed: run 'maskloop models download {spec.name}' "
        "or pass --checkpoint PATH"
    )


def _classical() -> Predictor:
    from app.predict.classical.predictor import ClassicalPredictor

    return ClassicalPredictor()
