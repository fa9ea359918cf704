"""COCO instance segmentation: one JSON file with images, categories and annotations.

Polygons are the default: each part of a (Multi)Polygon becomes one ``[x0, y0, x1, y1, ...]``
ring in pixel-edge coordinates. pycocotools fills a pixel when its centre is inside, the
convention MaskLoop uses everywhere, but rounds the points to 1/5 pixel first, so an outline
that passes very close to a pixel centre can tip it: the project's own polygons are written when
pycocotools fills exactly the project's mask from them, else the polygons traced from the mask,
whose outline keeps clear of every pixel centre (``_segmentation``); ``COCO.annToMask`` gives
the project's mask back exactly. COCO polygons cannot express holes, so an instance with holes
is written as compressed RLE (its ``counts`` a UTF-8 string), and ``rle=True`` writes RLE for
every instance. ``area`` is the pixel count of the rasterised mask and ``bbox`` ([x, y, w, h]) the
mask's box, both computed with pycocotools so that they agree with what ``COCO.annToMask``
gives back.

``export_coco`` writes one file (``file_name`` each image's relative path). With the images
copied, ``export_coco_dataset`` writes the common layout (datumaro's COCO importer finds it;
mmdetection and detectron2's ``register_coco_instances`` take the JSON and the image folder)::

    out/annotations/instances_train.json   file_name relative to images/train/
    out/annotations/instances_val.json     (with a val fraction)
    out/images/train/..., out/images/val/...

Import lives in ``app.core.formats.coco_read``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from app.core import rle as rle_codec
from app.core.formats.common import (
    ExportItem,
    ExportReport,
    Written,
    image_copy_mode,
    image_file,
    ordered_labels,
    place_file,
    report_progress,
    safe_relative,
    split_indices,
    unique_file_names,
    write_text_atomic,
)
from app.core.formats.placement import exact_geometry
from app.core.geometry import geometry_to_mask, polygons_of
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Geometry, ImageRecord, Instance, Label

SPLITS = ("train", "val")


def _ring(coords: Any) -> list[float] | None:
    points = list(coords)[:-1]  # shapely repeats the first point at the end
    if len(points) < 3:
        return None
    return [round(float(v), 2) for xy in points for v in xy[:2]]


def geometry_to_polygons(geom: Geometry) -> list[list[float]]:
    """COCO polygon rings of ``geom``'s exteriors (holes dropped), rings of < 3 points dropped."""
    rings = [_ring(p.exterior.coords) for p in polygons_of(geom)]
    return [r for r in rings if r is not None]


def _polygons_rle(rings: list[list[float]], height: int, width: int) -> rle_codec.RLE:
    if not rings:
        return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    return mask_utils.merge(mask_utils.frPyObjects(rings, height, width))


def geometry_to_rle(geom: Geometry, height: int, width: int) -> rle_codec.RLE:
    """Compressed RLE of the project's mask of ``geom`` (holes kept)."""
    return rle_codec.encode(geometry_to_mask(geom, height, width))


def has_holes(geom: Geometry) -> bool:
    return any(len(p.interiors) for p in polygons_of(geom))


def _segmentation(
    geom: Geometry, height: int, width: int, rle: bool
) -> tuple[Any, rle_codec.RLE]:
    """(segmentation, its RLE) that pycocotools turns into exactly the project's mask of
    ``geom``: the project's polygons when pycocotools fills exactly that mask from them, else
    the polygons traced from the mask (``placement.EXACT_TOLERANCE``, whose outline keeps
    clear of every pixel centre by more than pycocotools' rounding), else (a hole, or ``rle``)
    the mask's RLE."""
    exact = rle_codec.encode(geometry_to_mask(geom, height, width))
    if not rle and not has_holes(geom):
        for candidate in (geom, exact_geometry(rle_codec.decode(exact))):
            polygons = geometry_to_polygons(candidate)
            encoded = _polygons_rle(polygons, height, width)
            if encoded["counts"] == exact["counts"]:
                return polygons, encoded
    return {"size": [height, width], "counts": exact["counts"].decode("utf-8")}, exact


def _annotation(inst: Instance, record: ImageRecord, rle: bool) -> dict[str, Any] | None:
    segmentation, encoded = _segmentation(inst.geometry, record.height, record.width, rle)
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
    image_dir: Path | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write ``items`` as one COCO JSON file at ``out_path`` (written atomically).

    ``file_name`` is each image's relative path. With ``copy_images`` ("copy", "hardlink" or
    "symlink") and ``image_root``, the images are also placed under ``image_dir`` (default
    ``out_path.parent/images``) keeping their relative paths (missing files are skipped with a
    warning)."""
    items = list(items)
    image_dir = Path(image_dir) if image_dir is not None else Path(out_path).parent / "images"
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
        written = Written(int(record.id or 0), out_path, image_id)
        for number, inst in enumerate(instances):
            ann = _annotation(inst, record, rle)
            if ann is None:
                report.warnings.append(f"{record.path}: an instance of {inst.label!r} covers no "
                                       "pixel and was not exported")
                continue
            ann = {"id": len(annotations) + 1, "image_id": image_id,
                   "category_id": category_id[inst.label], **ann}
            annotations.append(ann)
            written.instances.append(number)
        report.written.append(written)
        if copy_images and image_root is not None:
            src = image_file(image_root, record)
            if src.exists():
                dst = place_file(src, image_dir / file_name,
                                 image_copy_mode(record, copy_images))
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


def export_coco_dataset(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    rle: bool = False,
    image_root: Path | None = None,
    copy_images: str | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write ``items`` in the common COCO layout under ``out_dir`` (see the module docstring):
    one ``annotations/instances_<split>.json`` per split, the images (with ``copy_images``)
    under ``images/<split>/``. The split is the one YOLO export makes: ``val_fraction`` of the
    images, sorted by path, drawn with ``seed``; the same arguments give the same split."""
    items = sorted(items, key=lambda item: item[0].path)
    all_labels = ordered_labels(labels, items)  # the same category ids in every split
    val = split_indices(len(items), val_fraction, seed)
    report = ExportReport()
    done = 0
    for split in SPLITS:
        chosen = [item for i, item in enumerate(items) if (i in val) == (split == "val")]
        if not chosen and split == "val":
            continue

        def step(n: int, total: int, message: str, offset: int = done) -> None:
            report_progress(progress, offset + n, len(items), message)

        part = export_coco(chosen, all_labels, out_dir / "annotations" / f"instances_{split}.json",
                           rle=rle, image_root=image_root, copy_images=copy_images,
                           image_dir=out_dir / "images" / split, progress=step, cancel=cancel)
        done += len(chosen)
        report.images += part.images
        report.instances += part.instances
        report.files += part.files
        report.warnings += part.warnings
        report.written += part.written
    report_progress(progress, len(items), len(items), "done")
    return report


from app.core.formats.coco_read import read_coco, read_coco_folder  # noqa: E402  (re-exported)

__all__ = ["export_coco", "export_coco_dataset", "read_coco", "read_coco_folder"]
