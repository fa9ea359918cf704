"""The frames of a project's sequences in an image export (COCO, YOLO, labelme, masks,
overlay): each frame with instances is decoded and written as an image file, so that the
training tools read a frame's labels exactly as they read a plain image's.

Which frames (``frames``):

- ``"labelled"`` (the default): frames where a person stands behind at least one instance
  (an anchor: drawn, or a propagated one that was edited). Every instance on such a frame is
  written, propagated ones of other tracks too (leaving them out would teach that the object
  is background); the report counts them (``frames_propagated``).
- ``"all"``: every frame with instances, also frames that only propagation has filled
  (not reviewed; counted as above).
- ``"none"``: plain images only (the export as before sequences existed).

A frame is exported under the name ``<sequence name>/<frame index:06d>.jpg`` (``.png`` with
``frame_images="png"``; JPEG quality 95). Formats that place image files themselves (YOLO's
``images/``, COCO with ``copy_images``, labelme's copies) place the decoded frames as they
place images (a symlink becomes a hard link or copy: the decoded file is the export's own).
The others (COCO without copied images, masks, labelme ``images="reference"``) get the frames
written into ``frames/<sequence name>/`` of the output folder (beside the COCO file); the COCO
``file_name`` and the masks ``index.json`` name them relative to the project's image folder,
as they name plain images, and labelme's ``imagePath`` relative to the JSON.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import FormatError, ProjectError
from app.core.formats.common import (
    ExportItem,
    FrameRecord,
    encode_image,
    report_progress,
    write_bytes_atomic,
)
from app.core.formats.video_tracks import sequence_name
from app.core.jobs import CancelToken, Progress, check
from app.core.project import Project
from app.core.sequences import SequenceError
from app.core.types import ImageRecord, Instance, InstanceOrigin, SequenceRecord

FRAME_CHOICES = ("labelled", "all", "none")
FRAME_TYPES = ("jpg", "png")
DEFAULT_FRAMES = "labelled"
JPEG_QUALITY = 95
FRAMES_DIR = "frames"
_DECODED_DIR = ".maskloop-frames"  # in the staging folder; removed before the commit


@dataclass
class PlannedFrame:
    """One frame to export: its sequence, index, images row and instances."""

    sequence: SequenceRecord
    index: int
    record: ImageRecord
    instances: list[Instance]


@dataclass
class FramePlan:
    """The frames an export writes and how (see the module docstring)."""

    frames: list[PlannedFrame]
    image_type: str = "jpg"
    folder: str = ""  # where frames are written in the output ("" when the format places them)

    @property
    def propagated(self) -> int:
        """Propagated (not reviewed) instances among those exported."""
        return sum(inst.origin == InstanceOrigin.PROPAGATED
                   for frame in self.frames for inst in frame.instances)


def frame_ids(project: Project, ids: list[int]) -> set[int]:
    """The ids among ``ids`` that are frames of the project's sequences (unknown ids are
    left out: the caller names them)."""
    found: set[int] = set()
    for image_id in ids:
        try:
            if project.sequences.frame_of(image_id) is not None:
                found.add(image_id)
        except ProjectError:
            continue
    return found


def _names(sequences: list[SequenceRecord]) -> dict[int, str]:
    """Sequence id -> a folder name unique among them (the file stem, then ``_<id>``)."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for seq in sequences:
        if int(seq.id or 0) in names:
            continue
        name = sequence_name(seq.path)
        if name.casefold() in taken:
            name = f"{name}_{seq.id}"
        taken.add(name.casefold())
        names[int(seq.id or 0)] = name
    return names


