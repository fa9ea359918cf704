"""Project files as an older MaskLoop wrote them, for the migration tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.project_schema import APPLICATION_ID, SCHEMA_V1, SCHEMA_V2, SCHEMA_V3

SCRIPTS = {1: SCHEMA_V1, 2: SCHEMA_V1 + SCHEMA_V2, 3: SCHEMA_V1 + SCHEMA_V2 + SCHEMA_V3}


def rewrite_as_version(path: Path, version: int) -> None:
    """Rebuild the (closed) project file at ``path`` with the tables and columns of schema
    ``version`` only, keeping the rows of those columns: the file an older MaskLoop would
    have written with the same contents."""
    old = sqlite3.connect(path)
    shape = sqlite3.connect(":memory:")
    shape.executescript(SCRIPTS[version])
    tables = [r[0] for r in shape.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    rows = {}
    for table in tables:
        columns = [r[1] for r in shape.execute(f"PRAGMA table_info({table})")]
        rows[table] = (columns, old.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall())
    old.close()
    shape.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    new = sqlite3.connect(path)
    new.executescript(SCRIPTS[version])
    for table, (columns, values) in rows.items():
        new.executemany(f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})", values)
    new.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    new.execute(f"PRAGMA user_version = {version}")
    new.commit()
    new.close()
