"""The server's memory of recent results: low-res logits by result id, bounded by bytes."""

from __future__ import annotations

import itertools
import secrets
import threading
from dataclasses import dataclass

import numpy as np

from app.core.lru import BoundedCache
from app.server.errors import HTTPProblem


@dataclass
class StoredResult:
    image_hash: str
    logits: np.ndarray  # (N, 256, 256) float16

    @property
    def nbytes(self) -> int:
        return int(self.logits.nbytes)


class ResultStore:
    """Recent results' low-res logits (float16) by result id, bounded by bytes (LRU), so a
    click can say "refine candidate k of result r" instead of sending the logits. Kept in
    memory only: after a restart (or for a result larger than the whole bound, which is not
    kept) a refinement is answered 409, and the app's client sends the click again with its
    mask input (``app.predict.remote.predictor``). Ids start at a random number, so a
    restarted server (which still has the images) never takes a client's old id for one of
    its new results."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items = BoundedCache[int, StoredResult](max_bytes, lambda _, item: item.nbytes)
        self._ids = itertools.count(secrets.randbelow(2**51) + 1)  # JSON-safe below 2**53
        self._lock = threading.Lock()

    def add(self, image_hash: str, logits: np.ndarray) -> int:
        item = StoredResult(image_hash, np.asarray(logits, dtype=np.float16))
        with self._lock:
            rid = next(self._ids)
        self._items.put(rid, item)
        return rid

    def logits(self, result_id: int, candidate: int, image_hash: str) -> np.ndarray:
        """(1, 256, 256) float32 logits of a stored candidate; HTTPProblem 409 if forgotten."""
        item = self._items.get(result_id)
        if item is None or item.image_hash != image_hash:
            raise HTTPProblem(409, f"result {result_id} is not known for this image (expired):"
                                   " send mask_input or click without refinement")
        if not 0 <= candidate < item.logits.shape[0]:
            raise HTTPProblem(422, f"result {result_id} has no candidate {candidate}")
        return item.logits[candidate][None].astype(np.float32)

    @property
    def nbytes(self) -> int:
        return self._items.nbytes
