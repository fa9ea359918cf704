"""The worker side of the prediction service: the records of queued work and the job bodies.

``PredictionService`` (service.py) decides WHAT runs next under its lock; the bodies here
are HOW each job runs on the worker thread (load, encode, decode, propose) and how its
outcome is recorded and reported through the callbacks. Internal to the service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from app.core.errors import Cancelled
from app.core.jobs import CancelToken, check
from app.core.types import EmbeddingKey, Prompt
from app.predict.base import Predictor, PredictorError
from app.predict.cache import EmbeddingCache
from app.predict.service_types import ImageLoader, Job, JobKind, ServiceCallbacks, ServiceStats

log = logging.getLogger("app.predict.service")  # the service's logger, wherever the code lives


class _Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


@dataclass(eq=False)
class _Image:
    hash: str
    loader: ImageLoader
    token: CancelToken = field(default_factory=CancelToken)
    status: _Status = _Status.PENDING
    key: EmbeddingKey | None = None
    image: np.ndarray | None = None  # kept while current, to re-embed after a prefetch
    error: BaseException | None = None


@dataclass
class _Click:
    prompt: Prompt
    generation: int
    image_hash: str | None
    requested: float


@dataclass
class _Everything:
    generation: int
    image_hash: str | None
    knobs: dict[str, Any]
    token: CancelToken = field(default_factory=CancelToken)


@dataclass
class _Task:
    job: Job
    token: CancelToken | None
    run: Callable[[], None]
    item: _Image | None = None  # the prefetch item, to re-queue it when a click preempts it


class _ServiceJobs:
    """The job bodies, mixed into ``PredictionService``: they run on its worker thread and
    share its state (declared here, set in ``PredictionService.__init__``)."""

    predictor: Predictor
    callbacks: ServiceCallbacks
    _model_id: str
    _cache: EmbeddingCache | None
    _cond: threading.Condition
    _current: _Image | None
    _prefetch_total: int
    _prefetch_done: int
    _prefetched: OrderedDict[str, None]
    _preemptions: dict[str, int]
    _stats: ServiceStats
    _last_embedded: str | None

    def _emit(self, name: str, *args: Any) -> None:
        fn = getattr(self.callbacks, name, None)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("prediction service callback %s raised", name)

    def _fail(self, job: Job, exc: BaseException) -> None:
        log.warning("%s job for image %s failed: %s", job.kind, job.image_hash, exc)
        with self._cond:
            self._stats.errors += 1
        self._emit("on_error", exc, job)

    def _embed(self, image: np.ndarray, image_hash: str, token: CancelToken | None) -> EmbeddingKey:
        key = self.predictor.embed(image, image_hash=image_hash, cancel=token)
        self._last_embedded = image_hash
        return key

    def _run_embed(self, cur: _Image, job: Job) -> None:
        t0 = time.perf_counter()
        self._emit("on_progress", "encoding image", 0, 1)
        try:
            check(cur.token)
            image = cur.loader()
            check(cur.token)
            key = self._embed(image, cur.hash, cur.token)
        except Cancelled:
            with self._cond:
                if self._current is cur:  # cancelled but still current: encode it again
                    cur.status, cur.token = _Status.PENDING, CancelToken()
            raise
        except Exception as exc:
            with self._cond:
                is_current = self._current is cur
                if is_current:
                    cur.status, cur.error = _Status.FAILED, exc
            if is_current:
                self._fail(job, exc)
            return
        self._became_ready(cur, image, key, time.perf_counter() - t0)

    def _became_ready(self, cur: _Image, image: np.ndarray, key: EmbeddingKey, sec: float) -> None:
        with self._cond:
            if self._current is not cur:
                return  # the person moved on meanwhile
            cur.status, cur.key, cur.image = _Status.READY, key, image
            self._stats.embeds += 1
        self._emit("on_progress", "image encoded", 1, 1)
        self._emit("on_embedding_ready", key, sec)

    def _run_prefetch(self, item: _Image) -> None:
        t0 = time.perf_counter()
        try:
            if self._skip_prefetch(item.hash):
                with self._cond:
                    self._stats.prefetch_skipped += 1
                    self._prefetch_done += 1
                    done, total = self._prefetch_done, self._prefetch_total
                self._emit("on_progress", "prefetching next images", done, total)
                return
            check(item.token)
            try:
                image = item.loader()
                check(item.token)
                key = self._embed(image, item.hash, item.token)
            except Cancelled:
                raise
            except Exception as exc:
                self._prefetch_failed(item, exc)
                return
            with self._cond:
                self._preemptions.pop(item.hash, None)
                cur = self._current
                promoted = cur is not None and cur.token is item.token
                if not promoted:
                    self._stats.prefetched += 1
                    self._prefetch_done += 1
                    self._prefetched[item.hash] = None
                    while len(self._prefetched) > 256:
                        self._prefetched.popitem(last=False)
                done, total = self._prefetch_done, self._prefetch_total
            if promoted and cur is not None:
                self._became_ready(cur, image, key, time.perf_counter() - t0)
            else:
                self._emit("on_progress", "prefetching next images", done, total)
        finally:
            with self._cond:
                cur = self._current
                if cur is not None and cur.token is item.token and cur.status == _Status.RUNNING:
                    # promoted to current but not finished here (skipped, failed, cancelled)
                    cur.status, cur.token = _Status.PENDING, CancelToken()

    def _prefetch_failed(self, item: _Image, exc: BaseException) -> None:
        """An unreadable next image: reported, and counted as done, so that the progress
        still reaches its total. (If it had become the current image meanwhile, the
        ``finally`` of ``_run_prefetch`` queues its encode again, which reports it.)"""
        with self._cond:
            cur = self._current
            promoted = cur is not None and cur.token is item.token
            if not promoted:
                self._prefetch_done += 1
            done, total = self._prefetch_done, self._prefetch_total
        if promoted:
            return
        self._fail(Job(JobKind.PREFETCH, item.hash), exc)
        self._emit("on_progress", "prefetching next images", done, total)

    def _skip_prefetch(self, image_hash: str) -> bool:
        """True if the predictor already holds this image (its cache, or prefetched lately)."""
        if self._cache is not None:
            return self._cache.contains(EmbeddingKey(image_hash, self._model_id))
        with self._cond:
            return image_hash in self._prefetched

    def _ensure_current_embedded(self, cur: _Image) -> EmbeddingKey:
        """After a prefetch the predictor may hold another image: embed the current one again
        (a cache hit for SAM2, cheap for the classical backend)."""
        if cur.status == _Status.FAILED or cur.key is None or cur.image is None:
            raise PredictorError(f"the image could not be encoded: {cur.error}")
        if self._last_embedded != cur.hash:
            return self._embed(cur.image, cur.hash, None)
        return cur.key

    def _run_click(self, cur: _Image, click: _Click, job: Job) -> None:
        key = self._ensure_current_embedded(cur)
        result = self.predictor.predict(key, click.prompt)
        latency_ms = (time.perf_counter() - click.requested) * 1000.0
        with self._cond:
            self._stats.masks += 1
        self._emit("on_mask", result, click.prompt, click.generation, latency_ms)

    def _run_everything(self, cur: _Image, ev: _Everything, job: Job) -> None:
        key = self._ensure_current_embedded(cur)

        def progress(done: int, total: int, message: str = "") -> None:
            self._emit("on_progress", message or "segmenting everything", done, total)

        proposals = self.predictor.segment_everything(
            key, cancel=ev.token, progress=progress, **ev.knobs
        )
        check(ev.token)
        with self._cond:
            self._stats.everything += 1
        self._emit("on_everything", proposals, ev.generation)
