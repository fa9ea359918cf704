"""The masks that the tools a user trains with draw from an exported file, written out here.

Each export places its coordinates for one reader, and ``app.core.formats.fidelity`` re-reads
an export with these functions to check that the reader gets the project's masks back. The
importers use the same functions, so that a file made by those tools imports as exactly what
the tools themselves would draw.

- **COCO**: pycocotools, as ``COCO.annToMask`` does it (``frPyObjects``, ``merge``, ``decode``).
- **YOLO segmentation**: Ultralytics. ``verify_image_label`` (``ultralytics/data/utils.py``)
  parses each value as float32 and reshapes a line's values to (N, 2); ``Instances.denormalize``
  multiplies x by the image width and y by its height (float32); ``polygon2mask`` casts the
  points with ``np.asarray(polygons, dtype=np.int32)`` (truncation) and fills them with
  ``cv2.fillPoly`` (even-odd, the outline's pixels included); ``polygons2masks`` does that per
  line. Ultralytics is not imported: it needs torchvision (see the import-linter contract).
  supervision's ``from_yolo`` (0.31) rounds instead of truncating (``np.round(polygon)``) and
  fills the same way.
- **labelme**: ``labelme.utils.shape.shape_to_mask`` and ``shapes_to_label`` of labelme 6.3
  (MIT licence): a polygon is ``PIL.ImageDraw.polygon(xy, outline=1, fill=1)``, a rectangle
  ``rectangle``, a circle ``ellipse`` around its centre, each on a uint8 image; a ``mask``
  shape is its PNG placed at its box's corner (``np.asarray(points).astype(int)``). Shapes with
  the same label and group id form one instance. labelme itself needs Qt, so the logic is
  written out here; it is PIL's own drawing either way.
- **PNG masks**: ``cv2.imread(..., IMREAD_UNCHANGED)``; instance k is the pixels equal to k.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from app.core.images import IMAGE_FORMATS, sniff_format

# --- COCO: pycocotools ------------------------------------------------------------------------


def coco_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The mask pycocotools' ``COCO.annToMask`` gives for an annotation's ``segmentation``
    (polygons, uncompressed or compressed RLE)."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("utf-8")
    with warnings.catch_warnings():  # pycocotools with numpy 2 warns on every decode
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


# --- YOLO: Ultralytics ------------------------------------------------------------------------


def ultralytics_points(values: Sequence[float] | np.ndarray, width: int,
                       height: int) -> np.ndarray:
    """The int32 (N, 2) pixel points Ultralytics makes of a line's normalised values."""
    segment = np.asarray(values, dtype=np.float32).reshape(-1, 2)
    segment = segment * np.array([width, height], dtype=np.float32)
    return np.asarray(segment, dtype=np.int32)


def ultralytics_mask(values: Sequence[float] | np.ndarray, width: int,
                     height: int) -> np.ndarray:
    """The mask Ultralytics' ``polygon2mask`` draws for one label line's polygon values."""
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [ultralytics_points(values, width, height)], color=(1,))
    return mask.astype(bool)


def supervision_mask(values: Sequence[float] | np.ndarray, width: int,
                     height: int) -> np.ndarray:
    """The mask supervision's ``DetectionDataset.from_yolo`` draws (rounds, then fills)."""
    segment = np.asarray(values, dtype=np.float32).reshape(-1, 2)
    segment = segment * np.array([width, height], dtype=np.float32)
    mask = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(segment).astype(np.int32)], color=(1,))
    return mask.astype(bool)


def yolo_line_values(line: str) -> tuple[int, np.ndarray]:
    """Class id and float32 values of one label line, as Ultralytics splits it."""
    fields = line.split()
    return int(float(fields[0])), np.asarray(fields[1:], dtype=np.float32)


def read_yolo_masks(label_file: Path, width: int, height: int) -> list[tuple[int, np.ndarray]]:
    """(class id, mask) of every line of a segmentation label file, as Ultralytics reads it."""
    text = Path(label_file).read_text(encoding="utf-8")
    found = []
    for line in text.strip().splitlines():
        if line.strip():
            class_id, values = yolo_line_values(line)
            found.append((class_id, ultralytics_mask(values, width, height)))
    return found


