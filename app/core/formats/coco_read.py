"""COCO import: polygons, uncompressed RLE (``iscrowd`` 1) and compressed RLE.

Every annotation, crowd or not, becomes an instance, and an annotation without a segmentation
becomes its ``bbox``. Polygons are kept as they are (pycocotools' convention is the project's);
an RLE becomes polygons that enclose exactly its pixels (``placement.EXACT_TOLERANCE``). Every
record is checked: an RLE must have the image's ``size`` and runs that cover exactly its pixels;
an image without a usable ``width``/``height`` takes them from its image file when that is found.
A bad record is skipped with a warning naming it and the field (``annotations[3].image_id:
missing``); a file whose images or categories repeat an id is refused (see
``app.core.formats.checks``). Image files are looked for beside the JSON file, in ``images/``
beside it, and in the common layout ``annotations/instances_<split>.json`` +
``images/<split>/`` (which ``read_coco_folder`` reads whole).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.ops import unary_union

from app.core.errors import FormatError
from app.core.formats.checks import (
    RecordProblem,
    SizeLookup,
    field,
    image_record_size,
    integer,
    json_type,
    number,
    numbers,
    rle_string_counts,
    show,
)
from app.core.formats.common import Dataset, posix
from app.core.formats.placement import exact_geometry
from app.core.geometry import make_valid_polygonal
from app.core.types import Geometry, ImageRecord, Instance

# ---------------------------------------------------------------------------------------------
# Import
#
# Every record is checked (``app.core.formats.checks``): a file that is not a COCO file, or
# has two images or categories with the same id, is a FormatError; any other bad record is
# skipped with a warning naming the record and the field (``annotations[3].image_id: missing``).


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _runs_mask(runs: list[int], height: int, width: int) -> np.ndarray:
    """The mask of RLE run lengths (background first, column-major as COCO counts pixels)."""
    values = (np.arange(len(runs)) % 2).astype(bool)
    return np.repeat(values, runs).reshape(width, height).T


def _rle_geometry(seg: dict[str, Any], where: str, height: int, width: int) -> Geometry | None:
    size = seg.get("size", [height, width])
    if not isinstance(size, list) or len(size) != 2:
        raise RecordProblem(f"{where}.size: expected [height, width], got {show(size)}")
    size = [integer(v, f"{where}.size[{i}]") for i, v in enumerate(size)]
    if size != [height, width]:
        raise RecordProblem(f"{where}.size: {show(size)} is not the image's size "
                            f"[{height}, {width}] (height, width)")
    counts = field(seg, "counts", where)
    if isinstance(counts, list):
        runs = [integer(v, f"{where}.counts[{i}]") for i, v in enumerate(counts)]
        if any(r < 0 for r in runs):
            raise RecordProblem(f"{where}.counts: a negative run length")
    elif isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except ValueError:
            runs = [-1]
        if any(r < 0 for r in runs):
            raise RecordProblem(f"{where}.counts: not a compressed RLE string")
    else:
        raise RecordProblem(f"{where}.counts: expected an array of run lengths or a compressed "
                            f"RLE string, got {show(counts)}")
    covered = sum(runs)
    if covered != height * width:
        raise RecordProblem(f"{where}.counts: the runs cover {covered} pixels, the image has "
                            f"{height * width} ({height} x {width})")
    return exact_geometry(_runs_mask(runs, height, width))


def _polygons_geometry(seg: list[Any], where: str) -> Geometry | None:
    parts = []
    for i, ring in enumerate(seg):
        values = numbers(ring, f"{where}[{i}]")
        if len(values) % 2:
            raise RecordProblem(f"{where}[{i}]: {len(values)} values, a polygon needs an even "
                                "number")
        if len(values) < 6:  # fewer than 3 points enclose nothing
            continue
        valid = make_valid_polygonal(Polygon(np.asarray(values).reshape(-1, 2)))
        if valid is not None:
            parts.append(valid)
    return make_valid_polygonal(unary_union(parts)) if parts else None


def _box_geometry(ann: dict[str, Any], where: str) -> Geometry:
    if "bbox" not in ann:
        raise RecordProblem(f"{where}.bbox: missing (the annotation has no segmentation)")
    value = ann["bbox"]
    if not isinstance(value, list) or len(value) != 4:
        raise RecordProblem(f"{where}.bbox: expected [x, y, width, height], got {show(value)}")
    x, y, w, h = numbers(value, f"{where}.bbox")
    if w <= 0 or h <= 0:
        raise RecordProblem(f"{where}.bbox: width and height must be positive, got "
                            f"{show(value)}")
    return box(x, y, x + w, y + h)


def _annotation_geometry(ann: dict[str, Any], where: str, height: int,
                         width: int) -> Geometry | None:
    """The geometry of one annotation: its polygons, its RLE, or (detection only) its box."""
    seg = ann.get("segmentation")
    try:
        if seg is None or (isinstance(seg, list | dict) and not seg):
            return _box_geometry(ann, where)
        if isinstance(seg, list):
            return _polygons_geometry(seg, f"{where}.segmentation")
        if isinstance(seg, dict):
            return _rle_geometry(seg, f"{where}.segmentation", height, width)
    except RecordProblem:
        raise
    except (ValueError, TypeError, ShapelyError) as exc:  # geometry a shapely op refuses
        raise RecordProblem(f"{where}.segmentation: not a usable shape ({exc})") from exc
    raise RecordProblem(f"{where}.segmentation: expected a list of polygons or an RLE object, "
                        f"got {show(seg)}")


def _table(data: dict[str, Any], key: str, path: Path, required: bool) -> list[Any]:
    if key not in data:
        if required:
            raise FormatError(f"{path}: no '{key}' list; not a COCO file")
        return []
    if not isinstance(data[key], list):
        raise FormatError(f"{path}: {key}: expected a list, got {json_type(data[key])}")
    return data[key]


def _image_ids_of(anns: list[Any]) -> Counter[int]:
    """How many annotations name each image id (those with a usable one)."""
    counts: Counter[int] = Counter()
    for ann in anns:
        try:
            counts[integer(field(ann, "image_id", ""), "")] += 1
        except RecordProblem:
            continue
    return counts


def _read_categories(result: Dataset, path: Path, cats: list[Any]) -> dict[int, str]:
    names: dict[int, str] = {}
    first: dict[int, int] = {}
    for i, cat in enumerate(cats):
        where = f"categories[{i}]"
        try:
            cat_id = integer(field(cat, "id", where), f"{where}.id")
        except RecordProblem as exc:
            result.warnings.append(f"{path}: {exc}; skipped")
            continue
        raw = cat.get("name")
        if isinstance(raw, str) and raw.strip():
            name = raw
        elif isinstance(raw, int | float) and not isinstance(raw, bool):
            name = str(raw)
        else:
            name = f"category_{cat_id}"
            problem = "missing" if "name" not in cat else f"expected a name, got {show(raw)}"
            result.warnings.append(f"{path}: {where}.name: {problem}; named {name!r}")
        if cat_id in names:
            if names[cat_id] != name:
                raise FormatError(f"{path}: {where}.id: {cat_id} is also the id of "
                                  f"categories[{first[cat_id]}] ({names[cat_id]!r}); category "
                                  "ids must be unique")
            continue
        names[cat_id] = name
        first[cat_id] = i
        if name not in result.label_names():
            result.ensure_label(name)
            colour = cat.get("color")
            if isinstance(colour, str) and len(colour) == 7 and colour.startswith("#"):
                result.labels[-1].colour = colour
    return names


def _read_images(result: Dataset, path: Path, images: list[Any],
                 annotation_counts: Counter[int], project_size: SizeLookup | None) -> set[int]:
    """Add the usable image records to ``result``; returns the ids of the images skipped."""
    skipped: set[int] = set()
    first: dict[int, int] = {}
    for i, img in enumerate(images):
        where = f"images[{i}]"
        image_id: int | None = None
        try:
            image_id = integer(field(img, "id", where), f"{where}.id")
            if image_id in first:
                raise FormatError(f"{path}: {where}.id: {image_id} is also the id of "
                                  f"images[{first[image_id]}]; image ids must be unique")
            first[image_id] = i
            file_name = field(img, "file_name", where)
            if not isinstance(file_name, str) or not file_name.strip():
                raise RecordProblem(f"{where}.file_name: expected a file name, got "
                                    f"{show(file_name)}")
            rel = posix(file_name)
            file = next((c for c in _image_candidates(path, rel) if _is_file(c)), None)
            (width, height), note = image_record_size(img, where, ("width", "height"), file,
                                                      rel, project_size)
        except RecordProblem as exc:
            if image_id is None:
                result.warnings.append(f"{path}: {exc}; skipped")
            else:
                skipped.add(image_id)
                result.warnings.append(f"{path}: {exc}; the image and its "
                                       f"{annotation_counts[image_id]} annotation(s) skipped")
            continue
        if note is not None:
            result.warnings.append(f"{path}: {note}")
        result.images.append(ImageRecord(path=rel, width=width, height=height, content_hash="",
                                         id=image_id))
        result.sources[image_id] = f"{path} {where}"
        if file is not None:
            result.image_files[image_id] = file
    return skipped


def _image_candidates(path: Path, rel: str) -> list[Path]:
    """Where the image ``rel`` of the COCO file ``path`` may be: beside it, in ``images/``
    beside it, or (``annotations/instances_<split>.json``) in ``images/<split>/``."""
    found = [path.parent / rel, path.parent / "images" / rel]
    if path.parent.name == "annotations" and path.stem.startswith("instances_"):
        found.append(path.parent.parent / "images" / path.stem[len("instances_"):] / rel)
    return found


def layout_files(folder: Path) -> list[Path]:
    """The annotation files of the common layout under ``folder``
    (``annotations/instances_*.json``), train first; empty when it has none."""
    files = sorted(Path(folder).glob("annotations/instances_*.json"))
    return sorted(files, key=lambda p: (p.stem != "instances_train", p.name))


def read_coco_folder(folder: Path, *, project_size: SizeLookup | None = None) -> Dataset:
    """Read every ``annotations/instances_<split>.json`` of a COCO layout folder into one
    ``Dataset`` (image ids renumbered, so that those of two files never clash)."""
    files = layout_files(folder)
    if not files:
        raise FormatError(f"{folder}: no annotations/instances_*.json found")
    result = Dataset()
    for path in files:
        part = read_coco(path, project_size=project_size)
        offset = max((int(r.id or 0) for r in result.images), default=0)
        new_id = {int(r.id or 0): offset + n for n, r in enumerate(part.images, start=1)}
        for label in part.labels:
            if label.name not in result.label_names():
                result.labels.append(label)
        for record in part.images:
            old = int(record.id or 0)
            record.id = new_id[old]
            if old in part.image_files:
                result.image_files[new_id[old]] = part.image_files[old]
            if old in part.sources:
                result.sources[new_id[old]] = part.sources[old]
            result.images.append(record)
        for inst in part.instances:
            inst.image_id = new_id[inst.image_id]
            result.instances.append(inst)
        result.warnings += part.warnings
    return result


def read_coco(path: Path, *, project_size: SizeLookup | None = None) -> Dataset:
    """Read a COCO instance-segmentation JSON file into a ``Dataset`` (see the checks above;
    ``project_size`` gives the size of an image that the file and its image file lack)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable COCO file ({exc})") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{path}: not a COCO file (the top level is {json_type(data)}, not an "
                          "object)")
    images = _table(data, "images", path, required=True)
    cats = _table(data, "categories", path, required=True)
    anns = _table(data, "annotations", path, required=False)
    result = Dataset()
    names = _read_categories(result, path, cats)
    skipped_images = _read_images(result, path, images, _image_ids_of(anns), project_size)
    sizes = {int(r.id or 0): (r.height, r.width) for r in result.images}
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        try:
            image_id = integer(field(ann, "image_id", where), f"{where}.image_id")
            if image_id in skipped_images:
                continue  # counted in the image's own warning
            if image_id not in sizes:
                raise RecordProblem(f"{where}.image_id: {image_id} is an unknown image id")
            category_id = integer(field(ann, "category_id", where), f"{where}.category_id")
            if category_id not in names:
                raise RecordProblem(f"{where}.category_id: {category_id} is an unknown "
                                    "category id")
            geom = _annotation_geometry(ann, where, *sizes[image_id])
        except RecordProblem as exc:
            result.warnings.append(f"{path}: {exc}; skipped")
            continue
        if geom is None or geom.is_empty or not isinstance(geom, Polygon | MultiPolygon):
            result.warnings.append(f"{path}: {where}: encloses no area; skipped")
            continue
        score = ann.get("score")
        if score is not None:
            try:
                score = number(score, f"{where}.score")
            except RecordProblem as exc:
                result.warnings.append(f"{path}: {exc}; score ignored")
                score = None
        result.instances.append(Instance(image_id=image_id, label=names[category_id],
                                         geometry=geom, score=score))
    return result
