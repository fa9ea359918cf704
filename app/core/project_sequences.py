"""Sequences in a project: videos and frame folders, their frames and the tracks through them.

``project.sequences`` is a ``SequenceStore``. A sequence is a row of ``sequences`` (path
relative to the image root, like an image's). A frame is an ``images`` row made on first use
(``frame_image``): its path is ``f"{sequence.path}#{index:06d}"`` (not a file), its size the
sequence's and its content hash ``f"{sequence.content_hash}#{index}"``, so instances,
proposals and the per-image undo history work on frames as on images, while
``project.images()`` (the image list, checks, image exports) never sees them.

A track is one object through a sequence (a name unique in it, a label); its instances carry
``track_id`` and an ``origin``: ANCHOR (the person's; propagation starts from these and never
overwrites them) or PROPAGATED (``put_propagated`` writes and replaces these). Editing a
propagated instance's geometry (``Project.update_geometry``) makes it an anchor.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import ImageError, ProjectError
from app.core.images import content_hash
from app.core.project_schema import (
    INSTANCE_COLUMNS,
    check_geometry,
    geometry_to_wkb,
    instance_from_row,
    now,
)
from app.core.sequences import (
    DEFAULT_FOLDER_FPS,
    FrameFolderSequence,
    Sequence,
    SequenceError,
    open_sequence,
)
from app.core.types import (
    Geometry,
    ImageRecord,
    ImageStatus,
    Instance,
    InstanceOrigin,
    SequenceRecord,
    Source,
    Track,
)

if TYPE_CHECKING:
    from app.core.project import Project

_CHUNK = 500  # frame indices per IN (...) list

# Instances with the index of the frame they are on.
_FRAME_INSTANCE_SQL = (
    f"SELECT {INSTANCE_COLUMNS}, im.frame_index FROM instances i "
    "JOIN labels l ON l.id = i.label_id JOIN images im ON im.id = i.image_id "
    "WHERE im.sequence_id = ?")
_TRACK_SQL = ("SELECT t.id, t.sequence_id, t.name, l.name AS label FROM tracks t "
              "JOIN labels l ON l.id = t.label_id")


def frame_path(sequence: SequenceRecord, index: int) -> str:
    """The images.path of frame ``index`` of ``sequence`` (a name, not a file)."""
    return f"{sequence.path}#{index:06d}"


def folder_hash(files: Iterable[Path]) -> str:
    """sha256 over the frame files' names and content hashes, in frame order: the same
    frames under the same names give the same hash wherever the folder is."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{content_hash(file)}\n".encode())
    return digest.hexdigest()


def _sequence_row(row: sqlite3.Row) -> SequenceRecord:
    return SequenceRecord(path=row["path"], kind=row["kind"], frame_count=row["frame_count"],
                          fps=row["fps"], width=row["width"], height=row["height"],
                          content_hash=row["content_hash"], id=row["id"])


def _track_row(row: sqlite3.Row) -> Track:
    return Track(sequence_id=row["sequence_id"], name=row["name"], label=row["label"],
                 id=row["id"])


