"""``maskloop embed SOURCE --ray``: the embeddings of a whole image set, on a Ray cluster.

A Ray Data pipeline, streamed: the image locations are split into small blocks; CPU tasks
read each file, hash it (sha256 of its bytes, the cache key the app and the server use),
skip it when its embedding is already in the cache folder, and decode it; model actors
(``map_batches`` with a callable class: one per GPU, else one per worker with one torch
thread) encode the rest and write each embedding atomically into the shared cache folder,
in the disk-cache format (``app.predict.cache``). The driver only counts the results that
stream back and shows progress.

Resumable: a finished embedding is a file, so a killed driver's rerun skips it; an actor
killed mid-job is restarted by Ray and its batch retried (``max_restarts``,
``max_task_retries``); an image that cannot be read is reported, never retried forever.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.cluster.ray_env import cluster_cpus, cluster_gpus, require_ray
from app.cluster.worker_model import WorkerModel
from app.core.errors import MaskLoopError
from app.core.types import EmbeddingKey

log = logging.getLogger(__name__)

TODO, CACHED, FAILED, EMBEDDED = "todo", "cached", "failed", "embedded"
# an actor on a CPU asks for less than a core, so that the light read-and-decode tasks
# (LOAD_CPUS each) still fit beside as many actors as there are cores
ACTOR_CPUS = 0.9
LOAD_CPUS = 0.1
MAX_BLOCKS = 2000  # blocks the locations are split into (progress and balance granularity)


@dataclass
class ClusterEmbedReport:
    """What a run did: counts, failures (location, message), the time and the workers."""

    embedded: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    workers: int = 0


def _load_row(row: dict[str, Any], model_id: str, cache_dir: str) -> dict[str, Any]:
    """Read, hash and (unless its embedding is cached) decode one image: a CPU task."""
    from app.cluster.sources import read_bytes
    from app.core.images import decode_image
    from app.predict.cache.store import EmbeddingCache

    location = str(row["location"])
    out: dict[str, Any] = {"location": location, "hash": "", "status": TODO, "error": "",
                           "pixels": b"", "height": 0, "width": 0}
    try:
        data = read_bytes(location)
        out["hash"] = hashlib.sha256(data).hexdigest()
        cache = EmbeddingCache(memory_bytes=0, disk_dir=cache_dir)
        if cache.on_disk(EmbeddingKey(out["hash"], model_id)):
            out["status"] = CACHED
            return out
        image = decode_image(data, location)
    except MaskLoopError as exc:  # ImageError: unreadable, not an image, too large
        out.update(status=FAILED, error=str(exc))
        return out
    out.update(pixels=image.tobytes(), height=image.shape[0], width=image.shape[1])
    return out


class EncodeActor:
    """A model actor: builds the predictor once, then encodes the batches Ray Data sends,
    writing each embedding to the shared cache folder (nothing big goes back)."""

    def __init__(self, model: WorkerModel, cache_dir: str) -> None:
        from app.predict.cache.store import EmbeddingCache

        self.cache = EmbeddingCache(memory_bytes=0, disk_dir=cache_dir)  # disk only
        self.predictor = model.build(cache=self.cache)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status = [str(s) for s in batch["status"]]
        error = [str(e) for e in batch["error"]]
        todo = [i for i, s in enumerate(status) if s == TODO]
        images = [np.frombuffer(bytearray(batch["pixels"][i]), dtype=np.uint8).reshape(
            int(batch["height"][i]), int(batch["width"][i]), 3) for i in todo]
        hashes = [str(batch["hash"][i]) for i in todo]
        for i, message in zip(todo, self._encode(images, hashes), strict=True):
            status[i], error[i] = (FAILED, message) if message else (EMBEDDED, "")
        return {"location": batch["location"], "hash": batch["hash"],
                "status": np.array(status), "error": np.array(error)}

    def _encode(self, images: list[np.ndarray], hashes: list[str]) -> list[str]:
        """An error message per image ("" when embedded): the batch at once, else one by
        one so that one image the model cannot take does not fail the others."""
        if not images:
            return []
        try:
            self.predictor.embed_batch(images, hashes, batch_size=len(images))
            return [""] * len(images)
        except MaskLoopError:  # an image the model cannot take: find which, one by one
            pass
        messages = []
        for image, h in zip(images, hashes, strict=True):
            try:
                self.predictor.embed(image, image_hash=h)
                messages.append("")
            except MaskLoopError as exc:
                messages.append(str(exc))
        return messages


def embed_on_ray(
    locations: list[str],
    model: WorkerModel,
    cache_dir: Path,
    *,
    workers: int | None = None,
    batch: int | None = None,
    on_result: Callable[[str, str, str], None] | None = None,
) -> ClusterEmbedReport:
    """Embed ``locations`` (local paths or URIs) into ``cache_dir`` on the connected Ray.

    ``workers`` model actors (default: one per GPU, else one per CPU); ``batch`` images per
    encoder call (default 4 on GPUs, 1 on CPUs). ``on_result(location, status, error)`` is
    called on the driver as each image's result streams back (progress). Ctrl-C stops the
    job: what finished is in the cache, and the report says ``interrupted``."""
    ray = require_ray()
    report = ClusterEmbedReport()
    t0 = time.perf_counter()
    gpus = cluster_gpus()
    use_gpus = gpus > 0 and model.device in ("auto", "cuda")
    count = workers or (gpus if use_gpus else cluster_cpus())
    report.workers = count
    per_call = batch or (4 if use_gpus else 1)
    resources: dict[str, Any] = {"num_gpus": 1} if use_gpus else {"num_cpus": ACTOR_CPUS}
    cache_dir.mkdir(parents=True, exist_ok=True)

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows one bar of its own
    items = [{"location": loc} for loc in locations]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), MAX_BLOCKS)))
    ds = ds.map(_load_row, fn_kwargs={"model_id": model.model_id,
                                      "cache_dir": str(cache_dir)}, num_cpus=LOAD_CPUS)
    # Ray Data's actor pools restart a dead actor and retry its batch without limit
    # (max_restarts=-1, max_task_retries=-1 are its defaults): a killed worker costs a batch
    ds = ds.map_batches(
        EncodeActor, fn_constructor_kwargs={"model": model, "cache_dir": str(cache_dir)},
        batch_size=per_call, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=count), **resources,
    )
    try:
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for location, status, error in zip(out["location"], out["status"], out["error"],
                                               strict=True):
                _count(report, str(location), str(status), str(error))
                if on_result is not None:
                    on_result(str(location), str(status), str(error))
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        report.seconds = time.perf_counter() - t0
    return report


def _count(report: ClusterEmbedReport, location: str, status: str, error: str) -> None:
    if status == EMBEDDED:
        report.embedded += 1
    elif status == CACHED:
        report.cached += 1
    else:
        report.failed.append((location, error or f"status {status}"))


def run_with_progress(locations: list[str], model: WorkerModel, cache_dir: Path, *,
                      workers: int | None = None, batch: int | None = None
                      ) -> ClusterEmbedReport:
    """``embed_on_ray`` with a tqdm bar on stderr (embedded, cached, failed)."""
    from tqdm import tqdm

    bar = tqdm(total=len(locations), unit="img", desc="embedding (ray)", file=sys.stderr,
               dynamic_ncols=True, smoothing=0.1)
    counts = {EMBEDDED: 0, CACHED: 0, FAILED: 0}

    def step(location: str, status: str, error: str) -> None:
        counts[status if status in counts else FAILED] += 1
        if status == FAILED:
            shown = error if location in error else f"{location}: {error}"
            bar.write(f"warning: skipped {shown}", file=sys.stderr)
        bar.update(1)
        bar.set_postfix(cached=counts[CACHED], failed=counts[FAILED], refresh=False)

    try:
        return embed_on_ray(locations, model, cache_dir, workers=workers, batch=batch,
                            on_result=step)
    finally:
        bar.close()
