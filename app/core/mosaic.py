"""A mosaic of photos for the large-image evaluation (issue 16): labelled photos placed on a
grid into one large image, each ground-truth mask placed with its photo, optionally
upsampled (so that the objects span tiles of a tiled model).

Pure numpy and OpenCV: the photos and their 255/128/0 label images are passed in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.errors import MaskLoopError

FILL = (114, 114, 114)  # the grey of empty cell margins (YOLO's letterbox grey)


class MosaicError(MaskLoopError):
    """A mosaic cannot be built as asked (a bad grid, too many photos for it)."""


def parse_grid(text: str) -> tuple[int, int]:
    """"COLSxROWS" -> (cols, rows), e.g. "10x5" -> (10, 5); MosaicError when malformed."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or int(match[1]) < 1 or int(match[2]) < 1:
        raise MosaicError(f"bad mosaic grid {text!r}: expected COLSxROWS, e.g. 10x5")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class Placement:
    """Where one photo lies in the mosaic: its name and rectangle [x0, x1) x [y0, y1)."""

    name: str
    x0: int
    y0: int
    x1: int
    y1: int


@dataclass
class Mosaic:
    """The mosaic image (RGB uint8), each photo's placement, and each photo's label image
    (255 object, 128 ignored, 0 background) at its placed size, in the same order; the
    grid and the upsampling it was built with."""

    image: np.ndarray
    placements: list[Placement]
    labels: list[np.ndarray]
    grid: tuple[int, int]  # (cols, rows)
    upsample: int = 1

    def object_labels(self, index: int) -> np.ndarray:
        """Photo ``index``'s label image placed in a mosaic-sized array (0 elsewhere)."""
        p = self.placements[index]
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        out[p.y0:p.y1, p.x0:p.x1] = self.labels[index]
        return out


def build_mosaic(photos: Sequence[tuple[str, np.ndarray, np.ndarray]], cols: int, rows: int,
                 upsample: int = 1, fill: tuple[int, int, int] = FILL) -> Mosaic:
    """Place ``photos`` ((name, RGB image, label image) each) row by row on a ``cols`` x
    ``rows`` grid, every cell as large as the largest photo (after ``upsample``), each photo
    centred in its cell on ``fill``. Photos are enlarged with cubic interpolation, labels with
    nearest neighbour (so 128 stays "ignored")."""
    if cols < 1 or rows < 1:
        raise MosaicError(f"bad mosaic grid {cols}x{rows}")
    if upsample < 1:
        raise MosaicError(f"upsample must be at least 1, got {upsample}")
    if not photos:
        raise MosaicError("no photos to place")
    if len(photos) > cols * rows:
        raise MosaicError(f"{len(photos)} photos do not fit a {cols}x{rows} grid "
                          f"({cols * rows} cells)")
    for name, image, labels in photos:
        if image.shape[:2] != labels.shape[:2]:
            raise MosaicError(f"{name}: mask is {labels.shape[1::-1]}, image is "
                              f"{image.shape[1::-1]}")
    cell_w = max(image.shape[1] for _, image, _ in photos) * upsample
    cell_h = max(image.shape[0] for _, image, _ in photos) * upsample
    mosaic = np.empty((cell_h * rows, cell_w * cols, 3), dtype=np.uint8)
    mosaic[:] = np.asarray(fill, dtype=np.uint8)
    placements: list[Placement] = []
    placed_labels: list[np.ndarray] = []
    for i, (name, image, labels) in enumerate(photos):
        if upsample > 1:
            size = (image.shape[1] * upsample, image.shape[0] * upsample)
            image = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        h, w = image.shape[:2]
        row, col = divmod(i, cols)
        x0 = col * cell_w + (cell_w - w) // 2
        y0 = row * cell_h + (cell_h - h) // 2
        mosaic[y0:y0 + h, x0:x0 + w] = image
        placements.append(Placement(name, x0, y0, x0 + w, y0 + h))
        placed_labels.append(np.ascontiguousarray(labels))
    return Mosaic(mosaic, placements, placed_labels, (cols, rows), upsample)
