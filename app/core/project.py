"""The project store: one SQLite file holding images, labels, instances and edit history.

See ``app.core.project_db`` for durability (WAL, synchronous=FULL, one transaction per edit)
and thread safety (one connection behind one re-entrant lock). Edits that must be undoable go
through ``app.core.commands``, which wraps each edit and its history entry in one transaction.

Videos and frame folders, their frames (image rows that are not files, left out of
``images()``) and tracks are in ``project.sequences`` (``app.core.project_sequences``).

Lookups by id (``image``, ``instance``) raise ProjectError when the id is unknown; lookups by
name or path (``label``, ``image_by_path``) return None.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from app.core.errors import ProjectError
from app.core.jobs import CancelToken, Progress
from app.core.project_db import ProjectFile
from app.core.project_files import AddReport, RelocateReport, add_images, relocate
from app.core.project_schema import (
    INSTANCE_SQL,
    check_geometry,
    distinct_colour,
    geometry_to_wkb,
    instance_from_row,
    normalise_colour,
    now,
)
from app.core.project_sequences import SequenceStore
from app.core.proposals import ProposalStore
from app.core.types import (
    Geometry,
    ImageRecord,
    ImageStatus,
    Instance,
    InstanceOrigin,
    Label,
    Source,
)

__all__ = ["AddReport", "Project", "RelocateReport"]

HOTKEYS = tuple("123456789")
LABEL_SEQ = "label_id_seq"  # meta key: the highest label id handed out
_KEEP: Any = object()

_INSTANCE_SQL = INSTANCE_SQL


def natural_key(path: str) -> tuple[tuple[tuple[int, int | str], ...], ...]:
    """Sort key for POSIX paths: folder by folder, digit runs compared as numbers."""
    return tuple(
        tuple((0, int(tok)) if tok.isdigit() else (1, tok)
              for tok in re.split(r"(\d+)", part.casefold()) if tok)
        for part in path.split("/"))


def _image_row(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(path=row["path"], width=row["width"], height=row["height"],
                       content_hash=row["content_hash"], status=ImageStatus(row["status"]),
                       id=row["id"])


def _instance_row(row: sqlite3.Row) -> Instance:
    """An instance with its track and origin (``instance_from_row``, shared with the
    sequence store)."""
    return instance_from_row(row)


def _label_row(row: sqlite3.Row) -> Label:
    return Label(name=row["name"], colour=row["colour"], hotkey=row["hotkey"], id=row["id"])


class Project(ProjectFile):
    """An open project: images, labels and instances (plus settings and the image root from
    ProjectFile). ``Project.create(path, image_root)`` / ``Project.open(path)``."""

    @property
    def proposals(self) -> ProposalStore:
        """What automatic tools proposed for this project's images (``app.core.proposals``)."""
        return ProposalStore(self)

    @property
    def sequences(self) -> SequenceStore:
        """The project's videos and frame folders, their frames and tracks
        (``app.core.project_sequences``)."""
        return SequenceStore(self)

    # --- images -------------------------------------------------------------------------------

    def add_images(self, folder_or_paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                   progress: Progress | None = None,
                   cancel: CancelToken | None = None) -> AddReport:
        """Register images (a folder, searched recursively, or some files). Unreadable images
        are skipped and reported; images already present are skipped. On cancel, the images
        added so far stay and Cancelled is raised."""
        return add_images(self, folder_or_paths, progress, cancel)

    def insert_image(self, record: ImageRecord) -> ImageRecord:
        """Store one image record as it is (``add_images`` reads the files for you)."""
        cur = self.execute(
            "INSERT INTO images (path, width, height, content_hash, status, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (record.path, record.width, record.height, record.content_hash,
             ImageStatus(record.status).value, now()))
        return dataclasses.replace(record, id=cur.lastrowid)

    def images(self, status: ImageStatus | str | None = None) -> list[ImageRecord]:
        """All images (or those with ``status``) in natural path order (img2 before img10).
        Plain image files only: the frames of sequences are reached through ``sequences``."""
        if status is None:
            rows = self.query("SELECT * FROM images WHERE sequence_id IS NULL")
        else:
            rows = self.query("SELECT * FROM images WHERE sequence_id IS NULL AND status = ?",
                              (ImageStatus(status).value,))
        return sorted((_image_row(r) for r in rows), key=lambda r: natural_key(r.path))

    def image(self, image_id: int) -> ImageRecord:
        rows = self.query("SELECT * FROM images WHERE id = ?", (image_id,))
        if not rows:
            raise ProjectError(f"{self._path}: no image with id {image_id}")
        return _image_row(rows[0])

    def image_by_path(self, rel: str) -> ImageRecord | None:
        rows = self.query("SELECT * FROM images WHERE path = ?", (Path(rel).as_posix(),))
        return _image_row(rows[0]) if rows else None

    def image_path(self, record: ImageRecord) -> Path:
        """The image's absolute path on this machine."""
        return self._root / record.path

    def missing_images(self) -> list[ImageRecord]:
        """Images whose file is not where the project expects it (annotations are kept)."""
        return [r for r in self.images() if not self.image_path(r).is_file()]

    def relocate(self, new_image_root: str | os.PathLike[str], *, match_by_hash: bool = True,
                 progress: Progress | None = None,
                 cancel: CancelToken | None = None) -> RelocateReport:
        """Re-point the image root; images still missing are then looked for under it by
        content hash (renamed or moved files) unless ``match_by_hash`` is false."""
        return relocate(self, new_image_root, match_by_hash, progress, cancel)

    def set_image_path(self, image_id: int, rel: str) -> None:
        """Change where one image is found (relative to the image root)."""
        self.execute("UPDATE images SET path = ? WHERE id = ?", (Path(rel).as_posix(), image_id))

    def set_status(self, image_id: int, status: ImageStatus | str) -> None:
        cur = self.execute("UPDATE images SET status = ? WHERE id = ?",
                          (ImageStatus(status).value, image_id))
        if cur.rowcount == 0:
            raise ProjectError(f"{self._path}: no image with id {image_id}")

    def status_counts(self) -> dict[ImageStatus, int]:
        """Plain images by status (a frame's status means nothing)."""
        counts = dict.fromkeys(ImageStatus, 0)
        for row in self.query("SELECT status, COUNT(*) AS n FROM images "
                              "WHERE sequence_id IS NULL GROUP BY status"):
            counts[ImageStatus(row["status"])] = row["n"]
        return counts

    # --- labels -------------------------------------------------------------------------------

    def labels(self) -> list[Label]:
        """All labels in their display order."""
        return [_label_row(r) for r in self.query("SELECT * FROM labels ORDER BY position, id")]

    def label(self, name: str) -> Label | None:
        rows = self.query("SELECT * FROM labels WHERE name = ?", (name,))
        return _label_row(rows[0]) if rows else None

    def label_by_id(self, label_id: int) -> Label | None:
        """The label with this id (whatever it is called now), or None."""
        rows = self.query("SELECT * FROM labels WHERE id = ?", (label_id,))
        return _label_row(rows[0]) if rows else None

    def add_label(self, label: Label) -> Label:
        """Add a label at the end of the list; the name must be new."""
        name = label.name.strip()
        if not name:
            raise ProjectError("a label needs a name")
        colour = normalise_colour(label.colour)
        with self.transaction() as conn:
            if self.label(name) is not None:
                raise ProjectError(f"label {name!r} already exists")
            position = conn.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM labels").fetchone()[0]
            # ids are never reused (the history refers to labels by id): past the highest
            # id ever handed out, which a removed label no longer shows
            label_id = 1 + conn.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM labels), 0), "
                "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?), 0))",
                (LABEL_SEQ,)).fetchone()[0]
            self.execute(
                "INSERT INTO labels (id, name, colour, hotkey, position) VALUES (?, ?, ?, ?, ?)",
                (label_id, name, colour, label.hotkey or None, position))
            self.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (LABEL_SEQ, str(label_id)))
        return Label(name=name, colour=colour, hotkey=label.hotkey or None, id=label_id)

    def ensure_label(self, name: str) -> Label:
        """The label called ``name``, created with a distinct colour (and a free digit hotkey)
        if it does not exist yet."""
        with self.transaction():
            existing = self.label(name)
            if existing is not None:
                return existing
            labels = self.labels()
            used_keys = {lab.hotkey for lab in labels}
            hotkey = next((k for k in HOTKEYS if k not in used_keys), None)
            colour = distinct_colour({lab.colour for lab in labels})
            return self.add_label(Label(name=name, colour=colour, hotkey=hotkey))

    def update_label(self, name: str, *, new_name: str | None = None, colour: str | None = None,
                     hotkey: str | None = _KEEP) -> Label:
        """Rename, recolour or re-key a label (``hotkey=None`` clears the hotkey)."""
        with self.transaction():
            label = self.label(name)
            if label is None:
                raise ProjectError(f"no label {name!r}")
            if new_name is not None:
                new_name = new_name.strip()
                if not new_name:
                    raise ProjectError("a label needs a name")
                if new_name != name and self.label(new_name) is not None:
                    raise ProjectError(f"label {new_name!r} already exists")
                label.name = new_name
            if colour is not None:
                label.colour = normalise_colour(colour)
            if hotkey is not _KEEP:
                label.hotkey = hotkey or None
            self.execute("UPDATE labels SET name = ?, colour = ?, hotkey = ? WHERE id = ?",
                        (label.name, label.colour, label.hotkey, label.id))
        return label

    def reorder_labels(self, names: list[str]) -> None:
        """Set the display order: ``names`` first in that order, the others after them."""
        order = names + [lab.name for lab in self.labels() if lab.name not in names]
        with self.transaction() as conn:
            for position, name in enumerate(order):
                conn.execute("UPDATE labels SET position = ? WHERE name = ?", (position, name))

    def remove_label(self, name: str, *, delete_instances: bool = False) -> None:
        """Remove a label; refused while instances or tracks use it unless
        ``delete_instances`` (which deletes those tracks and all their instances too)."""
        with self.transaction() as conn:
            label = self.label(name)
            if label is None:
                raise ProjectError(f"no label {name!r}")
            used = conn.execute("SELECT COUNT(*) FROM instances WHERE label_id = ?",
                                (label.id,)).fetchone()[0]
            tracks = [r[0] for r in conn.execute("SELECT id FROM tracks WHERE label_id = ?",
                                                 (label.id,))]
            if (used or tracks) and not delete_instances:
                what = f"{used} instance(s)" if used else f"{len(tracks)} track(s)"
                raise ProjectError(f"label {name!r} is used by {what}")
            marks = ", ".join("?" * len(tracks))
            images = [r[0] for r in conn.execute(
                "SELECT DISTINCT image_id FROM instances WHERE label_id = ? "
                f"OR track_id IN ({marks})", (label.id, *tracks))]
            conn.execute(f"DELETE FROM instances WHERE label_id = ? OR track_id IN ({marks})",
                         (label.id, *tracks))
            conn.execute("DELETE FROM tracks WHERE label_id = ?", (label.id,))
            conn.execute("DELETE FROM labels WHERE id = ?", (label.id,))
            for image_id in images:
                self._settle_status(image_id)

    def label_counts(self) -> dict[str, int]:
        """Number of instances of each label (every label listed, in display order), on
        images and frames alike."""
        rows = self.query(
            "SELECT l.name, COUNT(i.id) AS n FROM labels l LEFT JOIN instances i "
            "ON i.label_id = l.id GROUP BY l.id ORDER BY l.position, l.id")
        return {r["name"]: r["n"] for r in rows}

    # --- instances ----------------------------------------------------------------------------

    def instances(self, image_id: int) -> list[Instance]:
        """The image's instances in the order they were made."""
        rows = self.query(f"{_INSTANCE_SQL} WHERE i.image_id = ? ORDER BY i.id", (image_id,))
        return [_instance_row(r) for r in rows]

    def all_instances(self, *, include_frames: bool = False) -> Iterator[Instance]:
        """Every instance of the project's plain images (and of sequence frames too with
        ``include_frames``: their image rows are not files), by image then creation order."""
        where = "" if include_frames else (
            " WHERE i.image_id IN (SELECT id FROM images WHERE sequence_id IS NULL)")
        for row in self.query(f"{_INSTANCE_SQL}{where} ORDER BY i.image_id, i.id"):
            yield _instance_row(row)

    def instance(self, instance_id: int) -> Instance:
        rows = self.query(f"{_INSTANCE_SQL} WHERE i.id = ?", (instance_id,))
        if not rows:
            raise ProjectError(f"{self._path}: no instance with id {instance_id}")
        return _instance_row(rows[0])

    def instance_count(self, image_id: int | None = None) -> int:
        """Instances of one image or frame, or (None) of the whole project, frames included
        (as ``label_counts`` counts them)."""
        if image_id is None:
            return self.query("SELECT COUNT(*) FROM instances")[0][0]
        return self.query("SELECT COUNT(*) FROM instances WHERE image_id = ?", (image_id,))[0][0]

    def add_instance(self, inst: Instance) -> Instance:
        """Store a new instance and return it with its id. An unknown label is created; an
        image still 'new' becomes 'in progress'. An ``inst.id`` that is given (undo of a
        delete) is reused and must be free. A ``track_id`` must be a track of the sequence
        the image is a frame of."""
        geometry = check_geometry(inst.geometry)
        stamp = now()
        with self.transaction():
            self.image(inst.image_id)
            if inst.track_id is not None:
                self._check_track(inst.image_id, inst.track_id)
            label = self.ensure_label(inst.label)
            cur = self.execute(
                "INSERT INTO instances (id, image_id, label_id, geometry, score, source, "
                "created_at, updated_at, track_id, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (inst.id, inst.image_id, label.id, geometry_to_wkb(geometry), inst.score,
                 Source(inst.source).value, stamp, stamp, inst.track_id,
                 InstanceOrigin(inst.origin).value))
            self.execute("UPDATE images SET status = ? WHERE id = ? AND status = ?",
                        (ImageStatus.IN_PROGRESS.value, inst.image_id, ImageStatus.NEW.value))
        return dataclasses.replace(inst, label=label.name, id=cur.lastrowid, label_id=label.id)

    def _check_track(self, image_id: int, track_id: int) -> None:
        rows = self.query(
            "SELECT t.sequence_id, im.sequence_id AS frame_of FROM tracks t, images im "
            "WHERE t.id = ? AND im.id = ?", (track_id, image_id))
        if not rows:
            raise ProjectError(f"{self._path}: no track with id {track_id}")
        if rows[0]["sequence_id"] != rows[0]["frame_of"]:
            raise ProjectError(f"{self._path}: image {image_id} is not a frame of the "
                               f"sequence of track {track_id}")

    def update_geometry(self, instance_id: int, geom: Geometry,
                        origin: InstanceOrigin = InstanceOrigin.ANCHOR) -> None:
        """Replace an instance's geometry; a propagated instance becomes an anchor (the
        person corrected it, so propagation must not overwrite it). ``origin``: what it
        becomes instead (undoing that correction gives it back as propagated)."""
        blob = geometry_to_wkb(check_geometry(geom))
        self._update_instance(instance_id, f"geometry = ?, origin = '{InstanceOrigin(origin)}'",
                              blob)

    def update_label_of(self, instance_id: int, label: str) -> None:
        """Give the instance another label (created if unknown)."""
        with self.transaction():
            self._update_instance(instance_id, "label_id = ?", self.ensure_label(label).id)

    def _update_instance(self, instance_id: int, assignment: str, value: Any) -> None:
        cur = self.execute(f"UPDATE instances SET {assignment}, updated_at = ? WHERE id = ?",
                          (value, now(), instance_id))
        if cur.rowcount == 0:
            raise ProjectError(f"{self._path}: no instance with id {instance_id}")

    def delete_instance(self, instance_id: int) -> None:
        """Delete an instance; an image left without instances that was only 'in progress'
        because of them (the person never marked it) becomes 'new' again."""
        with self.transaction():
            rows = self.query("SELECT image_id FROM instances WHERE id = ?", (instance_id,))
            if not rows:
                raise ProjectError(f"{self._path}: no instance with id {instance_id}")
            self.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            self._settle_status(rows[0]["image_id"])

    def _settle_status(self, image_id: int) -> None:
        """'in progress' is automatic (the first instance sets it): undo it when the image
        has no instances any more. 'done' and 'skipped' are the person's and stay."""
        self.execute(
            "UPDATE images SET status = ? WHERE id = ? AND status = ? AND NOT EXISTS "
            "(SELECT 1 FROM instances WHERE image_id = ?)",
            (ImageStatus.NEW.value, image_id, ImageStatus.IN_PROGRESS.value, image_id))
