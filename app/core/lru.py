"""``BoundedCache``: the one LRU cache of the app, bounded by count or by bytes.

Built on ``cachetools.LRUCache``; this wrapper exists only to give it one typed, thread-safe
interface with per-entry sizes that may depend on the key, a clear rule for an entry larger
than the bound (not kept, instead of cachetools' ValueError) and an eviction callback.

Thread safety: every method takes the cache's own lock, because the server's id and logits
caches (``app.server.image_ids``, ``app.server.state``) are shared by request threads with
no lock of their own. Callers that do several steps in a row (look up, then put) still hold
their own lock around them, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import LRUCache

K = TypeVar("K")
V = TypeVar("V")


class _Recorder(LRUCache[K, tuple[V, int]]):
    """cachetools' LRU that notes what it evicts to make room while ``dropped`` is a list."""

    dropped: list[tuple[K, tuple[V, int]]] | None = None

    def popitem(self) -> tuple[K, tuple[V, int]]:
        item = super().popitem()
        if self.dropped is not None:
            self.dropped.append(item)
        return item


def _entry_size(entry: tuple[object, int]) -> int:
    return entry[1]


class BoundedCache(Generic[K, V]):
    """A least-recently-used dict bounded by ``maxsize`` entries, or by ``maxsize`` bytes
    when ``size_of(key, value)`` gives each entry's size.

    ``get`` makes an entry the most recent; ``put`` of a key already there replaces it (and
    makes it the most recent). An entry larger than the whole bound is not kept (``put``
    returns False and forgets the key's older value). ``on_evict(key, value)`` is called
    for each entry dropped to make room (not for ``pop``, ``clear`` or a replaced value),
    after the cache's lock is released, in the thread that called ``put``.
    """

    def __init__(self, maxsize: int, size_of: Callable[[K, V], int] | None = None, *,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        self.maxsize = int(maxsize)
        self._size_of = size_of
        self._on_evict = on_evict
        self._data: _Recorder[K, V] = _Recorder(
            max(0, self.maxsize), _entry_size if size_of is not None else None)
        self._lock = threading.Lock()

    def resize(self, maxsize: int) -> None:
        """Change the bound; the least recent entries that no longer fit are dropped (with
        ``on_evict``), an entry alone larger than the new bound too."""
        dropped: list[tuple[K, tuple[V, int]]] = []
        with self._lock:
            entries = list(self._data.items())  # least recent first
            self.maxsize = int(maxsize)
            self._data = _Recorder(
                max(0, self.maxsize), _entry_size if self._size_of is not None else None)
            self._data.dropped = dropped
            try:
                for key, entry in entries:
                    if entry[1] > self.maxsize:
                        dropped.append((key, entry))
                    else:
                        self._data[key] = entry
            finally:
                self._data.dropped = None
        if self._on_evict is not None:
            for old_key, (old_value, _) in dropped:
                self._on_evict(old_key, old_value)

    @property
    def by_bytes(self) -> bool:
        return self._size_of is not None

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recent), or None."""
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return None
            self._data[key] = entry  # back in last: iteration order is recency order
            return entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep ``value`` as the most recent entry, evicting the least recent ones to stay
        within the bound; False (and ``key`` forgotten) if it alone exceeds the bound."""
        size = self._size_of(key, value) if self._size_of is not None else 1
        if size < 0:
            raise ValueError(f"negative size {size} for {key!r}")
        with self._lock:
            self._data.pop(key, None)
            if size > self.maxsize:
                return False
            dropped: list[tuple[K, tuple[V, int]]] = []
            self._data.dropped = dropped
            try:
                self._data[key] = (value, size)
            finally:
                self._data.dropped = None
        if self._on_evict is not None:
            for old_key, (old_value, _) in dropped:
                self._on_evict(old_key, old_value)
        return True

    def pop(self, key: K) -> V | None:
        """Remove ``key``; its value, or None if it was not there."""
        with self._lock:
            entry = self._data.pop(key, None)
        return entry[0] if entry is not None else None

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def contains(self, key: K) -> bool:
        """True if ``key`` is cached (its recency is left as it is)."""
        return key in self

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries, least recently used first."""
        with self._lock:
            return [(k, entry[0]) for k, entry in self._data.items()]

    @property
    def nbytes(self) -> int:
        """Bytes held (the sum of ``size_of``); 0 for a cache bounded by count."""
        if self._size_of is None:
            return 0
        with self._lock:
            return int(self._data.currsize)

    def __repr__(self) -> str:
        unit = "bytes" if self.by_bytes else "entries"
        return f"BoundedCache({len(self)} entries, max {self.maxsize} {unit})"
