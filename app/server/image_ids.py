"""Roboflow ``image_id`` -> embedding key, kept across restarts.

The recent ids live in memory (a ``BoundedCache``, bounded by bytes); with a cache folder
every id is also written to a small SQLite file there (``image_ids.sqlite``, next to the
embedding files), committed before the request that named it is answered, so a server
restarted after a crash (SIGKILL included) still knows which embedding an id means. The file
is bounded by bytes too (the ids registered longest ago are deleted first) and keyed by (id,
model): a server restarted with another model does not take the old model's embeddings. A
file that cannot be opened or read is set aside (renamed ``*.corrupt``) and started afresh:
the map is a convenience, a client can always send its image again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey

log = logging.getLogger(__name__)

FILE_NAME = "image_ids.sqlite"
_ENTRY_OVERHEAD = 256  # bytes of dict entry, tuple and objects around each cached value
_ROW_OVERHEAD = 64  # bytes of a row beyond its strings, in SQLite's pages and index


def _id_size(image_id: str, _: EmbeddingKey) -> int:
    return len(image_id) + 2 * 64 + _ENTRY_OVERHEAD  # the id, the key's hash and model id


class ImageIds:
    """The id map: memory in front of an optional SQLite file (see the module docstring)."""

    def __init__(self, memory_bytes: int, folder: Path | None = None,
                 disk_bytes: int = 64 * 1024**2) -> None:
        self.memory = BoundedCache[str, EmbeddingKey](memory_bytes, _id_size)
        self.disk_bytes = disk_bytes
        self.path = Path(folder) / FILE_NAME if folder is not None else None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._bytes = 0
        if self.path is not None:
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        try:
            self._db = self._connect(self.path)
            self._bytes = self._used_bytes()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            log.warning("image id file %s is unreadable (%s): set aside as %s", self.path,
                        exc, aside.name)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            try:
                self._db = self._connect(self.path)
                self._bytes = self._used_bytes()
            except sqlite3.DatabaseError as again:
                log.warning("image ids kept in memory only: %s", again)
                self._db = None
        except OSError as exc:
            log.warning("image ids kept in memory only (%s: %s)", self.path, exc)
            self._db = None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a process crash loses nothing committed
            db.execute("CREATE TABLE IF NOT EXISTS image_ids (image_id TEXT NOT NULL, "
                       "model_id TEXT NOT NULL, image_hash TEXT NOT NULL, used REAL NOT NULL, "
                       "PRIMARY KEY (image_id, model_id))")
            db.execute("CREATE INDEX IF NOT EXISTS image_ids_used ON image_ids (used)")
            db.execute("SELECT count(*) FROM image_ids").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @property
    def max_bytes(self) -> int:
        """The memory's bound (the file's is ``disk_bytes``)."""
        return self.memory.maxsize

    def get(self, image_id: str, model_id: str) -> EmbeddingKey | None:
        """The key of ``image_id`` for ``model_id``: from memory, else from the file."""
        key = self.memory.get(image_id)
        if key is not None and key.model_id == model_id:
            return key
        row = self._query("SELECT image_hash FROM image_ids WHERE image_id = ? AND "
                          "model_id = ?", (image_id, model_id))
        if row is None:
            return None
        key = EmbeddingKey(str(row[0]), model_id)
        self.memory.put(image_id, key)
        return key

    def put(self, image_id: str, key: EmbeddingKey) -> None:
        """Remember ``image_id`` -> ``key`` (in the file too, committed before returning)."""
        self.memory.put(image_id, key)
        with self._lock:
            if self._db is None:
                return
            try:
                old = self._db.execute(
                    "SELECT length(image_hash) FROM image_ids WHERE image_id = ? AND "
                    "model_id = ?", (image_id, key.model_id)).fetchone()
                self._db.execute(
                    "INSERT OR REPLACE INTO image_ids (image_id, model_id, image_hash, used) "
                    "VALUES (?, ?, ?, ?)", (image_id, key.model_id, key.image_hash, time.time()))
                base = len(image_id) + len(key.model_id) + _ROW_OVERHEAD
                self._bytes += base + len(key.image_hash) - (
                    base + int(old[0]) if old is not None else 0)
                if self._bytes > self.disk_bytes:
                    self._trim()
            except sqlite3.Error as exc:
                log.warning("could not write image id %r to %s: %s", image_id[:64], self.path,
                            exc)

    def _used_bytes(self) -> int:
        assert self._db is not None
        row = self._db.execute(
            "SELECT coalesce(sum(length(image_id) + length(model_id) + length(image_hash)), 0)"
            ", count(*) FROM image_ids").fetchone()
        return int(row[0]) + _ROW_OVERHEAD * int(row[1])

    def _trim(self) -> None:
        """Delete the ids registered longest ago until the rows fit ``disk_bytes``."""
        assert self._db is not None
        while self._bytes > self.disk_bytes:
            count = int(self._db.execute("SELECT count(*) FROM image_ids").fetchone()[0])
            if count <= 1:
                break
            drop = max(1, count // 10)
            self._db.execute("DELETE FROM image_ids WHERE rowid IN (SELECT rowid FROM "
                             "image_ids ORDER BY used LIMIT ?)", (drop,))
            self._bytes = self._used_bytes()

    def _query(self, sql: str, args: tuple[object, ...]) -> tuple[object, ...] | None:
        with self._lock:
            if self._db is None:
                return None
            try:
                row = self._db.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                log.warning("could not read image ids from %s: %s", self.path, exc)
                return None
        return tuple(row) if row is not None else None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
