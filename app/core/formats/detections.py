"""An external detector's boxes, matched to a project's images: the input of
``maskloop autolabel --boxes``, where each box becomes a box prompt.

Two forms are read:

- a COCO results file: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``
  (what detectron2, mmdetection and Ultralytics' ``save_json`` write). ``image_id`` is matched
  through a COCO dataset's ``images`` (``file_name``) when one is given (``coco_dataset``), its
  ``categories`` naming the classes; without one, ``image_id`` is taken as the image's file
  stem (Ultralytics writes the stem, as a number when it is one: 1 for ``0001.jpg``) or its
  path. A COCO
  dataset file itself (a dict with ``annotations``) is read the same way, its own images and
  categories doing the matching.
- a YOLO labels folder: ``NAME.txt`` per image (its stem), lines ``class cx cy w h [conf]``
  normalised to the image size; class names from a ``data.yaml`` (``names``) or
  ``classes.txt`` in the folder or its parent, else the class number.

Boxes come out in image pixels, corners (x0, y0, x1, y1), clipped to the image. Anything
malformed raises FormatError naming the file and the entry or line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from app.core.errors import FormatError
from app.core.types import ImageRecord


@dataclass(frozen=True)
class Detection:
    """One detector box: corners in image pixels, its score (None when the file has none),
    its class name."""

    box: tuple[float, float, float, float]
    score: float | None
    label: str


@dataclass
class Detections:
    """The boxes of a detections file by project image id; ``unmatched`` names the images of
    the file that are not in the project; ``digest`` (sha256 of the file or folder) tells
    one file from another for resuming."""

    source: Path
    by_image: dict[int, list[Detection]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    digest: str = ""

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_image.values())


class _Matcher:
    """Finds a project image by path, by unique file name or by unique file stem."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.by_path = {r.path: r for r in records}
        self.by_name: dict[str, list[ImageRecord]] = {}
        self.by_stem: dict[str, list[ImageRecord]] = {}
        for r in records:
            name = PurePosixPath(r.path)
            self.by_name.setdefault(name.name.casefold(), []).append(r)
            self.by_stem.setdefault(name.stem.casefold(), []).append(r)
            if name.stem.isdigit() and str(int(name.stem)) != name.stem:
                # Ultralytics writes int(stem): "0001" -> 1
                self.by_stem.setdefault(str(int(name.stem)), []).append(r)

    def find(self, ref: str) -> ImageRecord | None:
        if ref in self.by_path:
            return self.by_path[ref]
        for table, key in ((self.by_name, PurePosixPath(ref).name), (self.by_stem, ref)):
            found = table.get(key.casefold(), [])
            if len(found) == 1:
                return found[0]
        return None


def _digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _clip(box: tuple[float, float, float, float], record: ImageRecord,
          where: str) -> tuple[float, float, float, float]:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(record.width), box[2]), min(float(record.height), box[3])
    if x1 <= x0 or y1 <= y0:
        raise FormatError(f"{where}: the box {box} lies outside the image {record.path} "
                          f"({record.width} x {record.height})")
    return x0, y0, x1, y1


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{where}: {what} must be a number, got {value!r}")
    return float(value)


def read_detections(src: str | Path, records: Sequence[ImageRecord], *,
                    coco_dataset: str | Path | None = None) -> Detections:
    """The boxes of ``src`` (a COCO results / dataset JSON file or a YOLO labels folder)
    for the project images ``records``."""
    src = Path(src)
    if src.is_dir():
        return _read_yolo(src, records)
    if not src.is_file():
        raise FormatError(f"{src}: no such detections file or labels folder")
    return _read_coco(src, records, Path(coco_dataset) if coco_dataset else None)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable JSON file ({exc})") from exc