def plan_frames(project: Project, which: str, image_ids: list[int] | None,
                image_type: str = "jpg") -> FramePlan:
    """The frames to export: by ``which`` (``FRAME_CHOICES``), only those in ``image_ids``
    when given. FormatError for an unknown choice or image type."""
    if which not in FRAME_CHOICES:
        raise FormatError(f"frames must be one of {', '.join(FRAME_CHOICES)}, not {which!r}")
    if image_type not in FRAME_TYPES:
        raise FormatError(f"frame images must be one of {', '.join(FRAME_TYPES)}, "
                          f"not {image_type!r}")
    plan = FramePlan([], image_type)
    if which == "none":
        return plan
    wanted = None if image_ids is None else set(image_ids)
    for seq in project.sequences.all():
        for index, instances in project.sequences.instances(int(seq.id or 0)).items():
            if which == "labelled" and all(i.origin == InstanceOrigin.PROPAGATED
                                           for i in instances):
                continue
            record = project.sequences.frame_image(int(seq.id or 0), index)
            if wanted is None or record.id in wanted:
                plan.frames.append(PlannedFrame(seq, index, record, instances))
    return plan


def frames_folder(fmt: str, options: dict[str, Any], coco_file: str) -> str:
    """Where in the output folder frames are written for ``fmt``: "" when the format places
    image files itself (they then go where its images go)."""
    if fmt == "coco" and not options.get("copy_images"):
        return str(PurePosixPath(coco_file or ".").parent / FRAMES_DIR)
    if fmt == "masks" or (fmt == "labelme" and options.get("images") == "reference"):
        return FRAMES_DIR
    return ""


def _export_path(fmt: str, final: Path, image_root: Path, name: str) -> str:
    """The path an exporter names a frame by: relative to the project's image folder for the
    formats that name files so (COCO file_name, masks index.json), else ``name``."""
    if fmt not in ("coco", "masks"):
        return name
    try:
        return Path(os.path.relpath(final, image_root)).as_posix()
    except ValueError:  # another drive (Windows): an absolute path still reads
        return final.as_posix()


@contextmanager
def decoded_frames(project: Project, plan: FramePlan, fmt: str, stage: Path, out_dir: Path,
                   *, progress: Progress | None = None,
                   cancel: CancelToken | None = None) -> Iterator[list[ExportItem]]:
    """Decode the plan's frames into ``stage`` and yield them as export items
    (``FrameRecord``); frames the format places itself are decoded into a hidden folder that
    is removed afterwards. ``out_dir`` is the final output folder (the paths exporters write
    are relative to where the frames end up)."""
    names = _names([f.sequence for f in plan.frames])
    root = stage / (plan.folder or _DECODED_DIR)
    items: list[ExportItem] = []
    total = len(plan.frames)
    by_sequence: dict[int, list[PlannedFrame]] = {}
    for frame in plan.frames:
        by_sequence.setdefault(int(frame.sequence.id or 0), []).append(frame)
    done = 0
    try:
        for sequence_id, frames in by_sequence.items():
            source = frames[0].sequence.path
            try:
                seq = project.sequences.open(sequence_id)
            except SequenceError as exc:
                raise FormatError(f"{source}: cannot export its frames: {exc}") from exc
            try:
                for frame in sorted(frames, key=lambda f: f.index):
                    check(cancel)
                    report_progress(progress, done, total, f"decoding {frame.record.path}")
                    name = f"{names[sequence_id]}/{frame.index:06d}.{plan.image_type}"
                    file = root / name
                    try:
                        pixels = seq.frame(frame.index)
                    except (SequenceError, IndexError) as exc:
                        raise FormatError(f"{frame.record.path}: cannot decode the frame "
                                          f"({exc})") from exc
                    write_bytes_atomic(file, encode_image(file, pixels, quality=JPEG_QUALITY))
                    final = out_dir / (plan.folder or _DECODED_DIR) / name
                    path = _export_path(fmt, final, project.image_root, name) \
                        if plan.folder else name
                    record = FrameRecord(path=path, width=frame.record.width,
                                         height=frame.record.height,
                                         content_hash=frame.record.content_hash,
                                         status=frame.record.status, id=frame.record.id,
                                         file=file)
                    items.append((record, list(frame.instances)))
                    done += 1
            finally:
                seq.close()
        yield items
    finally:
        if not plan.folder and root.exists():
            shutil.rmtree(root)
