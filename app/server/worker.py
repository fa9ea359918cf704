"""The one worker that owns the model, and the server's bounded memories of recent results.

The Predictor is not thread-safe, so every call into it goes through ``ModelWorker``: a
single-thread executor, with a timeout on the wait (a request that waited too long gets 504;
its job is dropped if it has not started, and stopped if it has: an embedding between two
encoder blocks, a set of prompts between two prompts). Request threads do the decoding and
encoding of images and masks themselves, in parallel, outside the worker.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from app.core.jobs import CancelToken, check
from app.core.types import Box, EmbeddingKey, MaskResult, Prompt
from app.predict.base import Predictor, PredictorError
from app.predict.cache import Embedding, EmbeddingCache
from app.server.errors import HTTPProblem

T = TypeVar("T")


class ModelWorker:
    """Runs every Predictor call on one thread; remembers which images it embedded."""

    def __init__(self, predictor: Predictor, timeout_s: float = 120.0,
                 remember: int = 4096) -> None:
        self.predictor = predictor
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maskloop-model")
        self._lock = threading.Lock()
        self._sizes: OrderedDict[EmbeddingKey, tuple[int, int]] = OrderedDict()
        self._remember = remember
        self.jobs_done = 0

    @property
    def model_id(self) -> str:
        return self.predictor.model_id

    @property
    def cache(self) -> EmbeddingCache | None:
        """The predictor's EmbeddingCache when it has one (SAM2 does; GrabCut does not)."""
        cache = getattr(self.predictor, "cache", None)
        return cache if isinstance(cache, EmbeddingCache) else None

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None,
            cancel: CancelToken | None = None) -> T:
        """``fn(*args)`` on the model thread; HTTPProblem 504 if it takes too long (the job
        is then dropped if it has not started, and ``cancel`` is set for ``fn`` to stop)."""
        fut: Future[T] = self._pool.submit(self._counted, fn, *args)
        limit = self.timeout_s if timeout is None else timeout
        try:
            return fut.result(timeout=limit)
        except FutureTimeout:
            fut.cancel()
            if cancel is not None:
                cancel.cancel()
            raise HTTPProblem(504, f"the model did not answer within {limit:g} s "
                                   "(server busy); try again") from None

    def _counted(self, fn: Callable[..., T], *args: Any) -> T:
        out = fn(*args)
        self.jobs_done += 1
        return out

    def embed(self, image: np.ndarray, image_hash: str) -> EmbeddingKey:
        """Embed ``image`` (or find it cached) under ``image_hash``."""
        token = CancelToken()
        key = self.run(lambda: self.predictor.embed(image, image_hash, cancel=token),
                       cancel=token)
        self._note(key, (int(image.shape[0]), int(image.shape[1])))
        return key

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Decode one prompt; HTTPProblem 404 if the embedding is gone, 422 if it is empty."""
        return self.predict_many(key, [prompt])[0]

    def predict_many(self, key: EmbeddingKey, prompts: list[Prompt]) -> list[MaskResult]:
        """Decode several prompts in one turn of the worker (same errors as ``predict``)."""
        if any(p.is_empty() for p in prompts):
            raise HTTPProblem(422, "empty prompt: give at least one point or a box")
        token = CancelToken()

        def decode_all() -> list[MaskResult]:
            out = []
            for p in prompts:
                check(token)
                out.append(self.predictor.predict(key, p))
            return out

        return self._decoding(key, decode_all, token)

    def predict_unprompted(self, key: EmbeddingKey, multimask: bool) -> MaskResult:
        """The masks of no prompt at all, as Roboflow's server answers a request without
        prompts: SAM2's decoder with no point and no box; a box of the whole image for a
        backend without that (GrabCut)."""
        unprompted = getattr(self.predictor, "predict_unprompted", None)
        if callable(unprompted):
            return self._decoding(key, lambda: unprompted(key, multimask), None)
        size = self.image_size(key)
        if size is None:
            raise HTTPProblem(404, f"image {key.image_hash[:16]} is not embedded on this "
                                   "server (or was evicted): send the image again")
        h, w = size
        box = Prompt(box=Box(0.0, 0.0, float(w), float(h)), multimask=multimask)
        return self.predict(key, box)

    def _decoding(self, key: EmbeddingKey, fn: Callable[[], T], token: CancelToken | None) -> T:
        """``fn`` on the model thread; a missing embedding is HTTPProblem 404."""
        try:
            return self.run(fn, cancel=token)
        except PredictorError as exc:  # the prompts are not empty: the embedding is missing
            with self._lock:
                self._sizes.pop(key, None)
            message = (f"image {key.image_hash[:16]} is not embedded on this server (or was "
                       f"evicted): send the image again ({exc})")
            raise HTTPProblem(404, message) from exc

    def key_for(self, image_hash: str) -> EmbeddingKey:
        return EmbeddingKey(image_hash, self.model_id)

    def has_embedding(self, key: EmbeddingKey) -> bool:
        cache = self.cache
        if cache is not None:
            return cache.contains(key)
        with self._lock:
            return key in self._sizes

    def image_size(self, key: EmbeddingKey) -> tuple[int, int] | None:
        """(height, width) of an embedded image, or None if unknown."""
        with self._lock:
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
        with self._lock:
            self._sizes[key] = size
            self._sizes.move_to_end(key)
            while len(self._sizes) > self._remember:
                self._sizes.popitem(last=False)

    def shutdown(self) -> None:
        """Stop the model thread (queued jobs are cancelled); the predictor stays open."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class StoredResult:
    image_hash: str
    logits: np.ndarray  # (N, 256, 256) float16

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes)


class ResultStore:
    """Recent results' low-res logits (float16) by result id, bounded by bytes (LRU), so a
    click can say "refine candidate k of result r" instead of sending the logits."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, StoredResult] = OrderedDict()
        self._bytes = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, image_hash: str, logits: np.ndarray) -> int:
        item = StoredResult(image_hash, np.asarray(logits, dtype=np.float16))
        with self._lock:
            rid = next(self._ids)
            self._items[rid] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return rid

    def logits(self, result_id: int, candidate: int, image_hash: str) -> np.ndarray:
        """(1, 256, 256) float32 logits of a stored candidate; HTTPProblem 409 if forgotten."""
        with self._lock:
            item = self._items.get(result_id)
            if item is not None:
                self._items.move_to_end(result_id)
        if item is None or item.image_hash != image_hash:
            raise HTTPProblem(409, f"result {result_id} is not known for this image (expired):"
                                   " send mask_input or click without refinement")
        if not 0 <= candidate < item.logits.shape[0]:
            raise HTTPProblem(422, f"result {result_id} has no candidate {candidate}")
        return item.logits[candidate][None].astype(np.float32)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes
