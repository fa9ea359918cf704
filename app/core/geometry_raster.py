"""Rasterising polygons: the pixels whose centres lie inside, as pycocotools fills them.

Pixel (col, row) is the unit square [col, col+1] x [row, row+1] and is filled iff its centre
(col + 0.5, row + 0.5) is inside; a centre exactly on an edge belongs to the region below that
edge (right of it, for a vertical edge), so polygons that share an edge never share a pixel.
``app.core.geometry.geometry_to_mask`` is the entry point.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon

from app.core import geometry_trace as T

_MANY_POLYGONS = 8  # above this many, all polygons are rasterised in one numpy pass


def polygons_to_mask(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the pixels whose centres lie inside any of
    ``polygons`` (holes subtracted), each rasterised within its own bounding box."""
    out = np.zeros((int(height), int(width)), dtype=bool)
    if len(polygons) > _MANY_POLYGONS and T.fill_polygons(np.asarray(polygons, dtype=object), out):
        return out
    for polygon in polygons:
        _fill_polygon(polygon, out)
    return out


def _ring_segments(polygon: Polygon) -> np.ndarray:
    rings = [polygon.exterior, *polygon.interiors]
    segs = []
    for ring in rings:
        xy = np.asarray(ring.coords, dtype=float)
        if len(xy) >= 2:
            segs.append(np.hstack([xy[:-1], xy[1:]]))
    return np.vstack(segs) if segs else np.zeros((0, 4))


def _fill_polygon(polygon: Polygon, out: np.ndarray) -> None:
    """OR into `out` the pixels whose centres are inside `polygon` (even-odd over its rings).

    Scans columns like pycocotools: an edge toggles inside/outside at the first row whose
    centre is at or below the edge, so a centre exactly on an edge goes to the region below
    it (and, on a vertical edge, to the region on its right).
    """
    height, width = out.shape
    minx, miny, maxx, maxy = polygon.bounds
    c0, c1 = max(0, math.floor(minx)), min(width, math.ceil(maxx))
    r0, r1 = max(0, math.floor(miny)), min(height, math.ceil(maxy))
    if c1 <= c0 or r1 <= r0:
        return
    x0, y0, x1, y1 = _ring_segments(polygon).T
    # Columns whose centre c + 0.5 lies in [min(x0, x1), max(x0, x1)): half-open, so a vertex
    # shared by two edges is counted once and vertical edges never.
    first = np.clip(np.ceil(np.minimum(x0, x1) - 0.5), c0, c1).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(x0, x1) - 0.5), c0, c1).astype(np.int64)
    counts = stop - first
    keep = counts > 0
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    first, counts = first[keep], counts[keep]
    edge = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cols = first[edge] + (np.arange(int(counts.sum())) - starts)
    ys = y0[edge] + (cols + 0.5 - x0[edge]) * (y1[edge] - y0[edge]) / (x1[edge] - x0[edge])
    rows = np.clip(np.ceil(ys - 0.5), r0, r1).astype(np.int64)
    n_rows, n_cols = r1 - r0 + 1, c1 - c0
    counted = np.bincount((rows - r0) * n_cols + (cols - c0), minlength=n_rows * n_cols)
    toggles = counted.astype(np.uint8).reshape(n_rows, n_cols)
    inside = np.cumsum(toggles, axis=0, dtype=np.uint8) & 1  # parity down each column
    out[r0:r1, c0:c1] |= inside[:-1].astype(bool)
