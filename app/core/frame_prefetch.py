"""Decode the next frames of a run while the current one is being worked on.

Propagation reads a sequence frame after frame in one direction; decoding a video frame
(seek, decode, colour conversion) costs as much as a GPU's model step. ``FramePrefetch``
wraps a sequence and, each time frame ``i`` is asked for, has one background thread decode
``i + step``, ``i + 2 * step``, ... (``ahead`` frames), so the next ``frame()`` finds its
pixels ready. Memory stays bounded: at most ``ahead`` decoded frames wait, and frames behind
the run are dropped. The wrapped sequence is only ever read by that thread (a PyAV container
is not thread-safe). A thread pool of one from the standard library is all it needs.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np


class _Frames(Protocol):
    def __len__(self) -> int: ...

    def frame(self, index: int) -> np.ndarray: ...


class FramePrefetch:
    """``source`` read ahead in the direction ``step`` (+1 forward, -1 backward)."""

    def __init__(self, source: _Frames, *, step: int = 1, ahead: int = 4) -> None:
        if step not in (1, -1):
            raise ValueError("step must be +1 or -1")
        if ahead < 0:
            raise ValueError("ahead must be >= 0")
        self._source = source
        self._step = step
        self._ahead = ahead
        self._length = len(source)
        self._pending: dict[int, Future[np.ndarray]] = {}
        self._lock = threading.Lock()  # _pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="frame-prefetch")
        self._closed = False
        self.hits = 0  # frames found decoded ahead (tests, benchmarks)
        self.misses = 0

    def __len__(self) -> int:
        return self._length

    def __getattr__(self, name: str) -> object:
        """The wrapped sequence's other attributes (name, fps, size)."""
        return getattr(self._source, name)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (IndexError outside 0..len-1, as the sequence raises it); the next
        ``ahead`` frames in the run's direction are queued for decoding."""
        if self._closed:
            raise RuntimeError("frame prefetch is closed")
        with self._lock:
            ready = self._pending.pop(index, None)
            if ready is None:
                self.misses += 1
                ready = self._pool.submit(self._source.frame, index)
            else:
                self.hits += 1
            self._drop_behind(index)
            self._queue_after(index)
        return ready.result()

    def _queue_after(self, index: int) -> None:
        for k in range(1, self._ahead + 1):
            j = index + k * self._step
            if 0 <= j < self._length and j not in self._pending:
                self._pending[j] = self._pool.submit(self._source.frame, j)

    def _drop_behind(self, index: int) -> None:
        """Forget queued frames the run has passed (a jump back or another start)."""
        for j in list(self._pending):
            if (j - index) * self._step <= 0 or abs(j - index) > self._ahead:
                self._pending.pop(j).cancel()

    def close(self) -> None:
        """Stop reading ahead (queued decodes are cancelled, one under way finishes); the
        wrapped sequence is not closed: its owner closes it."""
        self._closed = True
        with self._lock:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
