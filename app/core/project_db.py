"""The project file: one SQLite database; opening, transactions, image root, settings.

Durability: the file is in WAL mode with ``synchronous=FULL``. Every edit is one short
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a process killed at any moment loses at most
the edit under way and never leaves a half-written edit or a corrupt file. FULL (rather than
NORMAL) also fsyncs the WAL on each commit, so an edit the UI has shown as saved survives a
power cut too; edits come at human pace, so the fsync (about a millisecond) is never felt, and
bulk work (``add_images``) commits in batches.

Threads: one connection opened with ``check_same_thread=False`` and guarded by one re-entrant
lock; every read and every transaction holds the lock, so the GUI may read on one thread while
a worker writes on another. Other processes may open the same file (WAL lets readers run beside
a writer; writers wait up to ``BUSY_TIMEOUT_MS``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from app.core.errors import ProjectError
from app.core.project_schema import APPLICATION_ID, create_schema, migrate, now

BUSY_TIMEOUT_MS = 5000


class ProjectFile:
    """The SQLite file under a Project: opening, transactions, the image root, settings.
    Use ``Project.create`` or ``Project.open``; close it (or use it as a context manager) so
    the WAL is folded back into the single project file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self._path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._depth = 0  # nesting depth of transaction()
        self._root = self._load_image_root()

    # --- opening and closing ------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None,
               *, overwrite: bool = False) -> Self:
        """Create a new project file at ``path`` whose images live under ``image_root`` (default:
        the project's folder). Refuses to replace an existing file unless ``overwrite``."""
        path = Path(os.path.abspath(path))
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise ProjectError(f"{path}: already exists (use --force to replace it)")
            if path.is_dir():
                raise ProjectError(f"{path}: is a folder, not a project file")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        if not path.parent.is_dir():
            raise ProjectError(f"{path}: folder {path.parent} does not exist")
        conn = cls._connect(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            create_schema(conn)
            conn.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?)", (now(),))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.close()
            raise ProjectError(f"{path}: cannot create project: {exc}") from exc
        project = cls(path, conn)
        project.set_image_root(image_root if image_root is not None else path.parent)
        return project

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open an existing project file (migrating an older schema)."""
        path = Path(os.path.abspath(path))
        if not path.is_file():
            raise ProjectError(f"{path}: no such project file")
        conn = cls._connect(path, check_id=True)
        try:
            migrate(conn, str(path))
            return cls(path, conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"{path}: cannot open project ({exc})") from exc
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _connect(path: Path, check_id: bool = False) -> sqlite3.Connection:
        """Connect and set the pragmas; with ``check_id``, refuse (before writing anything)
        a file that is not a MaskLoop project."""
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if check_id and conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise ProjectError(f"{path}: not a MaskLoop project")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ProjectError(f"{path}: not a MaskLoop project ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Fold the WAL into the file and close; further use raises ProjectError."""
        with self._lock:
            if self._conn is None:
                return
            # another process may hold the file; its close will checkpoint then
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self._path)!r})"

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._conn is None

    # --- transactions and queries -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic edit: everything inside commits together or not at all. Re-entrant:
        a nested block is a savepoint inside the outer transaction."""
        with self._lock:
            conn = self._live()
            depth = self._depth
            try:
                conn.execute(f"SAVEPOINT sp{depth}" if depth else "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise ProjectError(f"{self._path}: cannot write: {exc}") from exc
            self._depth = depth + 1
            try:
                yield conn
            except BaseException:
                self._depth = depth
                self._rollback(conn, depth)
                raise
            self._depth = depth
            try:
                conn.execute(f"RELEASE sp{depth}" if depth else "COMMIT")
            except sqlite3.Error as exc:
                self._rollback(conn, depth)
                raise ProjectError(f"{self._path}: cannot save: {exc}") from exc

    @staticmethod
    def _rollback(conn: sqlite3.Connection, depth: int) -> None:
        try:
            if depth:
                conn.execute(f"ROLLBACK TO sp{depth}")
                conn.execute(f"RELEASE sp{depth}")
            else:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (e.g. after a disk-full error)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ProjectError(f"{self._path}: project is closed")
        return self._conn

    def outside_transaction(self, setup: Callable[[sqlite3.Connection], None]) -> bool:
        """Run ``setup`` on the connection while no transaction is open (under the store's
        lock, so none starts meanwhile): for hooks that live in this connection only
        (functions, temporary triggers) and that a rollback must not take away. False, with
        nothing run, when a transaction is open."""
        with self._lock:
            conn = self._live()
            if conn.in_transaction:
                return False
            setup(conn)
            return True

    def change_count(self) -> int:
        """How many rows this connection has inserted, updated or deleted so far (SQLite's
        ``total_changes``): a cheap key for caches of what was read."""
        with self._lock:
            return int(self._live().total_changes)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run one read-only statement (for the store's own modules: commands, formats)."""
        with self._lock:
            try:
                return self._live().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise ProjectError(f"{self._path}: cannot read: {exc}") from exc

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one statement inside the current (or a new) transaction; SQLite errors become
        ProjectError."""
        with self.transaction() as conn:
            try:
                return conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise ProjectError(f"{self._path}: cannot write: {exc}") from exc

    # --- image root ---------------------------------------------------------------------------

    def _load_image_root(self) -> Path:
        meta = {r["key"]: r["value"] for r in self.query("SELECT key, value FROM meta")}
        rel, absolute = meta.get("image_root_rel"), meta.get("image_root_abs")
        candidates = []
        if rel is not None:
            candidates.append(Path(os.path.normpath(self._path.parent / rel)))
        if absolute is not None:
            candidates.append(Path(absolute))
        for candidate in candidates:  # the relative form first: the folder moved as a whole
            if candidate.is_dir():
                return candidate
        return candidates[0] if candidates else self._path.parent

    @property
    def image_root(self) -> Path:
        """The folder image paths are relative to (absolute)."""
        return self._root

    def set_image_root(self, root: str | os.PathLike[str]) -> None:
        """Point the project at another image folder. Stored relative to the project file when
        it lies inside the project's folder (so the folder can move as a whole) and absolute
        too (so the project file alone can move)."""
        root = Path(os.path.abspath(root))
        try:
            rel: str | None = Path(os.path.relpath(root, self._path.parent)).as_posix()
        except ValueError:  # another drive on Windows
            rel = None
        if rel is not None and rel.split("/")[0] == "..":
            rel = None
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('image_root_rel', ?)", (rel,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('image_root_abs', ?)", (str(root),))
        self._root = root

    def relative_path(self, path: str | os.PathLike[str]) -> str:
        """``path`` as stored: relative to the image root with POSIX separators (absolute when
        it cannot be made relative, e.g. on another drive)."""
        absolute = os.path.abspath(path)
        try:
            return Path(os.path.relpath(absolute, self._root)).as_posix()
        except ValueError:
            return Path(absolute).as_posix()

    # --- settings -----------------------------------------------------------------------------

    def get_setting(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM settings WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-able value under ``key``."""
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ProjectError(f"setting {key!r}: value is not JSON-able ({exc})") from exc
        self.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, text))
