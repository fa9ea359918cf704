"""The embedding cache: float16 image embeddings in memory (LRU bounded by bytes) and on disk.

Encoding an image is slow (seconds on a CPU), reading its embedding back is a file read
(milliseconds), so every embedding is kept on disk under the user cache dir, one file per
(image content hash, model id), and the most recent ones in memory. The file format lives
in file_format.py (import its names from there); a file that is truncated, corrupt, of
another version or of another key is ignored (a warning is logged), deleted, and rebuilt by
the next ``put``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey
from app.predict.cache.file_format import (
    SUFFIX,
    TMP_GLOB,
    Embedding,
    read_embedding,
    write_embedding,
)

__all__ = [
    "DEFAULT_DIR", "DEFAULT_MEMORY_BYTES", "CacheStats", "EmbeddingCache", "default_cache_dir",
]

log = logging.getLogger(__name__)

_TMP_MAX_AGE = 3600.0  # seconds after which trim_disk deletes a temporary file
DEFAULT_MEMORY_BYTES = 1 << 30  # 1 GiB: about 128 SAM2 embeddings


class _DefaultDir:
    """Marker for "use default_cache_dir()" (None means: no disk cache)."""

    def __repr__(self) -> str:
        return "DEFAULT_DIR"


DEFAULT_DIR = _DefaultDir()


def default_cache_dir() -> Path:
    """Where embeddings are stored: $MASKLOOP_CACHE_DIR, else <user cache dir>/embeddings."""
    override = os.environ.get("MASKLOOP_CACHE_DIR")
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("maskloop")) / "embeddings"


@dataclass
class CacheStats:
    """Counters since the cache was created (``hits`` counts memory and disk hits)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    disk_writes: int = 0
    disk_errors: int = 0  # corrupt/unreadable files ignored, or failed writes
    evictions: int = 0  # entries dropped from memory to stay within the byte budget
    memory_bytes: int = 0
    entries: int = 0
    memory_limit: int = 0
    disk_dir: str | None = None

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