def ultralytics_duplicates(label_file: Path) -> int:
    """How many lines Ultralytics' ``verify_image_label`` would drop (and warn about) as
    duplicates: lines whose class and box (``segments2boxes``, float32) repeat another's."""
    rows = []
    for line in Path(label_file).read_text(encoding="utf-8").strip().splitlines():
        if line.strip():
            class_id, values = yolo_line_values(line)
            xy = values.reshape(-1, 2)
            (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
            rows.append([class_id, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    if not rows:
        return 0
    return len(rows) - len(np.unique(np.asarray(rows, dtype=np.float32), axis=0))


# --- labelme ----------------------------------------------------------------------------------


def _draw(height: int, width: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.fromarray(np.zeros((height, width), dtype=np.uint8))
    return image, ImageDraw.Draw(image)


def b64_png_to_array(data: str) -> np.ndarray:
    """labelme's ``img_b64_to_arr``: a base64 image as an array."""
    with Image.open(io.BytesIO(base64.b64decode(data)), formats=IMAGE_FORMATS) as image:
        return np.asarray(image)


def labelme_shape_to_mask(height: int, width: int, points: Any,
                          shape_type: str | None) -> np.ndarray:
    """labelme's ``shape_to_mask`` for the shapes that have an area (polygon, rectangle,
    circle); ValueError for any other type."""
    image, draw = _draw(height, width)
    xy = [tuple(float(v) for v in point) for point in points]
    if shape_type == "circle":
        if len(xy) != 2:
            raise ValueError("a circle needs 2 points")
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse(((cx - d, cy - d), (cx + d, cy + d)), outline=1, fill=1)
    elif shape_type == "rectangle":
        if len(xy) != 2:
            raise ValueError("a rectangle needs 2 points")
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))),
                       outline=1, fill=1)
    elif shape_type in (None, "polygon"):
        if len(xy) <= 2:
            raise ValueError(f"a polygon of {len(xy)} points")
        draw.polygon(xy, outline=1, fill=1)
    else:
        raise ValueError(f"shape type {shape_type!r} has no area")
    return np.asarray(image, dtype=bool)


def labelme_mask_shape(height: int, width: int, points: Any, crop: np.ndarray) -> np.ndarray:
    """The mask of a ``mask`` shape as labelme's ``shapes_to_label`` places it: the crop at the
    box's corner (points cast to int). ValueError when it does not fit there."""
    (x1, y1), (x2, y2) = np.asarray(points, dtype=float).astype(int)
    mask = np.zeros((height, width), dtype=bool)
    mask[y1:y2 + 1, x1:x2 + 1] = crop.astype(bool)
    return mask


def labelme_instances(data: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(label, mask) of each instance of a labelme file in the order of its first shape: the
    shapes with the same label and group id (a shape without one is alone) drawn together."""
    height, width = int(data["imageHeight"]), int(data["imageWidth"])
    order: list[tuple[str, Any]] = []
    masks: dict[tuple[str, Any], np.ndarray] = {}
    for number, shape in enumerate(data["shapes"]):
        group = shape.get("group_id")
        key = (shape["label"], ("group", group) if group is not None else ("shape", number))
        if shape.get("shape_type") == "mask":
            mask = labelme_mask_shape(height, width, shape["points"],
                                      b64_png_to_array(shape["mask"]))
        else:
            mask = labelme_shape_to_mask(height, width, shape["points"],
                                         shape.get("shape_type"))
        if key not in masks:
            order.append(key)
            masks[key] = mask
        else:
            masks[key] |= mask
    return [(key[0], masks[key]) for key in order]


# --- PNG masks: cv2 ---------------------------------------------------------------------------


def read_png(path: Path) -> np.ndarray:
    """An image file as ``cv2.imread(path, IMREAD_UNCHANGED)`` reads it (Unicode paths too)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if sniff_format(data[:16].tobytes()) is None:  # OpenCV decodes any format it knows
        raise ValueError(f"{path}: not a PNG, JPEG, WebP, BMP, TIFF or GIF")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image
