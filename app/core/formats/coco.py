"""COCO instance segmentation: one JSON file with images, categories and annotations.

Polygons are the default: each part of a (Multi)Polygon becomes one ``[x0, y0, x1, y1, ...]``
ring in pixel-edge coordinates (the pycocotools convention MaskLoop uses everywhere). COCO
polygons cannot express holes, so an instance with holes is written as compressed RLE (its
``counts`` a UTF-8 string), and ``rle=True`` writes RLE for every instance. ``area`` is the pixel
count of the rasterised mask and ``bbox`` ([x, y, w, h]) the mask's box, both computed with
pycocotools so that they agree with what ``COCO.annToMask`` gives back.

Import reads polygons, uncompressed RLE (``iscrowd`` 1) and compressed RLE; every annotation,
crowd or not, becomes an instance, and an annotation without a segmentation becomes its
``bbox``. Every record is checked: an RLE must have the image's ``size`` and runs that cover
exactly its pixels; an image without a usable ``width``/``height`` takes them from its image
file when that is found. A bad record is skipped with a warning naming it and the field
(``annotations[3].image_id: missing``); a file whose images or categories repeat an id is
refused (see ``app.core.formats.checks``).
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
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
from app.core.formats.common import (
    Dataset,
    ExportItem,
    ExportReport,
    ordered_labels,
    place_file,
    posix,
    report_progress,
    safe_relative,
    unique_file_names,
    write_text_atomic,
)
from app.core.geometry import make_valid_polygonal, mask_to_geometry, polygons_of
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Geometry, ImageRecord, Instance, Label

RLE = dict[str, Any]


def decode_rle(rle: RLE) -> np.ndarray:
    """Bool mask of a compressed RLE (pycocotools' numpy-2 DeprecationWarning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def _ring(coords: Any) -> list[float] | None:
    points = list(coords)[:-1]  # shapely repeats the first point at the end
    if len(points) < 3:
        return None
    return [round(float(v), 2) for xy in points for v in xy[:2]]


def geometry_to_polygons(geom: Geometry) -> list[list[float]]:
    """COCO polygon rings of ``geom``'s exteriors (holes dropped), rings of < 3 points dropped."""
    rings = [_ring(p.exterior.coords) for p in polygons_of(geom)]
    return [r for r in rings if r is not None]


def _polygons_rle(rings: list[list[float]], height: int, width: int) -> RLE:
    if not rings:
        return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    return mask_utils.merge(mask_utils.frPyObjects(rings, height, width))


def geometry_to_rle(geom: Geometry, height: int, width: int) -> RLE:
    """Compressed RLE of ``geom`` (holes kept), rasterised the way pycocotools fills polygons."""
    mask = np.zeros((height, width), dtype=bool)
    for part in polygons_of(geom):
        outer = _ring(part.exterior.coords)
        if outer is None:
            continue
        part_mask = decode_rle(_polygons_rle([outer], height, width))
        holes = [r for r in (_ring(h.coords) for h in part.interiors) if r is not None]
        if holes:
            part_mask &= ~decode_rle(_polygons_rle(holes, height, width))
        mask |= part_mask
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def has_holes(geom: Geometry) -> bool:
    return any(len(p.interiors) for p in polygons_of(geom))


def _annotation(inst: Instance, record: ImageRecord, rle: bool) -> dict[str, Any] | None:
    h, w = record.height, record.width
    if rle or has_holes(inst.geometry):
        encoded = geometry_to_rle(inst.geometry, h, w)
        segmentation: Any = {"size": [h, w], "counts": encoded["counts"].decode("utf-8")}
    else:
        segmentation = geometry_to_polygons(inst.geometry)
        encoded = _polygons_rle(segmentation, h, w)
    area = int(mask_utils.area(encoded))
    if area == 0:
        return None
    ann: dict[str, Any] = {
        "segmentation": segmentation,
        "area": area,
        "bbox": [float(v) for v in mask_utils.toBbox(encoded)],
        "iscrowd": 0,
    }
    if inst.score is not None:
        ann["score"] = float(inst.score)
    return ann


def export_coco(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_path: Path,
    *,
    rle: bool = False,
    image_root: Path | None = None,
    copy_images: str | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write ``items`` as one COCO JSON file at ``out_path`` (written atomically).

    ``file_name`` is each image's relative path. With ``copy_images`` ("copy", "hardlink" or
    "symlink") and ``image_root``, the images are also placed under ``out_path.parent/images``
    keeping their relative paths (missing files are skipped with a warning)."""
    items = list(items)
    out_path = Path(out_path)
    all_labels = ordered_labels(labels, items)
    category_id = {label.name: i for i, label in enumerate(all_labels, start=1)}
    report = ExportReport()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    total = len(items)
    for index, (record, instances) in enumerate(items):
        check(cancel)
        report_progress(progress, index, total, record.path)
        image_id = index + 1
        file_name = record.path
        if copy_images and not safe_relative(file_name):  # keep copies inside images/
            file_name = unique_file_names([file_name])[0]
        images.append({"id": image_id, "file_name": file_name,
                       "width": record.width, "height": record.height})
        for inst in instances:
            ann = _annotation(inst, record, rle)
            if ann is None:
                report.warnings.append(f"{record.path}: an instance of {inst.label!r} covers no "
                                       "pixel and was not exported")
                continue
            ann = {"id": len(annotations) + 1, "image_id": image_id,
                   "category_id": category_id[inst.label], **ann}
            annotations.append(ann)
        if copy_images and image_root is not None:
            src = Path(image_root) / record.path
            if src.exists():
                dst = place_file(src, out_path.parent / "images" / file_name, copy_images)
                report.files.append(dst)
            else:
                report.warnings.append(f"{src}: image file missing, not copied")
        report.images += 1
    check(cancel)
    data = {
        "info": {"description": "exported by MaskLoop"},
        "licenses": [],
        "images": images,
        "categories": [{"id": category_id[label.name], "name": label.name, "supercategory": "",
                        "color": label.colour} for label in all_labels],
        "annotations": annotations,
    }
    report.files.append(write_text_atomic(out_path, json.dumps(data)))
    report.instances = len(annotations)
    report_progress(progress, total, total, "done")
    return report


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
    return mask_to_geometry(_runs_mask(runs, height, width))


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
            file = next((c for c in (path.parent / rel, path.parent / "images" / rel)
                         if _is_file(c)), None)
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
