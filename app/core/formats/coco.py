"""COCO instance segmentation: one JSON file with images, categories and annotations.

Polygons are the default: each part of a (Multi)Polygon becomes one ``[x0, y0, x1, y1, ...]``
ring in pixel-edge coordinates (the pycocotools convention MaskLoop uses everywhere). COCO
polygons cannot express holes, so an instance with holes is written as compressed RLE (its
``counts`` a UTF-8 string), and ``rle=True`` writes RLE for every instance. ``area`` is the pixel
count of the rasterised mask and ``bbox`` ([x, y, w, h]) the mask's box, both computed with
pycocotools so that they agree with what ``COCO.annToMask`` gives back.

Import reads polygons, uncompressed RLE (``iscrowd`` 1) and compressed RLE; every annotation,
crowd or not, becomes an instance.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.ops import unary_union

from app.core.errors import FormatError
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


def _segmentation_geometry(seg: Any, height: int, width: int) -> Geometry | None:
    if isinstance(seg, list):
        parts = []
        for ring in seg:
            if len(ring) >= 6:
                valid = make_valid_polygonal(Polygon(np.asarray(ring, float).reshape(-1, 2)))
                if valid is not None:
                    parts.append(valid)
        if not parts:
            return None
        return make_valid_polygonal(unary_union(parts))
    if isinstance(seg, dict):
        size = seg.get("size") or [height, width]
        counts = seg["counts"]
        if isinstance(counts, list):
            encoded = mask_utils.frPyObjects(seg, int(size[0]), int(size[1]))
        else:
            encoded = {"size": size, "counts": counts.encode("utf-8")
                       if isinstance(counts, str) else counts}
        return mask_to_geometry(decode_rle(encoded))
    raise ValueError(f"unknown segmentation of type {type(seg).__name__}")


def read_coco(path: Path) -> Dataset:
    """Read a COCO instance-segmentation JSON file into a ``Dataset``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cats = data["categories"]
        images = data["images"]
        anns = data.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{path}: not a readable COCO file ({exc})") from exc
    result = Dataset()
    names: dict[int, str] = {}
    for cat in cats:
        names[int(cat["id"])] = str(cat["name"])
        result.ensure_label(str(cat["name"]))
        if isinstance(cat.get("color"), str) and cat["color"].startswith("#"):
            result.labels[-1].colour = cat["color"]
    sizes: dict[int, tuple[int, int]] = {}
    for img in images:
        image_id = int(img["id"])
        rel = posix(str(img["file_name"]))
        record = ImageRecord(path=rel, width=int(img["width"]), height=int(img["height"]),
                             content_hash="", id=image_id)
        result.images.append(record)
        sizes[image_id] = (record.height, record.width)
        for candidate in (path.parent / rel, path.parent / "images" / rel):
            if candidate.is_file():
                result.image_files[image_id] = candidate
                break
    for ann in anns:
        ann_id = ann.get("id", "?")
        image_id = int(ann["image_id"])
        if image_id not in sizes:
            result.warnings.append(f"{path}: annotation {ann_id} refers to unknown image "
                                   f"{image_id}; skipped")
            continue
        label = names.get(int(ann["category_id"]))
        if label is None:
            result.warnings.append(f"{path}: annotation {ann_id} has unknown category "
                                   f"{ann['category_id']}; skipped")
            continue
        height, width = sizes[image_id]
        try:
            seg = ann.get("segmentation")
            if seg:
                geom = _segmentation_geometry(seg, height, width)
            else:  # a detection-only annotation: its box
                x, y, w, h = ann["bbox"]
                geom = box(x, y, x + w, y + h)
        except (ValueError, KeyError, TypeError) as exc:
            result.warnings.append(f"{path}: annotation {ann_id} is malformed ({exc}); skipped")
            continue
        if geom is None or geom.is_empty or not isinstance(geom, Polygon | MultiPolygon):
            result.warnings.append(f"{path}: annotation {ann_id} is empty; skipped")
            continue
        score = ann.get("score")
        result.instances.append(Instance(image_id=image_id, label=label, geometry=geom,
                                         score=float(score) if score is not None else None))
    return result