def _dataset_tables(data: Any, path: Path) -> tuple[dict[Any, str], dict[Any, str]]:
    """(image id -> file name, category id -> name) of a COCO dataset."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise FormatError(f"{path}: not a COCO dataset (no 'images' list)")
    try:
        files = {im["id"]: str(im["file_name"]) for im in data["images"]}
        names = {c["id"]: str(c["name"]) for c in data.get("categories", [])}
    except (KeyError, TypeError) as exc:
        raise FormatError(f"{path}: an image or category lacks {exc}") from exc
    return files, names


def _read_coco(path: Path, records: Sequence[ImageRecord], dataset: Path | None) -> Detections:
    data = _load_json(path)
    digest_of = [path]
    files: dict[Any, str] | None = None
    names: dict[Any, str] = {}
    if isinstance(data, dict) and "annotations" in data:
        files, names = _dataset_tables(data, path)
        data = data["annotations"]
    if dataset is not None:
        files, names = _dataset_tables(_load_json(dataset), dataset)
        digest_of.append(dataset)
    if not isinstance(data, list):
        raise FormatError(f"{path}: expected a list of detections "
                          "([{image_id, category_id, bbox, score}, ...])")
    out = Detections(path, digest=_digest(digest_of))
    matcher = _Matcher(records)
    unmatched: dict[str, None] = {}
    for index, det in enumerate(data):
        where = f"{path}: detection {index}"
        if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
            raise FormatError(f"{where}: needs image_id and bbox")
        bbox = det["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise FormatError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}")
        x, y, w, h = (_number(v, where, "bbox") for v in bbox)
        if w <= 0 or h <= 0:
            raise FormatError(f"{where}: bbox width and height must be positive, got {bbox}")
        ref = det["image_id"]
        if files is not None:
            if ref not in files:
                raise FormatError(f"{where}: image_id {ref!r} is not in the dataset's images")
            ref = files[ref]
        record = matcher.find(str(ref))
        if record is None:
            unmatched[str(ref)] = None
            continue
        score = det.get("score")
        category = det.get("category_id")
        out.by_image.setdefault(int(record.id or 0), []).append(Detection(
            _clip((x, y, x + w, y + h), record, where),
            None if score is None else _number(score, where, "score"),
            names.get(category, str(category))))
    out.unmatched = list(unmatched)
    return out


def _yolo_names(folder: Path) -> dict[int, str]:
    for base in (folder, folder.parent):
        for name in ("data.yaml", "data.yml", "dataset.yaml"):
            path = base / name
            if path.is_file():
                try:
                    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                    names = raw.get("names") if isinstance(raw, dict) else None
                except (OSError, yaml.YAMLError) as exc:
                    raise FormatError(f"{path}: cannot read ({exc})") from exc
                if isinstance(names, list):
                    return dict(enumerate(str(n) for n in names))
                if isinstance(names, dict):
                    return {int(k): str(v) for k, v in names.items()}
        classes = base / "classes.txt"
        if classes.is_file():
            lines = classes.read_text(encoding="utf-8").splitlines()
            return {i: line.strip() for i, line in enumerate(lines) if line.strip()}
    return {}


def _read_yolo(folder: Path, records: Sequence[ImageRecord]) -> Detections:
    files = sorted(p for p in folder.glob("*.txt") if p.name != "classes.txt")
    if not files:
        raise FormatError(f"{folder}: no YOLO label files (NAME.txt) found")
    names = _yolo_names(folder)
    out = Detections(folder, digest=_digest(files))
    matcher = _Matcher(records)
    for file in files:
        record = matcher.find(file.stem)
        if record is None:
            out.unmatched.append(file.name)
            continue
        found = out.by_image.setdefault(int(record.id or 0), [])
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{file}:{number}"
            if len(parts) not in (5, 6):
                raise FormatError(f"{where}: expected 'class cx cy w h [conf]' "
                                  f"(normalised), got {len(parts)} values")
            try:
                cls = int(parts[0])
                cx, cy, w, h, *conf = (float(v) for v in parts[1:])
            except ValueError as exc:
                raise FormatError(f"{where}: {exc}") from exc
            if w <= 0 or h <= 0 or max(cx, cy, w, h) > 1.5:
                raise FormatError(f"{where}: box values must be normalised to the image "
                                  f"(0..1) with a positive size, got {line.strip()!r}")
            W, H = record.width, record.height
            box = ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H)
            found.append(Detection(_clip(box, record, where), conf[0] if conf else None,
                                   names.get(cls, str(cls))))
    return out
