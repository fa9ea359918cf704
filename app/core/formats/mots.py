"""MOTS (MOTSChallenge / KITTI MOTS) instance tracks as text: write and read.

One line per object per frame, space-separated::

    time_frame id class_id img_height img_width rle

``id`` is ``class_id * 1000 + instance`` (instance 1..999 per class), ``rle`` pycocotools'
compressed RLE string (column-major). MOTS forbids overlapping masks on a frame: the writer
gives every contested pixel to the track written first (tracks in their order) and reports how
many pixels it took from later ones.

MOTS's class ids are 1 = car, 2 = pedestrian, 10 = ignore region. Labels named "car" or
"pedestrian" (any case) keep those ids; any other label gets the lowest free id from 1 up
(never 10), so **the class ids are only meaningful with the map the writer puts beside the
files**: ``classes.txt``, one ``ID NAME`` per line. The reader uses that file when it finds
one, MOTS's own names otherwise, and skips ignore regions (class 10).

``write_mots`` writes the MOTSChallenge layout, which TrackEval's ``MOTSChallenge`` dataset
reads with ``GT_FOLDER`` = the output folder, ``SKIP_SPLIT_FOL`` = True and
``SPLIT_TO_EVAL`` = the split (default "train")::

    seqmaps/MOTS-train.txt      "name" then one sequence per line
    NAME/gt/gt.txt              the lines, frames numbered from 1 (MOTSChallenge)
    NAME/seqinfo.ini            [Sequence] name, imDir, frameRate, seqLength, imWidth, ...
    NAME/img1/000001.jpg ...    the frames, when images are exported
    classes.txt

``write_mots_results`` writes a tracker's files (``NAME.txt`` each). KITTI MOTS numbers frames
from 0: ``first_frame=0`` gives its ``instances_txt`` files (TrackEval's ``KittiMOTS`` reads
them with ``GT_LOC_FORMAT`` "{gt_folder}/{seq}.txt" and ``SEQ_INFO``). The reader takes a
folder in this layout, a folder of ``NAME.txt`` files or one file; without a ``seqinfo.ini``
it takes frames from 1 unless a line has frame 0.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.core import rle as rle_codec
from app.core.errors import FormatError
from app.core.formats.common import write_text_atomic
from app.core.formats.video_tracks import (
    VideoAnnotations,
    VideoTrack,
    all_categories,
    check_masks,
    frame_file_names,
)

MOTS_CLASSES = {"car": 1, "pedestrian": 2}
IGNORE_CLASS = 10
ID_FACTOR = 1000
CLASS_MAP = "classes.txt"
FRAME_DIGITS = 6


@dataclass
class MotsReport:
    """What writing MOTS changed: pixels taken from later tracks where masks overlapped, and
    (track, frame) masks that this left empty (not written)."""

    files: list[Path] = field(default_factory=list)
    overlap_pixels: int = 0
    emptied: int = 0


def class_ids(categories: list[str]) -> dict[str, int]:
    """MOTS class id of each category: car 1, pedestrian 2, others the lowest free id (never
    10, the ignore class)."""
    ids = {c: MOTS_CLASSES[c.casefold()] for c in categories if c.casefold() in MOTS_CLASSES}
    taken = set(ids.values())
    next_id = 1
    for category in categories:
        if category in ids:
            continue
        while next_id in taken or next_id == IGNORE_CLASS:
            next_id += 1
        ids[category] = next_id
        taken.add(next_id)
    return ids


def _instance_ids(video: VideoAnnotations, classes: dict[str, int]) -> list[int]:
    """``class * 1000 + n`` per track, n = 1.. within its class."""
    counts: dict[str, int] = {}
    ids = []
    for track in video.tracks:
        counts[track.category] = counts.get(track.category, 0) + 1
        if counts[track.category] >= ID_FACTOR:
            raise FormatError(f"MOTS export: video {video.name} has more than {ID_FACTOR - 1} "
                              f"tracks of {track.category!r}")
        ids.append(classes[track.category] * ID_FACTOR + counts[track.category])
    return ids


def mots_lines(video: VideoAnnotations, classes: dict[str, int], first_frame: int = 1,
               report: MotsReport | None = None) -> list[str]:
    """The MOTS lines of one video, by frame then id, overlaps given to the earlier track."""
    check_masks(video, "MOTS export")
    ids = _instance_ids(video, classes)
    lines = []
    for frame in range(video.length):
        taken = np.zeros((video.height, video.width), dtype=bool)
        for track, object_id in zip(video.tracks, ids, strict=True):
            mask = track.masks.get(frame)
            if mask is None or not mask.any():
                continue
            mask = np.asarray(mask, dtype=bool)
            free = mask & ~taken
            if report is not None:
                report.overlap_pixels += int(mask.sum() - free.sum())
                report.emptied += int(not free.any())
            if not free.any():
                continue
            taken |= free
            counts = rle_codec.encode_json(free)["counts"]
            lines.append(f"{frame + first_frame} {object_id} {classes[track.category]} "
                         f"{video.height} {video.width} {counts}")
    return lines


def write_class_map(classes: dict[str, int], path: Path) -> Path:
    """``ID NAME`` per line, by id."""
    text = "".join(f"{i} {name}\n" for name, i in sorted(classes.items(), key=lambda x: x[1]))
    return write_text_atomic(path, text)


def _check_names(videos: list[VideoAnnotations]) -> None:
    names = [v.name for v in videos]
    bad = [n for n in names if not n or n in (".", "..") or any(c in n for c in "/\\,")]
    if bad:
        raise FormatError(f"MOTS export: sequence name(s) {', '.join(map(repr, bad))} cannot "
                          f"be folder names in a seqmap (no slashes or commas)")
    if len(set(names)) != len(names):
        raise FormatError("MOTS export: two sequences have the same name")


def write_mots(videos: list[VideoAnnotations], out_dir: Path, *, split: str = "train",
               first_frame: int = 1, fps: Mapping[str, float] | None = None,
               image_ext: str = ".jpg", categories: list[str] | None = None) -> MotsReport:
    """Write ``videos`` as MOTSChallenge ground truth in ``out_dir`` (layout above);
    ``fps`` by video name goes into each ``seqinfo.ini`` (default 30)."""
    out_dir = Path(out_dir)
    _check_names(videos)
    classes = class_ids(categories if categories is not None else all_categories(videos))
    report = MotsReport()
    for video in videos:
        lines = mots_lines(video, classes, first_frame, report)
        report.files.append(write_text_atomic(out_dir / video.name / "gt" / "gt.txt",
                                              "".join(line + "\n" for line in lines)))
        rate = (fps or {}).get(video.name, 30.0)
        ini = (f"[Sequence]\nname={video.name}\nimDir=img1\nframeRate={rate:g}\n"
               f"seqLength={video.length}\nimWidth={video.width}\nimHeight={video.height}\n"
               f"imExt={image_ext}\n")
        report.files.append(write_text_atomic(out_dir / video.name / "seqinfo.ini", ini))
    seqmap = "name\n" + "".join(f"{v.name}\n" for v in videos)
    report.files.append(write_text_atomic(out_dir / "seqmaps" / f"MOTS-{split}.txt", seqmap))
    report.files.append(write_class_map(classes, out_dir / CLASS_MAP))
    return report


def write_mots_results(videos: list[VideoAnnotations], out_dir: Path, *,
                       first_frame: int = 1, categories: list[str] | None = None) -> MotsReport:
    """Write ``videos`` as a tracker's MOTS output: ``out_dir/NAME.txt`` each, and the map."""
    out_dir = Path(out_dir)
    _check_names(videos)
    classes = class_ids(categories if categories is not None else all_categories(videos))
    report = MotsReport()
    for video in videos:
        lines = mots_lines(video, classes, first_frame, report)
        report.files.append(write_text_atomic(out_dir / f"{video.name}.txt",
                                              "".join(line + "\n" for line in lines)))
    report.files.append(write_class_map(classes, out_dir / CLASS_MAP))
    return report


