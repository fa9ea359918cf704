"""labelme JSON: one file per image, beside a copy of (or a reference to) the image.

Points are pixel-edge coordinates (what labelme's canvas shows). labelme has no holes, so:

- an instance without holes becomes one ``"polygon"`` shape per part; the parts of one instance
  share a ``group_id`` (labelme's own way to group shapes into one object, as in its
  ``labelme2coco`` example);
- an instance with holes becomes one ``"mask"`` shape (labelme >= 5.3): ``"mask"`` is a base64
  PNG (uint8 0/1) of the mask cropped to its box and ``"points"`` is that box as
  ``[[x1, y1], [x2, y2]]``, inclusive pixel indices, exactly as labelme writes it.

Import reads ``polygon``, ``mask``, ``rectangle`` and ``circle`` shapes (others are skipped with
a warning); shapes with the same label and a non-null ``group_id`` form one instance.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from shapely.geometry import Point, Polygon, box
from shapely.ops import unary_union

from app.core.errors import FormatError
from app.core.formats.common import (
    COPY_MODES,
    Dataset,
    ExportItem,
    ExportReport,
    place_file,
    posix,
    report_progress,
    unique_file_names,
    write_text_atomic,
)
from app.core.geometry import geometry_to_mask, make_valid_polygonal, mask_to_geometry, polygons_of
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Geometry, ImageRecord, Instance, Label

LABELME_VERSION = "5.5.0"
IMAGE_MODES = ("reference", *COPY_MODES)


def _mask_to_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _b64_to_mask(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))).astype(bool)


def _base_shape(label: str, points: list[list[float]], shape_type: str,
                group_id: int | None) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "description": "",
            "shape_type": shape_type, "flags": {}, "mask": None}


def instance_shapes(inst: Instance, width: int, height: int,
                    group_id: int) -> list[dict[str, Any]]:
    """The labelme shapes of one instance (see the module docstring)."""
    parts = polygons_of(inst.geometry)
    if any(p.interiors for p in parts):
        mask = geometry_to_mask(inst.geometry, height, width)
        rows, cols = np.nonzero(mask)
        if len(rows) == 0:
            return []
        y1, y2, x1, x2 = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
        shape = _base_shape(inst.label, [[float(x1), float(y1)], [float(x2), float(y2)]],
                            "mask", None)
        shape["mask"] = _mask_to_b64(mask[y1:y2 + 1, x1:x2 + 1])
        return [shape]
    shapes = []
    for part in parts:
        points = [[round(float(x), 2), round(float(y), 2)] for x, y in part.exterior.coords[:-1]]
        if len(points) >= 3:
            shapes.append(_base_shape(inst.label, points, "polygon", None))
    if len(shapes) > 1:
        for shape in shapes:
            shape["group_id"] = group_id
    return shapes


def export_labelme(
    items: Iterable[ExportItem],
    labels: Sequence[Label],
    out_dir: Path,
    *,
    image_root: Path,
    images: str = "copy",
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Write one labelme JSON per image into ``out_dir`` (each written atomically).
    ``images``: "copy" (default), "hardlink" or "symlink" put the image beside its JSON;
    "reference" points ``imagePath`` at the original file (relative to ``out_dir``).
    ``labels`` is taken for a signature like the other exporters' (labelme stores names only)."""
    if images not in IMAGE_MODES:
        raise FormatError(f"unknown images mode {images!r}: use one of {', '.join(IMAGE_MODES)}")
    items = list(items)
    out_dir = Path(out_dir)
    report = ExportReport()
    names = unique_file_names(record.path for record, _ in items)
    total = len(items)
    for index, ((record, instances), name) in enumerate(zip(items, names, strict=True)):
        check(cancel)
        report_progress(progress, index, total, record.path)
        src = Path(image_root) / record.path
        if images == "reference":
            try:
                image_path = os.path.relpath(src.resolve(), out_dir.resolve())
            except ValueError:  # another drive (Windows)
                image_path = str(src.resolve())
            if not src.is_file():
                report.warnings.append(f"{src}: image file missing (the JSON refers to it)")
        elif src.is_file():
            report.files.append(place_file(src, out_dir / name, images))
            image_path = name
        else:
            report.warnings.append(f"{src}: image file missing; not copied, JSON still written")
            image_path = name
        shapes: list[dict[str, Any]] = []
        for number, inst in enumerate(instances, start=1):
            inst_shapes = instance_shapes(inst, record.width, record.height, number)
            if not inst_shapes:
                report.warnings.append(f"{record.path}: an instance of {inst.label!r} covers "
                                       "no pixel; not exported")
                continue
            shapes += inst_shapes
            report.instances += 1
        data: dict[str, Any] = {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": Path(image_path).as_posix(),
            "imageData": None,
            "imageHeight": record.height,
            "imageWidth": record.width,
        }
        json_path = out_dir / (Path(name).stem + ".json")
        report.files.append(write_text_atomic(json_path, json.dumps(data, indent=2,
                                                                    ensure_ascii=False)))
        report.images += 1
    report_progress(progress, total, total, "done")
    return report


