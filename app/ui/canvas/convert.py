"""numpy and shapely to Qt: images, mask overlays and painter paths."""

from __future__ import annotations

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
