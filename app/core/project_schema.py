"""The project file's SQLite schema, its version and migrations, and value conversions.

``PRAGMA user_version`` holds the schema version. Opening an older file runs the functions of
``MIGRATIONS`` in order (each takes the file from version ``v`` to ``v + 1`` inside one
transaction); opening a file made by a newer MaskLoop is refused rather than guessed at.
"""

from __future__ import annotations

import colorsys
import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import shapely
from shapely.geometry import MultiPolygon, Polygon

from app.core.errors import ProjectError
from app.core.types import Geometry, Instance, InstanceOrigin, Source

# 'MLOP': marks the SQLite file as a MaskLoop project (PRAGMA application_id).
APPLICATION_ID = 0x4D4C4F50
SCHEMA_VERSION = 4  # 2: history rows refer to labels by id; image_checks. 3: proposals.
# 4: sequences (videos, frame folders), their frames as image rows, tracks

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE images (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,
    width        INTEGER NOT NULL CHECK (width > 0),
    height       INTEGER NOT NULL CHECK (height > 0),
    content_hash TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'new'
                 CHECK (status IN ('new', 'in progress', 'done', 'skipped')),
    added_at     TEXT NOT NULL
);
CREATE INDEX images_by_hash ON images (content_hash);
CREATE TABLE labels (
    id       INTEGER PRIMARY KEY,
    name     TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
    colour   TEXT NOT NULL,
    hotkey   TEXT UNIQUE,
    position INTEGER NOT NULL
);
-- AUTOINCREMENT: an id is never handed out twice, so undoing a delete can bring an
-- instance back under its old id without colliding with one made since.
CREATE TABLE instances (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id   INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    label_id   INTEGER NOT NULL REFERENCES labels (id) ON DELETE RESTRICT,
    geometry   BLOB NOT NULL,
    score      REAL,
    source     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX instances_by_image ON instances (image_id);
CREATE INDEX instances_by_label ON instances (label_id);
-- One row per undoable command of an image (rows with undone = 1 form the redo list).
CREATE TABLE history (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    command    TEXT NOT NULL,
    undone     INTEGER NOT NULL DEFAULT 0 CHECK (undone IN (0, 1)),
    created_at TEXT NOT NULL,
    UNIQUE (image_id, seq)
);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

SCHEMA_V2 = """
-- What decoding an image file in full found (app.core.image_checks), for the file's size
-- and modification time then: problem is NULL when it decoded.
CREATE TABLE image_checks (
    image_id INTEGER PRIMARY KEY REFERENCES images (id) ON DELETE CASCADE,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    problem  TEXT
);
"""

SCHEMA_V3 = """
-- What automatic tools proposed (app.core.proposals): never an instance until accepted.
-- label is a name (the label may not exist until the proposal is accepted), instance_id
-- the instance its acceptance made. AUTOINCREMENT: undo and redo keep ids stable.
CREATE TABLE proposals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id    INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    source      TEXT NOT NULL,
    backend     TEXT NOT NULL,
    made_by     TEXT NOT NULL,
    prompt      TEXT NOT NULL,
    score       REAL,
    geometry    BLOB NOT NULL,
    label       TEXT,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'rejected')),
    instance_id INTEGER,
    created_at  TEXT NOT NULL,
    decided_at  TEXT
);
CREATE INDEX proposals_by_image ON proposals (image_id, status);
-- Images a batch run (maskloop autolabel) has finished, by its run key (the kind, the
-- query or boxes file, the model): a rerun skips them.
CREATE TABLE autolabel_done (
    image_id    INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    run_key     TEXT NOT NULL,
    proposals   INTEGER NOT NULL,
    finished_at TEXT NOT NULL,
    PRIMARY KEY (image_id, run_key)
);
"""

SCHEMA_V4 = """
-- Videos and frame folders (app.core.project_sequences). path is relative to the image root
-- as images' are, content_hash the video file's hash or one over a folder's frame files.
CREATE TABLE sequences (
    id           INTEGER PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL CHECK (kind IN ('video', 'frames')),
    frame_count  INTEGER NOT NULL CHECK (frame_count > 0),
    fps          REAL NOT NULL CHECK (fps >= 0),  -- 0: the video does not say
    width        INTEGER NOT NULL CHECK (width > 0),
    height       INTEGER NOT NULL CHECK (height > 0),
    content_hash TEXT NOT NULL,
    added_at     TEXT NOT NULL
);
-- A frame is an images row with its sequence and index (both NULL for a plain image),
-- made on first use: instances, proposals and the history hang off it as off any image.
ALTER TABLE images ADD COLUMN sequence_id INTEGER REFERENCES sequences (id) ON DELETE CASCADE;
ALTER TABLE images ADD COLUMN frame_index INTEGER CHECK (frame_index >= 0);
CREATE UNIQUE INDEX images_by_frame ON images (sequence_id, frame_index);
-- One object followed through a sequence. AUTOINCREMENT: ids are never handed out twice.
CREATE TABLE tracks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sequence_id INTEGER NOT NULL REFERENCES sequences (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) > 0),
    label_id    INTEGER NOT NULL REFERENCES labels (id) ON DELETE RESTRICT,
    created_at  TEXT NOT NULL,
    UNIQUE (sequence_id, name)
);
CREATE INDEX tracks_by_label ON tracks (label_id);
-- track_id: no ON DELETE action, so a track cannot be deleted while instances name it
-- (SequenceStore.delete_track deletes them first). origin: the person's or propagation's.
ALTER TABLE instances ADD COLUMN track_id INTEGER REFERENCES tracks (id);
ALTER TABLE instances ADD COLUMN origin TEXT NOT NULL DEFAULT 'anchor'
    CHECK (origin IN ('anchor', 'propagated'));
CREATE INDEX instances_by_track ON instances (track_id, image_id)
"""

Migration = Callable[[sqlite3.Connection], None]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` (no ";" inside its comments) in the caller's
    transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)



def _with_label_ids(data: object, ids: Mapping[str, int]) -> object:
    """A history command's JSON with the id of every label it names (instance snapshots
    get ``label_id``, relabels ``new_id`` and ``old_id``)."""
    if isinstance(data, list):
        return [_with_label_ids(v, ids) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _with_label_ids(v, ids) for k, v in data.items()}
    label = out.get("label")
    if isinstance(label, str) and "geometry" in out:
        out.setdefault("label_id", ids.get(label))
    if out.get("kind") == "relabel":
        for key in ("new", "old"):
            name = out.get(key)
            if isinstance(name, str):
                out.setdefault(f"{key}_id", ids.get(name))
    return out


def _history_label_ids(conn: sqlite3.Connection) -> None:
    """1 -> 2: history rows named their labels, so undo after a rename created the old name
    again. Look the names up once, now, before a rename can change what they mean. And the
    table of image checks."""
    conn.execute(SCHEMA_V2)
    ids = {name: label_id for label_id, name in conn.execute("SELECT id, name FROM labels")}
    for row_id, text in conn.execute("SELECT id, command FROM history").fetchall():
        try:
            data = json.loads(text)
        except ValueError:
            continue  # left as it is: reading it reports the problem
        conn.execute("UPDATE history SET command = ? WHERE id = ?",
                     (json.dumps(_with_label_ids(data, ids), separators=(",", ":")), row_id))


def _proposals(conn: sqlite3.Connection) -> None:
    """2 -> 3: the tables of proposals and of finished autolabel runs (nothing else changes)."""
    _run_script(conn, SCHEMA_V3)


def _sequences(conn: sqlite3.Connection) -> None:
    """3 -> 4: sequences, frames as image rows, tracks, and each instance's track and origin
    (every existing instance is a plain image's, so NULL and 'anchor')."""
    _run_script(conn, SCHEMA_V4)


# MIGRATIONS[v] takes a file from schema version v to v + 1.
MIGRATIONS: dict[int, Migration] = {1: _history_label_ids, 2: _proposals, 3: _sequences}


def now() -> str:
    """The current UTC time as ISO 8601 text, as stored in the *_at columns."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the current schema in an empty database (inside the caller's transaction)."""
    _run_script(conn, SCHEMA_V1 + SCHEMA_V2 + SCHEMA_V3 + SCHEMA_V4)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(
    conn: sqlite3.Connection,
    path: str,
    migrations: Mapping[int, Migration] = MIGRATIONS,
    target: int = SCHEMA_VERSION,
) -> int:
    """Bring the database to schema ``target``, one transaction per step; returns the old
    version. ``conn`` must be in autocommit mode (isolation_level None)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > target:
        raise ProjectError(
            f"{path}: made by a newer MaskLoop (schema version {version}, this version reads "
            f"up to {target}); update MaskLoop to open it"
        )
    start = version
    while version < target:
        step = migrations.get(version)
        if step is None:
            raise ProjectError(f"{path}: no migration from schema version {version}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version += 1
    return start


# --- geometry ---------------------------------------------------------------------------------


def check_geometry(geom: object, what: str = "geometry") -> Geometry:
    """Return ``geom`` if it is a non-empty, valid Polygon or MultiPolygon, else raise
    ProjectError saying why (fix invalid shapes with app.core.geometry.make_valid_polygonal)."""
    if not isinstance(geom, Polygon | MultiPolygon):
        raise ProjectError(f"{what} must be a Polygon or MultiPolygon, got {type(geom).__name__}")
    if geom.is_empty:
        raise ProjectError(f"{what} is empty")
    if not geom.is_valid:
        raise ProjectError(f"{what} is not valid: {shapely.is_valid_reason(geom)}")
    return geom


def geometry_to_wkb(geom: Geometry) -> bytes:
    """2-D little-endian WKB: doubles are stored as they are, so the round trip is exact."""
    return shapely.to_wkb(geom, output_dimension=2, byte_order=1)


# What ``instance_from_row`` reads: an instance with its label's current name.
INSTANCE_COLUMNS = ("i.id, i.image_id, i.label_id, l.name, i.geometry, i.score, i.source, "
                    "i.track_id, i.origin")
INSTANCE_SQL = f"SELECT {INSTANCE_COLUMNS} FROM instances i JOIN labels l ON l.id = i.label_id"


def instance_from_row(row: sqlite3.Row) -> Instance:
    """An Instance from a row of ``INSTANCE_SQL``."""
    return Instance(image_id=row["image_id"], label=row["name"],
                    geometry=geometry_from_wkb(row["geometry"]), score=row["score"],
                    source=Source(row["source"]), id=row["id"], label_id=row["label_id"],
                    track_id=row["track_id"], origin=InstanceOrigin(row["origin"]))


def geometry_from_wkb(data: bytes | str) -> Geometry:
    geom = shapely.from_wkb(data)
    if not isinstance(geom, Polygon | MultiPolygon):
        raise ProjectError(f"stored geometry is a {type(geom).__name__}, not a polygon")
    return geom


# --- colours ----------------------------------------------------------------------------------

COLOUR_RE = re.compile(r"^#[0-9a-f]{6}$")

# Well separated colours first (Glasbey-like); after these, golden-angle hues.
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#ffe119", "#469990", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075", "#fabed4",
    "#dcbeff", "#ffd8b1", "#a9a9a9", "#fffac8",
)


def normalise_colour(colour: str) -> str:
    """'#RRGGBB' or 'rrggbb' -> '#rrggbb'; raise ProjectError otherwise."""
    text = colour.strip().lower()
    if not text.startswith("#"):
        text = "#" + text
    if not COLOUR_RE.match(text):
        raise ProjectError(f"colour {colour!r} is not of the form #rrggbb")
    return text


def distinct_colour(used: set[str]) -> str:
    """A colour not in ``used``: the palette in order, then evenly spread hues."""
    for colour in PALETTE:
        if colour not in used:
            return colour
    i = len(used)
    while True:
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
        colour = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
        if colour not in used:
            return colour
        i += 1
