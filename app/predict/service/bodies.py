"""The job bodies of the prediction service: what its worker thread (and, for a click, its
click lane) runs for each kind of job, and how each tells its outcome through the callbacks.
What runs next, under the service's lock, is decided in ``service.py``; ``PredictionService``
is both (it inherits these bodies)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import ParamSpec

import numpy as np

from app.core.errors import Cancelled
from app.core.jobs import CancelToken, check
from app.core.lru import BoundedCache
from app.core.threads import worker_threads
from app.core.types import EmbeddingKey
from app.predict.base import EncodeJob, Predictor, PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.service.encodes import ResumableEncodes, _Encode
from app.predict.service.records import _Click, _Everything, _FindIn, _Image, _Status
from app.predict.service.rhythm import ClickRhythm
from app.predict.service.stepped import SteppedJob, SteppedJobs
from app.predict.service.types import (
    Job,
    JobKind,
    Phase,
    ProgressEvent,
    ServiceCallbacks,
    ServiceStats,
)

log = logging.getLogger("app.predict.service.service")  # one logger for the whole service
P = ParamSpec("P")


class JobBodies:
    """The job bodies (worker thread; a click also on the click lane). The state they share
    with the scheduler is made by ``PredictionService.__init__``."""

    predictor: Predictor
    callbacks: ServiceCallbacks
    _cond: threading.Condition
    _stats: ServiceStats
    _cache: EmbeddingCache | None
    _model_id: str
    _current: _Image | None
    _prefetch: deque[_Image]
    _prefetch_total: int
    _prefetch_done: int
    _prefetched: BoundedCache[str, bool]
    _preemptions: dict[str, int]
    _encodes: ResumableEncodes
    _steps: SteppedJobs
    _finding: _FindIn | None
    _threads: int | None
    _rhythm: ClickRhythm
    _last_embedded: str | None

    @staticmethod
    def _notify(fn: Callable[P, None] | None, *args: P.args, **kwargs: P.kwargs) -> None:
        """Call one of the callbacks (typed: its own arguments), if set; it may not raise."""
        if fn is None:
            return
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("prediction service callback %s raised",
                          getattr(fn, "__name__", fn))

    def _progress(self, event: ProgressEvent) -> None:
        self._notify(self.callbacks.on_progress, event)

    def _use_threads(self, n: int) -> None:
        """Give the next job ``n`` CPU threads (where the predictor has ``thread_control``)."""
        n = max(1, n)
        if n == self._threads:
            return
        setter = getattr(self.predictor, "set_threads", None)
        try:
            if not self.predictor.capabilities.thread_control or not callable(setter):
                return
            setter(n)
        except Exception:
            log.exception("setting %d threads failed", n)
            return
        self._threads = n

    def _fail(self, job: Job, exc: BaseException) -> None:
        log.warning("%s job for image %s failed: %s", job.kind, job.image_hash, exc)
        with self._cond:
            self._stats.errors += 1
        self._notify(self.callbacks.on_error, exc, job)

    def _embed(self, image: np.ndarray, image_hash: str, token: CancelToken | None) -> EmbeddingKey:
        key = self.predictor.embed(image, image_hash=image_hash, cancel=token)
        self._last_embedded = image_hash
        return key

    def _run_embed(self, cur: _Image, job: Job) -> None:
        t0 = time.perf_counter()
        self._progress(ProgressEvent(Phase.ENCODING, 0, 1, cur.hash))
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
            self._current_failed(cur, job, exc)
            return
        self._became_ready(cur, image, key, time.perf_counter() - t0)

    def _current_failed(self, cur: _Image, job: Job, exc: Exception) -> None:
        """The encode of ``cur`` failed: reported if it is still the current image."""
        with self._cond:
            is_current = self._current is cur
            if is_current:
                cur.status, cur.error = _Status.FAILED, exc
        if is_current:
            self._fail(job, exc)

    def _became_ready(self, cur: _Image, image: np.ndarray, key: EmbeddingKey, sec: float) -> None:
        with self._cond:
            if self._current is not cur:
                return  # the person moved on meanwhile
            cur.status, cur.key, cur.image = _Status.READY, key, image
            self._stats.embeds += 1
        self._progress(ProgressEvent(Phase.ENCODED, 1, 1, cur.hash))
        self._notify(self.callbacks.on_embedding_ready, key, sec)

    def _run_prefetch(self, item: _Image) -> None:
        t0 = time.perf_counter()
        try:
            if self._skip_prefetch(item.hash):
                with self._cond:
                    self._stats.prefetch_skipped += 1
                    self._prefetch_done += 1
                    done, total = self._prefetch_done, self._prefetch_total
                self._progress(ProgressEvent(Phase.PREFETCHING, done, total, item.hash))
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
                    self._prefetched.put(item.hash, True)
                done, total = self._prefetch_done, self._prefetch_total
            if promoted and cur is not None:
                self._became_ready(cur, image, key, time.perf_counter() - t0)
            else:
                self._progress(ProgressEvent(Phase.PREFETCHING, done, total, item.hash))
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
        self._progress(ProgressEvent(Phase.PREFETCHING, done, total, item.hash))

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

    def _run_click(self, cur: _Image, click: _Click, job: Job, *, lane: bool = False) -> None:
        if lane:  # one thread, on the lane's own torch: the prefetch step has the others
            self.predictor.set_threads(1)  # type: ignore[attr-defined]
        else:
            self._use_threads(worker_threads())
        key = self._ensure_current_embedded(cur)
        result = self.predictor.predict(key, click.prompt)
        now = time.perf_counter()
        latency_ms = (now - click.requested) * 1000.0
        with self._cond:
            self._stats.masks += 1
            self._rhythm.answered(now)
        self._notify(self.callbacks.on_mask, result, click.prompt, click.generation, latency_ms)

    def _run_prepare(self, key: EmbeddingKey) -> None:
        """The current image made ready for its first click (``Preparing``). A failure is
        only logged: the click itself will do the work again and report what fails."""
        self._use_threads(worker_threads())
        try:
            self.predictor.prepare(key)  # type: ignore[attr-defined]
        except Exception as exc:
            log.warning("preparing image %s for its first click failed: %s",
                        key.image_hash[:12], exc)
            return
        with self._cond:
            self._stats.prepared += 1

    def _run_everything(self, cur: _Image, ev: _Everything, job: Job) -> None:
        self._use_threads(worker_threads())
        key = self._ensure_current_embedded(cur)

        def progress(done: int, total: int, message: str = "") -> None:
            self._progress(ProgressEvent(Phase.SEGMENTING, done, total, cur.hash, message))

        if ev.query is None:
            proposals = self.predictor.segment_everything(
                key, ev.options, cancel=ev.token, progress=progress
            )
        else:
            check(ev.token)
            what = ev.query.describe()
            self._progress(ProgressEvent(Phase.FINDING, 0, 1, cur.hash, what))

            def finding(done: int, total: int, message: str = "") -> None:
                self._progress(ProgressEvent(Phase.FINDING, done, total, cur.hash, what))

            proposals = self.predictor.find_all(key, ev.query, cancel=ev.token,
                                                progress=finding)
        check(ev.token)
        with self._cond:
            self._stats.everything += 1
        self._notify(self.callbacks.on_everything, proposals, ev.generation)

    def _run_find_in(self, find: _FindIn, job: Job) -> None:
        """(worker) ``find_all_in``: load and encode the other image (its cached embedding
        when prefetched), find, answer; ``_finding`` is cleared whatever happens."""
        try:
            self._use_threads(worker_threads())
            check(find.token)
            what = find.query.describe()
            self._progress(ProgressEvent(Phase.FINDING, 0, 1, find.image_hash, what))
            key = self._embed(find.loader(), find.image_hash, find.token)

            def finding(done: int, total: int, message: str = "") -> None:
                self._progress(ProgressEvent(Phase.FINDING, done, total, find.image_hash, what))

            proposals = self.predictor.find_all(key, find.query, cancel=find.token,
                                                progress=finding)
            check(find.token)
            self._notify(self.callbacks.on_everything, proposals, find.generation)
        finally:
            with self._cond:
                self._finding = None

    def _run_step(self, steps: SteppedJob[object]) -> None:
        """(worker) One step of the stepped job (a thread less, like a prefetch: it is long
        and the person keeps working meanwhile); forgotten once over."""
        self._use_threads(worker_threads() - 1)
        try:
            over = steps.run_step(self.predictor, self._notify)
        finally:
            self._last_embedded = None  # it may have used the predictor on other images
        if over:
            with self._cond:
                self._steps.remove(steps)

    # ---- resumable encodes (``start_embed``): one step per scheduling round ----

    def _encode_for(self, img: _Image) -> _Encode:
        """(worker) The encode of ``img`` under way or paused, else a new one (loading the
        image here; an embedding already cached gives an encode with no step left)."""
        with self._cond:
            enc = self._encodes.get(img.hash)
        if enc is not None:
            return enc
        t0 = time.perf_counter()
        image = img.loader()
        start: Callable[[np.ndarray, str], EncodeJob] = self.predictor.start_embed  # type: ignore[attr-defined]
        enc = _Encode(img.hash, start(image, img.hash), image, time.perf_counter() - t0)
        with self._cond:
            self._encodes.add(enc)
        return enc

    def _step_once(self, enc: _Encode) -> bool:
        """(worker) Run the next step of ``enc``; True once its embedding is cached."""
        job = enc.job
        counted = job.total > 0 and job.done < job.total
        t0 = time.perf_counter()
        try:
            finished = job.step()
        except BaseException:
            with self._cond:
                self._encodes.drop(enc)
                job.release()
            raise
        sec = time.perf_counter() - t0
        enc.seconds += sec
        with self._cond:
            if counted:
                self._rhythm.step_took(job.done - 1, sec)
                enc.step_seconds += sec
                self._stats.encode_steps += 1
            self._encodes.stepped(enc, finished)
        return finished

    def _step_current(self, cur: _Image, job: Job) -> None:
        """One step of the current image's encode (every thread: the person waits for it)."""
        try:
            enc = self._encode_for(cur)
            self._use_threads(worker_threads())
            if enc.job.total:
                self._progress(ProgressEvent(Phase.ENCODING, enc.job.done, enc.job.total,
                                             cur.hash))
            finished = self._step_once(enc)
        except Exception as exc:
            self._current_failed(cur, job, exc)
            return
        if finished:
            self._encode_finished(enc)

    def _step_prefetch(self, item: _Image, job: Job) -> None:
        """One step of a next image's encode (a thread less: a core stays with the GUI)."""
        with self._cond:
            under_way = item.hash in self._encodes
        if not under_way and self._skip_prefetch(item.hash):
            with self._cond:
                if self._drop_prefetch_locked(item.hash):
                    self._stats.prefetch_skipped += 1
                    self._prefetch_done += 1
                done, total = self._prefetch_done, self._prefetch_total
            self._progress(ProgressEvent(Phase.PREFETCHING, done, total, item.hash))
            return
        try:
            enc = self._encode_for(item)
            self._use_threads(worker_threads() - 1)
            finished = self._step_once(enc)
        except Exception as exc:
            with self._cond:
                dropped = self._drop_prefetch_locked(item.hash)
                if dropped:
                    self._prefetch_done += 1
                done, total = self._prefetch_done, self._prefetch_total
            if dropped:  # else it became the current image: its own encode reports it
                self._fail(job, exc)
                self._progress(ProgressEvent(Phase.PREFETCHING, done, total, item.hash))
            return
        if finished:
            self._encode_finished(enc)

    def _drop_prefetch_locked(self, image_hash: str) -> bool:
        """Take ``image_hash`` off the prefetch list; False if it was not there."""
        for img in self._prefetch:
            if img.hash == image_hash:
                self._prefetch.remove(img)
                return True
        return False

    def _encode_finished(self, enc: _Encode) -> None:
        """An encode's embedding is cached: the current image is ready, or a next image is
        prefetched (or neither any more: it stays cached)."""
        key = enc.job.key
        with self._cond:
            cur = self._current
            ready = cur is not None and cur.hash == enc.hash and cur.status == _Status.PENDING
            prefetched = False
            if cur is not None and ready:
                cur.status, cur.key, cur.image = _Status.READY, key, enc.image
                self._stats.embeds += 1
                self._last_embedded = enc.hash
            else:
                self._prefetched.put(enc.hash, True)
                prefetched = self._drop_prefetch_locked(enc.hash)
                if prefetched:
                    self._stats.prefetched += 1
                    self._prefetch_done += 1
            done, total = self._prefetch_done, self._prefetch_total
        if ready:
            self._progress(ProgressEvent(Phase.ENCODED, 1, 1, enc.hash))
            self._notify(self.callbacks.on_embedding_ready, key, enc.seconds)
        elif prefetched:
            self._progress(ProgressEvent(Phase.PREFETCHING, done, total, enc.hash))
