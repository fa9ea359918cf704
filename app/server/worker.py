"""The one thread that owns the model, and how requests wait for it.

The Predictor is not thread-safe, so every call into it runs on ``ModelWorker``'s thread.
Work is taken in the order of the app's ``PredictionService`` (clicks before encodes, a
click waits at most one encoder block), for many clients at once:

1. clicks: every click queued when the thread looks is decoded in ONE batch
   (``predictor.predict_batch`` when it has one: SAM2 decodes the prompts of several
   clients and images together, ``app.predict.sam2.batch``; else one ``predict`` each);
2. everything else, in arrival order: encodes, decodes of no prompt.

An encode polls its CancelToken between encoder blocks (SAM2's does); the worker's token
(``ServeClicksToken``) serves the clicks queued at that moment there, then lets the encoder
go on. So a click waits for at most one encoder block (and the batch before it), and an
encode advances at least one block between two batches: a stream of clicks never starves
it, and no encoder work is thrown away. Unlike the app's service, no click is dropped as
stale: each one is some client's.

Requests wait without holding a thread: the routes ``await`` a job's future, so the event
loop stays free for ``/healthz`` and for reading other requests. A request that waited
``timeout_s`` gets 504; its job is dropped if it has not started, and stopped if it has (an
encode within one block). Request threads decode and encode images and masks themselves,
in parallel, outside the worker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from app.core.jobs import CancelToken
from app.core.lru import BoundedCache
from app.core.types import Box, EmbeddingKey, MaskResult, Prompt
from app.predict.base import Predictor, PredictorError
from app.predict.cache.file_format import Embedding
from app.predict.cache.store import EmbeddingCache
from app.server.errors import HTTPProblem

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 64  # prompts decoded in one batch (a request with more is still taken whole)


@dataclass(eq=False)
class _Decode:
    items: list[tuple[EmbeddingKey, Prompt]]
    future: Future[list[MaskResult]]
    run: Callable[[], list[MaskResult]] | None = None  # a decode of its own (no prompt)


@dataclass(eq=False)
class _Job:
    fn: Callable[[], Any]
    future: Future[Any]


class ServeClicksToken(CancelToken):
    """A job's CancelToken: each poll between two steps of the job (SAM2's encoder blocks)
    first serves the clicks waiting then, on the model thread."""

    def __init__(self, worker: ModelWorker) -> None:
        super().__init__()
        self._worker = worker

    def raise_if_cancelled(self) -> None:
        self._worker.serve_waiting_clicks()
        super().raise_if_cancelled()


class ModelWorker:
    """Runs every Predictor call on one thread; remembers which images it embedded."""

    def __init__(self, predictor: Predictor, timeout_s: float = 120.0,
                 remember: int = 4096) -> None:
        self.predictor = predictor
        self.timeout_s = timeout_s
        self._cond = threading.Condition()
        self._clicks: deque[_Decode] = deque()
        self._jobs: deque[_Job] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._serving = False  # the model thread is serving clicks inside a job
        # (height, width) of the images embedded last (thread-safe: no lock of ours)
        self._sizes = BoundedCache[EmbeddingKey, tuple[int, int]](remember)
        self.jobs_done = 0
        self.batches = 0  # click batches decoded
        self.prompts_decoded = 0

    @property
    def model_id(self) -> str:
        return self.predictor.model_id

    @property
    def cache(self) -> EmbeddingCache | None:
        """The predictor's EmbeddingCache when it has one (SAM2 does; GrabCut does not)."""
        cache = getattr(self.predictor, "cache", None)
        return cache if isinstance(cache, EmbeddingCache) else None

    # -- submitting and waiting (any thread) -----------------------------------------------

    def submit(self, fn: Callable[[CancelToken], T]) -> tuple[Future[T], CancelToken]:
        """Queue ``fn(token)`` behind the clicks; its token serves clicks when polled."""
        token = ServeClicksToken(self)
        future: Future[T] = Future()
        self._queue(self._jobs, _Job(lambda: fn(token), future))
        return future, token

    def submit_decode(self, items: Sequence[tuple[EmbeddingKey, Prompt]],
                      run: Callable[[], list[MaskResult]] | None = None
                      ) -> Future[list[MaskResult]]:
        """Queue prompts to decode with the next batch of clicks (or ``run`` then)."""
        future: Future[list[MaskResult]] = Future()
        self._queue(self._clicks, _Decode(list(items), future, run))
        return future

    def _queue(self, queue: deque[Any], entry: Any) -> None:
        with self._cond:
            if self._stopping:
                raise HTTPProblem(504, "the server is stopping; try again")
            queue.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="maskloop-model",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    async def wait(self, future: Future[T], token: CancelToken | None = None,
                   timeout: float | None = None) -> T:
        """The job's result, awaited on the event loop; HTTPProblem 504 after the timeout
        (the job is then dropped if it has not started, and told to stop if it has)."""
        limit = self.timeout_s if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limit)
        except TimeoutError:
            raise self._too_late(future, token, limit) from None

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None,
            cancel: CancelToken | None = None) -> T:
        """``fn(*args)`` on the model thread, waited for here (scripts and tests); 504 as
        ``wait`` (then ``cancel`` is set too)."""
        future, token = self.submit(lambda _: fn(*args))
        limit = self.timeout_s if timeout is None else timeout
        try:
            return future.result(timeout=limit)
        except FutureTimeout:
            if cancel is not None:
                cancel.cancel()
            raise self._too_late(future, token, limit) from None

    @staticmethod
    def _too_late(future: Future[Any], token: CancelToken | None, limit: float) -> HTTPProblem:
        future.cancel()
        if token is not None:
            token.cancel()
        return HTTPProblem(504, f"the model did not answer within {limit:g} s (server busy); "
                                "try again")

    # -- what the routes ask -----------------------------------------------------------------

    async def embed(self, image: np.ndarray, image_hash: str) -> EmbeddingKey:
        """Embed ``image`` (or find it cached) under ``image_hash``."""
        future, token = self.submit(
            lambda t: self.predictor.embed(image, image_hash, cancel=t))
        key = await self.wait(future, token)
        self._note(key, (int(image.shape[0]), int(image.shape[1])))
        return key

    async def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Decode one prompt; HTTPProblem 404 if the embedding is gone, 422 if it is empty."""
        return (await self.predict_many(key, [prompt]))[0]

    async def predict_many(self, key: EmbeddingKey, prompts: list[Prompt]) -> list[MaskResult]:
        """Decode several prompts in one batch of the worker (same errors as ``predict``)."""
        if any(p.is_empty() for p in prompts):
            raise HTTPProblem(422, "empty prompt: give at least one point or a box")
        return await self._decoding(key, self.submit_decode([(key, p) for p in prompts]))

    async def predict_unprompted(self, key: EmbeddingKey, multimask: bool) -> MaskResult:
        """The masks of no prompt at all, as Roboflow's server answers a request without
        prompts: SAM2's decoder with no point and no box; a box of the whole image for a
        backend without that (GrabCut)."""
        unprompted = getattr(self.predictor, "predict_unprompted", None)
        if callable(unprompted):
            future = self.submit_decode([], run=lambda: [unprompted(key, multimask)])
            return (await self._decoding(key, future))[0]
        size = self.image_size(key)
        if size is None:
            raise HTTPProblem(404, f"image {key.image_hash[:16]} is not embedded on this "
                                   "server (or was evicted): send the image again")
        h, w = size
        return await self.predict(key, Prompt(box=Box(0.0, 0.0, float(w), float(h)),
                                              multimask=multimask))

    async def _decoding(self, key: EmbeddingKey, future: Future[list[MaskResult]]
                        ) -> list[MaskResult]:
        try:
            return await self.wait(future)
        except PredictorError as exc:  # the prompts are not empty: the embedding is missing
            self._sizes.pop(key)
            message = (f"image {key.image_hash[:16]} is not embedded on this server (or was "
                       f"evicted): send the image again ({exc})")
            raise HTTPProblem(404, message) from exc

    def key_for(self, image_hash: str) -> EmbeddingKey:
        return EmbeddingKey(image_hash, self.model_id)

    def has_embedding(self, key: EmbeddingKey) -> bool:
        cache = self.cache
        if cache is not None:
            return cache.contains(key)
        return key in self._sizes

    def image_size(self, key: EmbeddingKey) -> tuple[int, int] | None:
        """(height, width) of an embedded image, or None if unknown."""
        size = self._sizes.get(key)
        if size is None:
            emb = self.embedding(key)
            size = emb.image_size if emb is not None else None
        return size

    def embedding(self, key: EmbeddingKey) -> Embedding | None:
        """The raw float16 embedding arrays (hybrid mode); None without a cache or entry."""
        cache = self.cache
        return cache.get(key) if cache is not None else None

    def _note(self, key: EmbeddingKey, size: tuple[int, int]) -> None:
        self._sizes.put(key, size)

    def shutdown(self) -> None:
        """Stop the model thread after the job it is running (queued ones are cancelled);
        the predictor stays open."""
        with self._cond:
            self._stopping = True
            pending: list[_Decode | _Job] = [*self._clicks, *self._jobs]
            self._clicks.clear()
            self._jobs.clear()
            self._cond.notify_all()
            thread = self._thread
        for entry in pending:
            entry.future.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- the model thread ----------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._clicks or self._jobs or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    return
                batch = self._take_clicks_locked()
                job = self._jobs.popleft() if not batch and self._jobs else None
            if batch:
                self._decode(batch)
            elif job is not None:
                self._run_job(job)

    def serve_waiting_clicks(self) -> None:
        """On the model thread, inside a job: decode the clicks queued now (one batch)."""
        if threading.current_thread() is not self._thread or self._serving:
            return
        with self._cond:
            batch = self._take_clicks_locked()
        if batch:
            self._serving = True
            try:
                self._decode(batch)
            finally:
                self._serving = False

    def _take_clicks_locked(self) -> list[_Decode]:
        batch: list[_Decode] = []
        count = 0
        while self._clicks and (not batch or count + len(self._clicks[0].items) <= MAX_BATCH):
            entry = self._clicks.popleft()
            if entry.future.set_running_or_notify_cancel():  # False: its request gave up
                batch.append(entry)
                count += len(entry.items)
        return batch

    def _run_job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.fn()
        except BaseException as exc:  # the request's to raise, never the worker's
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
            with self._cond:
                self.jobs_done += 1

    def _decode(self, batch: list[_Decode]) -> None:
        plain = [d for d in batch if d.run is None]
        items = [item for d in plain for item in d.items]
        outcome = self._predict_items(items) if items else []
        start = 0
        for d in plain:
            part = outcome[start:start + len(d.items)]
            start += len(d.items)
            error = next((r for r in part if isinstance(r, BaseException)), None)
            if error is not None:
                d.future.set_exception(error)
            else:
                d.future.set_result([r for r in part if isinstance(r, MaskResult)])
        for d in batch:
            if d.run is not None:
                try:
                    d.future.set_result(d.run())
                except Exception as exc:
                    d.future.set_exception(exc)
        with self._cond:
            self.jobs_done += len(batch)
            self.batches += 1
            self.prompts_decoded += len(items)

    def _predict_items(self, items: list[tuple[EmbeddingKey, Prompt]]
                       ) -> list[MaskResult | BaseException]:
        """Every item's masks, in one batch when the predictor can; when the batch fails
        (an image gone, a bad mask input), one by one, so each error goes to its request."""
        batch = getattr(self.predictor, "predict_batch", None)
        if callable(batch):
            try:
                return list(batch(items))
            except Exception as exc:
                if len(items) == 1:
                    return [exc]
                log.debug("a batch of %d prompts failed (%s): one by one", len(items), exc)
        out: list[MaskResult | BaseException] = []
        for key, prompt in items:
            try:
                out.append(self.predictor.predict(key, prompt))
            except Exception as exc:
                out.append(exc)
        return out