# ---------------------------------------------------------------------------------------------
# Reading


def read_class_map(path: Path) -> dict[int, str]:
    """Class id -> name of a ``classes.txt``."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, _, name = line.strip().partition(" ")
        if not key.isdigit() or not name.strip():
            raise FormatError(f"{path}, line {number}: expected 'ID NAME', got {line!r}")
        names[int(key)] = name.strip()
    return names


def _class_names(src: Path) -> dict[int, str]:
    for folder in (src if src.is_dir() else src.parent, *src.parents):
        if (folder / CLASS_MAP).is_file():
            return read_class_map(folder / CLASS_MAP)
    return {i: name for name, i in MOTS_CLASSES.items()}


def _seqinfo(path: Path) -> tuple[int, str] | None:
    """(seqLength, imExt) of a seqinfo.ini, None when there is none."""
    if not path.is_file():
        return None
    ini = configparser.ConfigParser()
    try:
        ini.read(path, encoding="utf-8")
        return int(ini["Sequence"]["seqLength"]), ini["Sequence"].get("imExt", ".jpg")
    except (configparser.Error, KeyError, ValueError) as exc:
        raise FormatError(f"{path}: no readable [Sequence] seqLength: {exc}") from exc


def read_mots_file(path: Path, *, name: str | None = None, names: dict[int, str] | None = None,
                   length: int | None = None, first_frame: int | None = None,
                   image_ext: str = ".jpg") -> VideoAnnotations:
    """One sequence's MOTS text file. Frames from ``first_frame`` (default: 1, or 0 when a
    line has frame 0); ``length`` frames (default: up to the last line's)."""
    path = Path(path)
    names = names if names is not None else _class_names(path)
    rows: list[tuple[int, int, int, int, int, str]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not a readable text file: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 6:
            raise FormatError(f"{path}, line {number}: {len(fields)} fields, MOTS has 6 "
                              f"(frame id class height width rle)")
        try:
            frame, obj, cls, height, width = (int(v) for v in fields[:5])
        except ValueError as exc:
            raise FormatError(f"{path}, line {number}: {exc}") from exc
        rows.append((frame, obj, cls, height, width, fields[5]))
    if not rows:
        raise FormatError(f"{path}: no MOTS lines")
    sizes = {(r[3], r[4]) for r in rows}
    if len(sizes) != 1:
        raise FormatError(f"{path}: lines give different image sizes {sorted(sizes)}")
    height, width = sizes.pop()
    base = first_frame if first_frame is not None else min(1, min(r[0] for r in rows))
    last = max(r[0] for r in rows) - base
    count = length if length is not None else last + 1
    tracks: dict[int, VideoTrack] = {}
    for frame, obj, cls, _, _, counts in rows:
        if cls == IGNORE_CLASS:
            continue
        index = frame - base
        if not 0 <= index < count:
            raise FormatError(f"{path}: frame {frame} outside the sequence's {count} frames "
                              f"(numbered from {base})")
        try:
            mask = rle_codec.decode({"size": [height, width], "counts": counts})
        except ValueError as exc:
            raise FormatError(f"{path}: object {obj}, frame {frame}: {exc}") from exc
        track = tracks.setdefault(obj, VideoTrack(obj, names.get(cls, f"class {cls}"), {}))
        if index in track.masks:
            raise FormatError(f"{path}: object {obj} twice on frame {frame}")
        track.masks[index] = mask
    return VideoAnnotations(name or path.stem, width, height,
                            frame_file_names(count, image_ext, base, FRAME_DIGITS),
                            list(tracks.values()))


def read_mots(src: Path, *, first_frame: int | None = None) -> list[VideoAnnotations]:
    """The sequences in ``src``: a folder in ``write_mots``'s layout (``NAME/gt/gt.txt``), a
    folder of ``NAME.txt`` files, or one such file."""
    src = Path(src)
    if not src.exists():
        raise FormatError(f"{src}: no such file or folder")
    names = _class_names(src)
    if src.is_file():
        return [read_mots_file(src, names=names, first_frame=first_frame)]
    videos = []
    for gt in sorted(src.glob("*/gt/gt.txt")):
        info = _seqinfo(gt.parent.parent / "seqinfo.ini")
        length, ext = info if info is not None else (None, ".jpg")
        base = first_frame if first_frame is not None else (1 if info is not None else None)
        videos.append(read_mots_file(gt, name=gt.parent.parent.name, names=names, length=length,
                                     first_frame=base, image_ext=ext))
    if not videos:
        videos = [read_mots_file(p, names=names, first_frame=first_frame)
                  for p in sorted(src.glob("*.txt")) if p.name != CLASS_MAP]
    if not videos:
        raise FormatError(f"{src}: no MOTS files (NAME/gt/gt.txt or NAME.txt)")
    return videos
