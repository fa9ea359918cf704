"""The server's frames for propagation: uploaded files kept by sha256, and the frames of
each propagation under way.

``/v1/propagate`` reads a sequence's frames from the files the client uploaded with the
``/v1/images`` routes (the embedding cache keeps SAM2's features, not pixels; propagation
needs both). ``FrameStore`` keeps those files' bytes, bounded by bytes (least recently used
first out), so an unchanged frame is never sent twice while the server runs. ``RunFrames``
is one run's ``FrameSource``: frame index -> hash, announced as the client uploads them,
decoded on demand with the two most recent kept (a run reads a frame and the one before).
``LiveRuns`` finds a run by the id its client chose, to announce more frames to it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from app.core.lru import BoundedCache
from app.predict.base import PredictorError
from app.server.encoding import decode_image

MAX_LIVE_RUNS = 64  # runs a server keeps track of at once (each is one open request)


class FrameStore:
    """Uploaded files by sha256, bounded by ``max_bytes`` (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self._files = BoundedCache[str, bytes](max_bytes, lambda k, v: len(k) + len(v) + 64)

    def put(self, image_hash: str, data: bytes) -> None:
        self._files.put(image_hash, data)

    def get(self, image_hash: str) -> bytes | None:
        return self._files.get(image_hash)

    def missing(self, hashes: Iterable[str]) -> list[str]:
        """The hashes of ``hashes`` not here, once each, in order."""
        return [h for h in dict.fromkeys(hashes) if self._files.get(h) is None]


class RunFrames:
    """The frames of one run: ``length`` frames, each known by the hash announced for it
    (``announce``), read from the FrameStore. Thread-safe: the event loop announces, the
    model thread reads."""

    def __init__(self, store: FrameStore, length: int, max_pixels: int) -> None:
        self.store = store
        self.length = length
        self.max_pixels = max_pixels
        self._hashes: dict[int, str] = {}
        self._lock = threading.Lock()
        self._decoded = BoundedCache[int, np.ndarray](2)

    def __len__(self) -> int:
        return self.length

    def announce(self, frames: dict[int, str]) -> None:
        """Frame index -> hash for more frames (an index outside the run: ValueError)."""
        bad = [i for i in frames if not 0 <= i < self.length]
        if bad:
            raise ValueError(f"frame {bad[0]} is outside the run's {self.length} frames")
        with self._lock:
            for index, image_hash in frames.items():
                if self._hashes.get(index) != image_hash:
                    self._decoded.pop(index)
                self._hashes[index] = image_hash

    def hash_of(self, index: int) -> str | None:
        with self._lock:
            return self._hashes.get(index)

    def ready(self, index: int) -> bool:
        """Whether frame ``index`` is announced and its file is here."""
        image_hash = self.hash_of(index)
        return image_hash is not None and self.store.get(image_hash) is not None

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` decoded (PredictorError when it is not announced or not here)."""
        image = self._decoded.get(index)
        if image is not None:
            return image
        image_hash = self.hash_of(index)
        data = self.store.get(image_hash) if image_hash is not None else None
        if data is None:
            raise PredictorError(f"frame {index} ({(image_hash or 'no hash')[:16]}) is not on "
                                 "this server: upload it and announce it")
        image = decode_image(data, self.max_pixels)
        self._decoded.put(index, image)
        return image


@dataclass
class PropagationStats:
    """What the server's propagations did (tests and the log read it)."""

    runs: int = 0
    frames: int = 0  # frames computed, every run
    cancelled: int = 0  # runs stopped because their client went away
    running: int = 0
    last_run_frames: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class LiveRuns:
    """The runs under way by their client's run id (at most ``MAX_LIVE_RUNS``)."""

    def __init__(self) -> None:
        self._runs: dict[str, RunFrames] = {}
        self._lock = threading.Lock()
        self.stats = PropagationStats()

    def add(self, run_id: str, frames: RunFrames) -> bool:
        """Register a run; False when the id is taken or too many runs are under way."""
        with self._lock:
            if run_id in self._runs or len(self._runs) >= MAX_LIVE_RUNS:
                return False
            self._runs[run_id] = frames
            return True

    def get(self, run_id: str) -> RunFrames | None:
        with self._lock:
            return self._runs.get(run_id)

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)
