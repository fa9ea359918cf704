"""numpy and shapely to Qt: images, mask overlays and painter paths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainterPath, QPolygonF
from shapely.geometry import MultiPolygon

from app.core.types import Geometry


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An RGB uint8 (H, W, 3) array as a QImage that owns a copy of the pixels."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    return img.copy()  # detach from the numpy buffer


OVERLAY_MAX_SIDE = 2048  # live masks of larger images are shown subsampled


def rgb_to_display_qimage(rgb: np.ndarray) -> QImage:
    """The image in the raster engine's native 32-bit format, built off the GUI thread, so
    that ``QPixmap.fromImage`` on the GUI thread is a plain copy (an RGB888 image would be
    converted there: over a second for 8000 x 8000)."""
    import cv2

    bgra = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_RGB32).copy()


def mask_overlay(mask: np.ndarray, colour: QColor, alpha: int = 110
                 ) -> tuple[QImage, int, int, int] | None:
    """A translucent ARGB image of the mask's bounding box, its (x, y) offset and its
    subsampling step (1 up to OVERLAY_MAX_SIDE pixels, more beyond, so that a mask of an
    8000 x 8000 image costs what a 2000 x 2000 one does). None for an empty mask."""
    step = max(1, -(-max(mask.shape) // OVERLAY_MAX_SIDE))
    small = mask[::step, ::step]
    rows = np.flatnonzero(small.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(small.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = small[y0:y1, x0:x1]
    a = alpha / 255.0
    # premultiplied ARGB32 as little-endian uint32: 0xAARRGGBB
    pixel = ((alpha << 24) | (int(colour.red() * a) << 16) | (int(colour.green() * a) << 8)
             | int(colour.blue() * a))
    buf = np.where(crop, np.uint32(pixel), np.uint32(0)).astype(np.uint32)
    h, w = buf.shape
    img = QImage(buf.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied).copy()
    return img, x0 * step, y0 * step, step


LIVE_ALPHA = 140  # fill of the live SAM candidate: a bit stronger than the instances'
OUTLINE_EPSILON = 0.7  # contour simplification (overlay pixels), invisible on screen


@dataclass
class LiveOverlay:
    """What the live candidate mask shows: a translucent fill image placed at (x, y) and
    scaled by ``step``, and its outline (every contour, holes too) in image coordinates."""

    image: QImage
    x: int
    y: int
    step: int
    outline: QPainterPath
    pixels: int


def live_overlay(mask: np.ndarray, colour: QColor, alpha: int = LIVE_ALPHA
                 ) -> LiveOverlay | None:
    """The fill and the outline of a candidate mask (None when empty). Pure numpy/OpenCV on
    a mask subsampled to OVERLAY_MAX_SIDE, so it may run off the GUI thread (large masks)."""
    built = mask_overlay(mask, colour, alpha)
    if built is None:
        return None
    img, x, y, step = built
    crop = mask[::step, ::step][y // step:y // step + img.height(),
                                x // step:x // step + img.width()]
    return LiveOverlay(img, x, y, step, mask_outline(crop, x, y, step), int(mask.sum()))


def mask_outline(crop: np.ndarray, x: float = 0, y: float = 0, step: int = 1) -> QPainterPath:
    """The contours of a (cropped, subsampled) mask as a path in image coordinates: the
    crop's pixel (c, r) covers [x + c * step, x + (c + 1) * step] (and likewise in y); the
    path runs through the centres of its boundary pixels."""
    import cv2

    padded = np.pad(crop.astype(np.uint8), 1)  # contours touching the crop's border close
    contours, _ = cv2.findContours(padded, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for contour in contours:
        pts = cv2.approxPolyDP(contour, OUTLINE_EPSILON, True).reshape(-1, 2).astype(float)
        if len(pts) < 2:
            continue
        pts = (pts - 1 + 0.5) * step + (x, y)  # undo the padding, to pixel centres
        path.addPolygon(QPolygonF([QPointF(px, py) for px, py in pts.tolist()]))
        path.closeSubpath()
    return path


def geometry_path(geom: Geometry) -> QPainterPath:
    """A painter path with every ring of the geometry; odd-even fill shows holes."""
    path = QPainterPath()
    path.setFillRule(Qt.FillRule.OddEvenFill)
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    for poly in polys:
        for ring in [poly.exterior, *poly.interiors]:
            pts = [QPointF(x, y) for x, y in ring.coords]
            if len(pts) >= 3:
                path.addPolygon(QPolygonF(pts))
                path.closeSubpath()
    return path
