"""What every format module shares: report and dataset values, atomic writes, file naming.

Format modules work on plain values (``ImageRecord``, ``Label``, ``Instance``) so that each can be
tested alone; ``app.core.formats`` adapts them to the project store.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import cv2
import numpy as np

from app.core.errors import FormatError
from app.core.jobs import Progress
from app.core.types import ImageRecord, Instance, Label

if TYPE_CHECKING:
    from app.core.formats.fidelity import FidelityReport

# One image with its instances, in drawing order (later instances lie over earlier ones).
ExportItem = tuple[ImageRecord, list[Instance]]


@dataclass
class FrameRecord(ImageRecord):
    """A sequence's frame in an image export: ``path`` is the name it is exported under and
    ``file`` the image it was decoded to (``app.core.formats.frame_images``)."""

    file: Path = field(default_factory=Path)


def image_file(image_root: Path | None, record: ImageRecord) -> Path:
    """The image file of an exported record: a frame's decoded file, else the project's."""
    if isinstance(record, FrameRecord):
        return record.file
    return Path(image_root or ".") / record.path


def image_copy_mode(record: ImageRecord, mode: str) -> str:
    """How to place the record's image: a frame's decoded file is temporary, so never a
    symlink to it."""
    return "hardlink" if isinstance(record, FrameRecord) and mode == "symlink" else mode

COPY_MODES = ("copy", "hardlink", "symlink")

# Colours for labels created on import when the format carries none (tab10-like, readable).
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
    "#46f0f0", "#f032e6", "#bcf60c", "#fabebe", "#008080",
    "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
)


@dataclass
class Written:
    """Where an export put one image's annotations, so that they can be read back
    (``app.core.formats.fidelity``): the project's image id, the annotation file (COCO JSON,
    YOLO label file, labelme JSON, instance PNG), the image's id in it (COCO) and, in the
    file's order, the index of each instance written among the image's instances."""

    image_id: int
    file: Path
    key: int | None = None
    instances: list[int] = field(default_factory=list)


@dataclass
class ExportReport:
    """What an export wrote: counts, the files written, where each image's annotations went
    and problems worth telling the user."""

    images: int = 0
    instances: int = 0
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    written: list[Written] = field(default_factory=list)
    fidelity: FidelityReport | None = None  # when the export was verified
    proposals_included: int = 0  # pending proposals written as instances (include_proposals)
    proposals_unlabelled: int = 0  # pending proposals left out for having no label
    frames: int = 0  # frames of sequences exported as images (app.core.formats.frame_images)
    frames_propagated: int = 0  # propagated (not reviewed) instances on those frames


@dataclass
class ImportReport:
    """What an import did to a project."""

    images_matched: int = 0
    images_added: int = 0
    labels_created: list[str] = field(default_factory=list)
    instances_added: int = 0
    duplicates_skipped: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """What a reader found: images (``id`` = the file's own image id), labels in file order,
    instances (``image_id`` refers to those ids), the image files found and warnings.
    ``sources`` says where each image's annotations come from (a label file, or a file and a
    record) for warnings; ``embedded_images`` lists the images whose file is missing but whose
    label file embeds them (labelme ``imageData``): image id -> that label file."""

    images: list[ImageRecord] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    image_files: dict[int, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    sources: dict[int, str] = field(default_factory=dict)
    embedded_images: dict[int, Path] = field(default_factory=dict)

    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]

    def ensure_label(self, name: str) -> None:
        """Add ``name`` to the labels (with a palette colour) unless it is there already."""
        if name not in self.label_names():
            colour = PALETTE[len(self.labels) % len(PALETTE)]
            self.labels.append(Label(name=name, colour=colour))


def ordered_labels(labels: Sequence[Label], items: Sequence[ExportItem]) -> list[Label]:
    """``labels`` in their order, then any label name used by an instance but not listed."""
    result = list(labels)
    known = {label.name for label in result}
    for _, instances in items:
        for inst in instances:
            if inst.label not in known:
                known.add(inst.label)
                result.append(Label(name=inst.label, colour=PALETTE[len(result) % len(PALETTE)]))
    return result


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """"#rrggbb" -> (r, g, b); anything unreadable gives red."""
    c = colour.lstrip("#")
    try:
        return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)
    except (ValueError, IndexError):
        return 255, 0, 0


def split_indices(count: int, val_fraction: float, seed: int) -> set[int]:
    """Indices (of ``count`` items) that go to val: ``round(count * val_fraction)`` of them, at
    least one when the fraction is positive and there are two items or more, never all. The
    same count, fraction and seed always give the same indices."""
    if not 0.0 <= val_fraction < 1.0:
        raise FormatError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 or count < 2:
        return set()
    n_val = min(count - 1, max(1, round(count * val_fraction)))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[:n_val])


def report_progress(progress: Progress | None, done: int, total: int, message: str) -> None:
    if progress is not None:
        progress(done, total, message)


# ---------------------------------------------------------------------------------------------
# Atomic writes: a cancelled or crashed export never leaves a half file that looks complete.


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (a hidden ``.NAME.XXXX.part``); when the block
    ends without an error it is renamed to ``path``, otherwise removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def encode_image(path: Path, image: np.ndarray, *, rgb: bool = True, quality: int = 90) -> bytes:
    """Encode ``image`` for ``path``'s extension (.png/.jpg/...) with OpenCV, in memory (so that
    Unicode paths work everywhere)."""
    ext = Path(path).suffix.lower() or ".png"
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if rgb and image.ndim == 3 else image
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise FormatError(f"{path}: cannot encode the image as {ext}")
    return buf.tobytes()


def path_key(path: str | os.PathLike[str]) -> str:
    """``path`` made comparable: absolute, its folders' links resolved, the last part itself
    not followed (a link is a file of its own: replacing it leaves its target alone), case
    folded on macOS and Windows, whose usual file systems ignore case."""
    parent, name = os.path.split(os.path.abspath(path))
    key = os.path.normcase(os.path.join(os.path.realpath(parent), name))
    return key.casefold() if sys.platform in ("darwin", "win32") else key


def place_file(src: Path, dst: Path, mode: str = "copy") -> Path:
    """Put ``src`` at ``dst`` by copying, hard-linking or symlinking it (a hard link that fails,
    e.g. across devices, falls back to a copy). An existing ``dst`` is replaced (a link to
    ``src`` too), unless it is ``src`` itself or the file ``src`` links to: that is refused, as
    replacing it would destroy the image."""
    if mode not in COPY_MODES:
        raise FormatError(f"unknown image copy mode {mode!r}: use one of {', '.join(COPY_MODES)}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if path_key(dst) in (path_key(src), path_key(os.path.realpath(src))):
        raise FormatError(f"{dst}: is the image being exported; refusing to write over it")
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        dst.symlink_to(Path(src).resolve())
        return dst
    if mode == "hardlink":
        try:
            os.link(src, dst)
            return dst
        except OSError:
            pass
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


# ---------------------------------------------------------------------------------------------
# Names


def _flat(rel: str) -> str:
    parts = [p.replace(":", "") for p in PurePosixPath(posix(rel)).parts
             if p not in ("/", ".", "..")]
    return "__".join(p for p in parts if p)


def unique_file_names(paths: Iterable[str]) -> list[str]:
    """Flat file names for image paths, unique by stem (case-insensitive), so that ``a/x.jpg``,
    ``b/x.jpg`` and ``x.png`` do not overwrite each other's image or label file. A name is the
    base name when that is unique, else the path joined with ``__`` (``a__x.jpg``), else that
    with a ``_N`` suffix."""
    paths = [str(p) for p in paths]
    base = [PurePosixPath(posix(p)).name for p in paths]
    stems: dict[str, int] = {}
    for name in base:
        key = PurePosixPath(name).stem.casefold()
        stems[key] = stems.get(key, 0) + 1
    taken: set[str] = set()
    result: list[str] = []
    for rel, name in zip(paths, base, strict=True):
        if stems[PurePosixPath(name).stem.casefold()] > 1:
            name = _flat(rel)
        candidate, n = name, 1
        while PurePosixPath(candidate).stem.casefold() in taken:
            n += 1
            candidate = f"{PurePosixPath(name).stem}_{n}{PurePosixPath(name).suffix}"
        taken.add(PurePosixPath(candidate).stem.casefold())
        result.append(candidate)
    return result


def safe_relative(rel: str) -> bool:
    """Whether ``rel`` is a relative path that stays inside the folder it is joined to."""
    path = PurePosixPath(posix(rel))
    return not path.is_absolute() and ".." not in path.parts and ":" not in rel


def posix(path: str) -> str:
    """A path written on any OS, with forward slashes (labelme on Windows writes backslashes)."""
    return PureWindowsPath(path).as_posix() if "\\" in path else path