# ---------------------------------------------------------------------------------------------
# Import


def shape_geometry(shape: dict[str, Any], width: int, height: int) -> Geometry | None:
    """The geometry of one labelme shape; ValueError for shape types that have no area."""
    kind = shape.get("shape_type") or "polygon"
    points = np.asarray(shape.get("points") or [], dtype=float).reshape(-1, 2)
    if kind == "mask":
        if shape.get("mask") is None or len(points) != 2:
            raise ValueError("a mask shape needs 'mask' data and two box points")
        (x1, y1), (x2, y2) = np.round(points).astype(int)
        crop = _b64_to_mask(shape["mask"])
        full = np.zeros((height, width), dtype=bool)
        h = min(crop.shape[0], y2 - y1 + 1, height - y1)
        w = min(crop.shape[1], x2 - x1 + 1, width - x1)
        full[y1:y1 + h, x1:x1 + w] = crop[:h, :w]
        return mask_to_geometry(full)
    if kind == "rectangle" and len(points) == 2:
        (x1, y1), (x2, y2) = points
        return box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    if kind == "circle" and len(points) == 2:
        (cx, cy), (px, py) = points
        return Point(cx, cy).buffer(float(np.hypot(px - cx, py - cy)), quad_segs=16)
    if kind == "polygon":
        if len(points) < 3:
            raise ValueError(f"a polygon of {len(points)} points")
        return make_valid_polygonal(Polygon(points))
    raise ValueError(f"shape type {kind!r} has no area")


def _image_record(json_path: Path, data: dict[str, Any], root: Path,
                  image_id: int) -> tuple[ImageRecord, Path | None]:
    image_path = posix(str(data.get("imagePath") or ""))
    file = (json_path.parent / image_path) if image_path else None
    if file is not None and file.is_file():
        file = file.resolve()
        try:
            rel = file.relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = Path(image_path).name
    else:
        file = None
        rel = Path(image_path).name if image_path else json_path.stem
    record = ImageRecord(path=rel, width=int(data["imageWidth"]),
                         height=int(data["imageHeight"]), content_hash="", id=image_id)
    return record, file


def read_labelme(src: Path) -> Dataset:
    """Read every labelme JSON file under ``src`` (a folder, searched recursively, or one file)."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(src.rglob("*.json"))
    root = src.parent if src.is_file() else src
    result = Dataset()
    for json_path in files:
        try:
            data = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            if src.is_file():
                raise FormatError(f"{json_path}: not a readable labelme file ({exc})") from exc
            result.warnings.append(f"{json_path}: not readable JSON ({exc}); skipped")
            continue
        if not isinstance(data, dict) or "shapes" not in data:
            continue  # some other JSON file in the folder
        try:
            record, file = _image_record(json_path, data, root, len(result.images) + 1)
        except (KeyError, TypeError, ValueError) as exc:
            result.warnings.append(f"{json_path}: no image size ({exc}); skipped")
            continue
        result.images.append(record)
        if file is not None:
            result.image_files[int(record.id or 0)] = file
        _read_shapes(result, json_path, data["shapes"], record)
    return result


def _read_shapes(result: Dataset, json_path: Path, shapes: list[Any],
                 record: ImageRecord) -> None:
    grouped: dict[tuple[str, Any], list[Geometry]] = {}
    for number, shape in enumerate(shapes, start=1):
        try:
            label = str(shape["label"])
            geom = shape_geometry(shape, record.width, record.height)
        except (KeyError, TypeError, ValueError) as exc:
            result.warnings.append(f"{json_path}: shape {number} skipped ({exc})")
            continue
        if geom is None or geom.is_empty:
            result.warnings.append(f"{json_path}: shape {number} encloses nothing; skipped")
            continue
        result.ensure_label(label)
        group = shape.get("group_id")
        key = (label, group if group is not None else f"shape-{number}")
        grouped.setdefault(key, []).append(geom)
    for (label, _), geoms in grouped.items():
        geom = geoms[0] if len(geoms) == 1 else make_valid_polygonal(unary_union(geoms))
        if geom is not None:
            result.instances.append(Instance(image_id=int(record.id or 0), label=label,
                                             geometry=geom))