class EmbeddingCache:
    """Thread-safe embedding cache: a memory LRU bounded by bytes in front of a disk folder.

    ``disk_dir=None`` keeps embeddings in memory only; ``disk_bytes`` bounds the folder (the
    least recently used files, by modification time, are deleted first; a disk hit touches
    its file). Disk reads and writes happen outside the lock, so a thread asking
    ``in_memory`` never waits for another thread's file I/O.
    """

    def __init__(
        self,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        disk_dir: Path | str | None | _DefaultDir = DEFAULT_DIR,
        disk_bytes: int | None = None,
    ) -> None:
        """``disk_dir`` defaults to ``default_cache_dir()``; None keeps embeddings in memory
        only. ``disk_bytes`` None leaves the folder unbounded."""
        if isinstance(disk_dir, _DefaultDir):
            disk_dir = default_cache_dir()
        self.memory_limit = int(memory_bytes)
        self.disk_dir: Path | None = Path(disk_dir) if disk_dir is not None else None
        self.disk_limit = disk_bytes
        self._lock = threading.Lock()  # the counters and the memory LRU's changes
        self._memory = BoundedCache[EmbeddingKey, Embedding](
            self.memory_limit, lambda _, emb: emb.nbytes, on_evict=self._evicted)
        self._stats = CacheStats()

    # -- lookups ---------------------------------------------------------------------------

    def get(self, key: EmbeddingKey) -> Embedding | None:
        """The embedding of ``key`` from memory, else from disk (then kept in memory), or None."""
        with self._lock:
            emb = self._memory.get(key)
            if emb is not None:
                self._stats.memory_hits += 1
                return emb
        emb = self._read_disk(key)
        with self._lock:
            if emb is None:
                self._stats.misses += 1
                return None
            self._stats.disk_hits += 1
            self._remember(key, emb)
        return emb

    def contains(self, key: EmbeddingKey) -> bool:
        """True if ``key`` is in memory or has a file on disk (the file is not validated)."""
        return self.in_memory(key) or self.on_disk(key)

    __contains__ = contains

    def in_memory(self, key: EmbeddingKey) -> bool:
        return key in self._memory

    def on_disk(self, key: EmbeddingKey) -> bool:
        path = self.path_for(key)
        return path is not None and path.is_file()

    def path_for(self, key: EmbeddingKey) -> Path | None:
        """The file that holds (or would hold) ``key``, or None without a disk cache."""
        if self.disk_dir is None:
            return None
        return self.disk_dir / (key.filename() + SUFFIX)

    # -- updates ---------------------------------------------------------------------------

    def put(self, key: EmbeddingKey, emb: Embedding, *, disk: bool = True) -> None:
        """Keep ``emb`` in memory and (unless ``disk`` is False) write it to disk atomically.

        A failed disk write is logged and counted, never raised: the cache is an optimisation.
        """
        with self._lock:
            self._remember(key, emb)
        if disk and self.disk_dir is not None:
            try:
                write_embedding(self.path_for(key), key, emb)  # type: ignore[arg-type]
            except OSError as exc:
                log.warning("could not write embedding cache file for %s: %s", key, exc)
                with self._lock:
                    self._stats.disk_errors += 1
                return
            with self._lock:
                self._stats.disk_writes += 1
            if self.disk_limit is not None:
                self.trim_disk(self.disk_limit)

    def evict(self, key: EmbeddingKey, *, disk: bool = False) -> None:
        """Drop ``key`` from memory (and its file too when ``disk`` is True)."""
        with self._lock:  # so that ``stats`` sees the bytes and entries of one moment
            self._memory.pop(key)
        if disk:
            path = self.path_for(key)
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def clear(self, *, disk: bool = False) -> None:
        """Empty the memory cache (and delete every cache file when ``disk`` is True)."""
        with self._lock:
            self._memory.clear()
        if disk and self.disk_dir is not None and self.disk_dir.is_dir():
            for path in [*self.disk_dir.glob("*" + SUFFIX), *self.disk_dir.glob(TMP_GLOB)]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def trim_disk(self, limit: int) -> int:
        """Delete the least recently used files until the folder holds ``limit`` bytes or
        less (and temporary files left by a killed writer); returns how many were deleted."""
        if self.disk_dir is None or not self.disk_dir.is_dir():
            return 0
        files = []
        stale = time.time() - _TMP_MAX_AGE
        with os.scandir(self.disk_dir) as it:
            for entry in it:
                if not entry.is_file():
                    continue
                st = entry.stat()
                if entry.name.endswith(SUFFIX):
                    files.append((st.st_mtime, st.st_size, entry.path))
                elif fnmatch.fnmatch(entry.name, TMP_GLOB) and st.st_mtime < stale:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        total = sum(size for _, size, _ in files)
        deleted = 0
        for _, size, path in sorted(files):
            if total <= limit:
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                deleted += 1
            total -= size
        return deleted

    def disk_usage(self) -> int:
        """Bytes used by the cache files on disk."""
        if self.disk_dir is None or not self.disk_dir.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.disk_dir.glob("*" + SUFFIX) if p.is_file())

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters and of the memory use."""
        with self._lock:
            s = self._stats
            return CacheStats(
                memory_hits=s.memory_hits, disk_hits=s.disk_hits, misses=s.misses,
                disk_writes=s.disk_writes, disk_errors=s.disk_errors, evictions=s.evictions,
                memory_bytes=self._memory.nbytes, entries=len(self._memory),
                memory_limit=self.memory_limit,
                disk_dir=str(self.disk_dir) if self.disk_dir is not None else None,
            )

    # -- internals -------------------------------------------------------------------------

    def _remember(self, key: EmbeddingKey, emb: Embedding) -> None:
        """Insert into the memory LRU, which evicts down to the byte budget (lock held); an
        embedding larger than the whole budget is not kept: disk only."""
        self._memory.put(key, emb)

    def _evicted(self, key: EmbeddingKey, emb: Embedding) -> None:
        """The memory LRU dropped ``emb`` to make room (called by ``_remember``: lock held)."""
        self._stats.evictions += 1

    def _read_disk(self, key: EmbeddingKey) -> Embedding | None:
        path = self.path_for(key)
        if path is None:
            return None
        try:
            emb = read_embedding(path, key)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring embedding cache file %s: %s (it will be rebuilt)", path, exc)
            with self._lock:
                self._stats.disk_errors += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # mark as recently used for trim_disk
        return emb