class SequenceStore:
    """The sequences, frames and tracks of one project (see the module docstring)."""

    def __init__(self, project: Project) -> None:
        self.project = project

    # --- sequences ----------------------------------------------------------------------------

    def add(self, path: str | os.PathLike[str]) -> SequenceRecord:
        """Register a video file or a folder of frames (a relative path is taken from the
        working folder, as ``add_images`` takes it); stored relative to the image root. The
        same path again returns the stored record. ProjectError naming the file when it
        cannot be read."""
        file = Path(os.path.abspath(path))
        rel = self.project.relative_path(file)
        known = self.by_path(rel)
        if known is not None:
            return known
        try:
            with open_sequence(file) as seq:
                count, fps, (width, height) = len(seq), float(seq.fps), seq.size
                if isinstance(seq, FrameFolderSequence):
                    kind, digest = "frames", folder_hash(seq.files)
                else:
                    kind, digest = "video", content_hash(file)
        except (SequenceError, ImageError) as exc:
            raise ProjectError(str(exc)) from exc
        except OSError as exc:
            raise ProjectError(f"{file}: {exc.strerror or exc}") from exc
        with self.project.transaction():
            known = self.by_path(rel)  # another process may have added it meanwhile
            if known is not None:
                return known
            cur = self.project.execute(
                "INSERT INTO sequences (path, kind, frame_count, fps, width, height, "
                "content_hash, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rel, kind, count, fps, width, height, digest, now()))
        return SequenceRecord(path=rel, kind=kind, frame_count=count, fps=fps, width=width,
                              height=height, content_hash=digest, id=cur.lastrowid)

    def all(self) -> list[SequenceRecord]:
        """Every sequence, in the order they were added."""
        return [_sequence_row(r) for r in self.project.query(
            "SELECT * FROM sequences ORDER BY id")]

    def get(self, sequence_id: int) -> SequenceRecord:
        rows = self.project.query("SELECT * FROM sequences WHERE id = ?", (sequence_id,))
        if not rows:
            raise ProjectError(f"{self.project.path}: no sequence with id {sequence_id}")
        return _sequence_row(rows[0])

    def by_path(self, rel: str) -> SequenceRecord | None:
        """The sequence stored under ``rel`` (relative to the image root), or None."""
        rows = self.project.query("SELECT * FROM sequences WHERE path = ?",
                                  (Path(rel).as_posix(),))
        return _sequence_row(rows[0]) if rows else None

    def path_of(self, record: SequenceRecord) -> Path:
        """The video file or frame folder on this machine (absolute)."""
        return self.project.image_root / record.path

    def open(self, sequence_id: int) -> Sequence:
        """The sequence's frames, decoded on demand (the caller closes it); SequenceError
        when the file cannot be read any more."""
        record = self.get(sequence_id)
        return open_sequence(self.path_of(record), fps=record.fps or DEFAULT_FOLDER_FPS)

    # --- frames -------------------------------------------------------------------------------

    def frame_image(self, sequence_id: int, index: int) -> ImageRecord:
        """The images row of frame ``index``, made on first use (the same row afterwards);
        IndexError outside 0..frame_count-1."""
        record = self.get(sequence_id)
        index = int(index)
        if not 0 <= index < record.frame_count:
            raise IndexError(f"{record.path}: frame {index} out of range "
                             f"(0..{record.frame_count - 1})")
        with self.project.transaction():
            rows = self.project.query(
                "SELECT id FROM images WHERE sequence_id = ? AND frame_index = ?",
                (sequence_id, index))
            if rows:
                return self.project.image(rows[0]["id"])
            image = ImageRecord(path=frame_path(record, index), width=record.width,
                                height=record.height,
                                content_hash=f"{record.content_hash}#{index}",
                                status=ImageStatus.NEW)
            cur = self.project.execute(
                "INSERT INTO images (path, width, height, content_hash, status, added_at, "
                "sequence_id, frame_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (image.path, image.width, image.height, image.content_hash,
                 image.status.value, now(), sequence_id, index))
        return dataclasses.replace(image, id=cur.lastrowid)

    def frame_of(self, image_id: int) -> tuple[int, int] | None:
        """(sequence id, frame index) of a frame's images row; None for a plain image
        (ProjectError for an unknown id)."""
        rows = self.project.query("SELECT sequence_id, frame_index FROM images WHERE id = ?",
                                  (image_id,))
        if not rows:
            raise ProjectError(f"{self.project.path}: no image with id {image_id}")
        if rows[0]["sequence_id"] is None:
            return None
        return int(rows[0]["sequence_id"]), int(rows[0]["frame_index"])

    # --- tracks -------------------------------------------------------------------------------

    def add_track(self, sequence_id: int, label: str, name: str | None = None) -> Track:
        """A new track of ``label`` (created if unknown) in the sequence; its name is
        ``name`` or the first free f"{label} {n}". ProjectError when the name is taken."""
        with self.project.transaction():
            self.get(sequence_id)
            lab = self.project.ensure_label(label)
            taken = {t.name for t in self.tracks(sequence_id)}
            if name is None:
                n = 1
                while f"{lab.name} {n}" in taken:
                    n += 1
                name = f"{lab.name} {n}"
            name = self._check_name(name, taken)
            cur = self.project.execute(
                "INSERT INTO tracks (sequence_id, name, label_id, created_at) "
                "VALUES (?, ?, ?, ?)", (sequence_id, name, lab.id, now()))
        return Track(sequence_id=sequence_id, name=name, label=lab.name, id=cur.lastrowid)

    def _check_name(self, name: str, taken: set[str]) -> str:
        name = name.strip()
        if not name:
            raise ProjectError("a track needs a name")
        if name in taken:
            raise ProjectError(f"a track called {name!r} already exists in this sequence")
        return name

    def tracks(self, sequence_id: int) -> list[Track]:
        """The sequence's tracks in the order they were made."""
        return [_track_row(r) for r in self.project.query(
            f"{_TRACK_SQL} WHERE t.sequence_id = ? ORDER BY t.id", (sequence_id,))]

    def track(self, track_id: int) -> Track:
        rows = self.project.query(f"{_TRACK_SQL} WHERE t.id = ?", (track_id,))
        if not rows:
            raise ProjectError(f"{self.project.path}: no track with id {track_id}")
        return _track_row(rows[0])

    def rename_track(self, track_id: int, name: str) -> None:
        """Rename a track; the name must be free in its sequence."""
        with self.project.transaction():
            track = self.track(track_id)
            taken = {t.name for t in self.tracks(track.sequence_id) if t.id != track_id}
            self.project.execute("UPDATE tracks SET name = ? WHERE id = ?",
                                 (self._check_name(name, taken), track_id))

    def relabel_track(self, track_id: int, label: str) -> None:
        """Give the track and every instance of it ``label`` (created if unknown)."""
        with self.project.transaction():
            self.track(track_id)
            lab = self.project.ensure_label(label)
            self.project.execute("UPDATE tracks SET label_id = ? WHERE id = ?",
                                 (lab.id, track_id))
            self.project.execute(
                "UPDATE instances SET label_id = ?, updated_at = ? WHERE track_id = ?",
                (lab.id, now(), track_id))

    def delete_track(self, track_id: int, from_frame: int = 0) -> int:
        """Delete the track's instances on frames ``from_frame`` on (anchors too); from
        frame 0, the track as well. Returns how many instances went."""
        with self.project.transaction():
            self.track(track_id)
            if from_frame <= 0:
                cur = self.project.execute("DELETE FROM instances WHERE track_id = ?",
                                           (track_id,))
                self.project.execute("DELETE FROM tracks WHERE id = ?", (track_id,))
            else:
                cur = self.project.execute(
                    "DELETE FROM instances WHERE track_id = ? AND image_id IN "
                    "(SELECT id FROM images WHERE frame_index >= ?)",
                    (track_id, int(from_frame)))
        return int(cur.rowcount)

    # --- instances ----------------------------------------------------------------------------

    def instances(self, sequence_id: int,
                  track_id: int | None = None) -> dict[int, list[Instance]]:
        """Frame index -> the instances on it (of every track and none, or of ``track_id``),
        in the order they were made; frames without instances are left out."""
        sql = _FRAME_INSTANCE_SQL
        params: tuple[int, ...] = (sequence_id,)
        if track_id is not None:
            sql += " AND i.track_id = ?"
            params += (track_id,)
        out: dict[int, list[Instance]] = {}
        for row in self.project.query(f"{sql} ORDER BY im.frame_index, i.id", params):
            out.setdefault(row["frame_index"], []).append(instance_from_row(row))
        return out

    def frame_marks(self, sequence_id: int) -> list[tuple[int, int | None, InstanceOrigin]]:
        """(frame index, track id, origin) of every instance of the sequence, without
        reading geometries: what the window's frame bar and track counts need after each
        edit (a long video holds thousands of instances)."""
        rows = self.project.query(
            "SELECT im.frame_index, i.track_id, i.origin FROM instances i "
            "JOIN images im ON im.id = i.image_id WHERE im.sequence_id = ? "
            "ORDER BY im.frame_index, i.id", (sequence_id,))
        return [(int(r[0]), r[1], InstanceOrigin(r[2])) for r in rows]

    def anchors(self, sequence_id: int) -> dict[int, dict[int, Instance]]:
        """Track id -> {frame index: the track's anchor instance there} for the tracks that
        have anchors (the latest made when a frame has two)."""
        out: dict[int, dict[int, Instance]] = {}
        for row in self.project.query(
                f"{_FRAME_INSTANCE_SQL} AND i.track_id IS NOT NULL AND i.origin = ? "
                "ORDER BY i.track_id, im.frame_index, i.id",
                (sequence_id, InstanceOrigin.ANCHOR.value)):
            out.setdefault(row["track_id"], {})[row["frame_index"]] = instance_from_row(row)
        return out

    def put_propagated(self, sequence_id: int, frame: int, track_id: int, geometry: Geometry,
                       score: float | None, *,
                       source: Source = Source.CLASSICAL) -> Instance | None:
        """Write what propagation found for the track on ``frame``, in one transaction: None
        (nothing written) when the track has an anchor there; otherwise the track's
        propagated instance there, replaced in place (same id) or added."""
        blob = geometry_to_wkb(check_geometry(geometry, "propagated geometry"))
        with self.project.transaction():
            track = self.track(track_id)
            if track.sequence_id != sequence_id:
                raise ProjectError(f"{self.project.path}: track {track_id} is not a track of "
                                   f"sequence {sequence_id}")
            image_id = int(self.frame_image(sequence_id, frame).id or 0)
            rows = self.project.query(
                "SELECT id, origin FROM instances WHERE image_id = ? AND track_id = ? "
                "ORDER BY id", (image_id, track_id))
            if any(r["origin"] == InstanceOrigin.ANCHOR.value for r in rows):
                return None
            if not rows:
                return self.project.add_instance(Instance(
                    image_id=image_id, label=track.label, geometry=geometry, score=score,
                    source=source, track_id=track_id, origin=InstanceOrigin.PROPAGATED))
            keep, extra = rows[0]["id"], [r["id"] for r in rows[1:]]
            for instance_id in extra:
                self.project.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
            self.project.execute(
                "UPDATE instances SET geometry = ?, score = ?, source = ?, updated_at = ?, "
                "label_id = (SELECT label_id FROM tracks WHERE id = ?) WHERE id = ?",
                (blob, None if score is None else float(score), Source(source).value, now(),
                 track_id, keep))
            return self.project.instance(keep)

    def clear_propagated(self, sequence_id: int, track_id: int, frames: Iterable[int]) -> int:
        """Remove the track's propagated instances on ``frames`` (anchors stay); returns how
        many went."""
        wanted = sorted({int(f) for f in frames})
        removed = 0
        with self.project.transaction():
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start:start + _CHUNK]
                cur = self.project.execute(
                    "DELETE FROM instances WHERE track_id = ? AND origin = ? AND image_id IN "
                    "(SELECT id FROM images WHERE sequence_id = ? AND frame_index IN "
                    f"({', '.join('?' * len(chunk))}))",
                    (track_id, InstanceOrigin.PROPAGATED.value, sequence_id, *chunk))
                removed += int(cur.rowcount)
        return removed
