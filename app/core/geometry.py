"""Masks <-> shapely (Multi)Polygons with holes, boolean operations and validity.

Coordinate convention (see CONTRACTS.md): pixel (col, row) is the unit square
[col, col+1] x [row, row+1]. A polygon traced from a mask with tolerance 0 follows the pixel
edges, so its shapely area equals the pixel count; rasterising fills a pixel iff its centre
(col + 0.5, row + 0.5) is inside (the pycocotools convention). A centre exactly on an edge
belongs to the region below that edge (right of it, for a vertical edge), as in pycocotools,
so polygons that share an edge never share a pixel.

Hit-testing and the pure edit functions for the polygon editor live in
`app.core.geometry_edit` and are re-exported here.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import shapely
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from app.core.types import Geometry

DEFAULT_TOLERANCE = 0.75
"""Simplification tolerance in pixels (Douglas-Peucker, topology preserving). At this value the
round trip mask -> geometry -> mask keeps IoU >= 0.99 on every GrabCut ground-truth mask (min
0.9925) with about 1/8 of the raw contour's vertices."""


# ---------------------------------------------------------------------------------------------
# validity and small helpers


def polygons_of(geom: BaseGeometry | None) -> list[Polygon]:
    """The non-empty polygons of any geometry (a Polygon, MultiPolygon or collection), in order."""
    if geom is None or geom.is_empty:
        return []
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon | GeometryCollection):
        return [p for part in geom.geoms for p in polygons_of(part)]
    return []


def _from_parts(parts: list[Polygon]) -> Geometry | None:
    parts = [p for p in parts if not p.is_empty and p.area > 0]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return MultiPolygon(parts)


def make_valid_polygonal(geom: BaseGeometry | None) -> Geometry | None:
    """A valid Polygon or MultiPolygon covering `geom`'s area, or None when nothing is left.

    Self-intersections are fixed with shapely's make_valid (a bow tie becomes two triangles);
    lines and points it produces are dropped; overlapping parts of a MultiPolygon are unioned.
    """
    if geom is None or geom.is_empty:
        return None
    if isinstance(geom, Polygon | MultiPolygon) and geom.is_valid:
        return _from_parts(polygons_of(geom))
    if isinstance(geom, Polygon):
        return _from_parts(polygons_of(shapely.make_valid(geom)))
    # A collection of parts: make each part valid, then union them (parts may overlap).
    parts = [q for p in polygons_of(geom) for q in polygons_of(shapely.make_valid(p))]
    if not parts:
        return None
    merged = MultiPolygon(parts) if len(parts) > 1 else parts[0]
    if not merged.is_valid:
        merged = shapely.unary_union(parts)
    return _from_parts(polygons_of(merged))


def simplify(geom: BaseGeometry | None, tolerance: float) -> Geometry | None:
    """Douglas-Peucker simplification (tolerance in pixels) that keeps holes and parts apart."""
    if geom is None or geom.is_empty:
        return None
    if tolerance <= 0:
        return make_valid_polygonal(geom)
    return make_valid_polygonal(geom.simplify(tolerance, preserve_topology=True))


def union(a: BaseGeometry | None, b: BaseGeometry | None) -> Geometry | None:
    """The area covered by a or b (either may be None); polygonal, or None when empty."""
    if a is None or a.is_empty:
        return make_valid_polygonal(b)
    if b is None or b.is_empty:
        return make_valid_polygonal(a)
    return make_valid_polygonal(shapely.union(make_valid_polygonal(a), make_valid_polygonal(b)))


def difference(a: BaseGeometry | None, b: BaseGeometry | None) -> Geometry | None:
    """The area of a not covered by b; polygonal, or None when nothing is left."""
    a = make_valid_polygonal(a)
    b = make_valid_polygonal(b)
    if a is None or b is None:
        return a
    return make_valid_polygonal(shapely.difference(a, b))


def bbox(geom: BaseGeometry) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) bounds of a non-empty geometry."""
    if geom is None or geom.is_empty:
        raise ValueError("bbox of an empty geometry")
    x0, y0, x1, y1 = geom.bounds
    return (float(x0), float(y0), float(x1), float(y1))


def mask_iou(a: np.ndarray, b: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks, not counting pixels where `ignore` is True.

    Two empty masks are identical: their IoU is 1.0.
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} and {b.shape}")
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        a = a & keep
        b = b & keep
    union_count = int(np.count_nonzero(a | b))
    if union_count == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union_count


# ---------------------------------------------------------------------------------------------
# mask -> geometry


def _edge_grid(mask: np.ndarray) -> np.ndarray:
    """The mask at twice the resolution plus one, padded by one zero on every side.

    Without the padding, index k of the grid is the coordinate k/2: odd indices are pixel
    centres, even indices pixel edges. Pixel (c, r) covers indices 2c..2c+2, so two pixels
    touching at a corner share one grid cell and every contour OpenCV traces runs along pixel
    edges (bar cut corners, which `_edge_ring` restores).
    """
    h, w = mask.shape
    grid = np.zeros((2 * h + 3, 2 * w + 3), dtype=np.uint8)
    grid[2:-1:2, 2:-1:2] = mask  # pixel centres
    return cv2.dilate(grid, np.ones((3, 3), np.uint8))  # each centre grows to its 3x3 block


def _edge_ring(contour: np.ndarray, midpoints: bool = False) -> np.ndarray:
    """The vertices of a contour traced on the edge grid, in pixel coordinates.

    With `midpoints` False: the pixel corners (integer coordinates) of the exact pixel-edge
    staircase. With `midpoints` True: the midpoints of the unit pixel edges, a ring that cuts
    every staircase corner by a quarter pixel (diagonal runs become straight lines, which
    simplify to few vertices) and still has every object pixel centre inside and every
    background centre outside. OpenCV's 8-connected trace cuts some corners diagonally; a
    diagonal step goes between two edge midpoints and the corner it cut is the grid point
    with both indices even. Collinear points are dropped.
    """
    pts = contour[:, 0, :].astype(np.int64) - 1  # remove the padding: now k = 2 * coordinate
    nxt = np.roll(pts, -1, axis=0)
    step = nxt - pts
    diagonal = (np.abs(step[:, 0]) == 1) & (np.abs(step[:, 1]) == 1)
    x_even = pts[:, 0] % 2 == 0
    corner = np.where(x_even[:, None], np.stack([pts[:, 0], nxt[:, 1]], 1),
                      np.stack([nxt[:, 0], pts[:, 1]], 1))
    seq = np.stack([pts, corner], axis=1).reshape(-1, 2)
    use = np.stack([np.ones_like(diagonal), diagonal], axis=1).reshape(-1)
    seq = seq[use]
    if midpoints:
        seq = seq[(seq[:, 0] % 2) != (seq[:, 1] % 2)] / 2.0
    else:
        seq = seq[(seq[:, 0] % 2 == 0) & (seq[:, 1] % 2 == 0)] // 2
    # Drop points where the direction does not change (straight runs of unit steps).
    step_in = seq - np.roll(seq, 1, axis=0)
    step_out = np.roll(seq, -1, axis=0) - seq
    turn = (step_in[:, 0] * step_out[:, 1] - step_in[:, 1] * step_out[:, 0]) != 0
    turn |= np.all(step_in == 0, axis=1)  # a ring of a single repeated point: keep it
    return seq[turn]


def _traced_parts(mask: np.ndarray, midpoints: bool, x0: int, y0: int) -> list[Polygon]:
    """The polygons of a uint8 mask whose top-left pixel is (x0, y0) in the image."""
    offset = np.array([x0, y0])
    grid = _edge_grid(mask)
    contours, hierarchy = cv2.findContours(grid, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    links = hierarchy[0]
    parts: list[Polygon] = []
    for i, contour in enumerate(contours):
        if links[i][3] != -1:
            continue  # a hole: added with its outer contour
        shell = _edge_ring(contour, midpoints) + offset
        holes = []
        child = links[i][2]
        while child != -1:
            hole = _edge_ring(contours[child], midpoints) + offset
            if len(hole) >= 3:
                holes.append(hole)
            child = links[child][0]
        if len(shell) < 3:
            continue
        polygon = Polygon(shell, holes)
        if polygon.is_valid:
            parts.append(polygon)
        else:  # pinched at a pixel corner: split where it touches itself
            parts.extend(polygons_of(shapely.make_valid(polygon)))
    return parts


_MAX_SEPARATE = 32  # above this many connected components, trace them all in one go


def _crops(mask: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """(uint8 crop, x0, y0) pieces to trace: one per 8-connected component when there are few
    and their bounding boxes leave much of the mask's bounding box empty, else one crop."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = mask[r0:r1, c0:c1].astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    boxes = stats[1:, :4]
    if count - 1 > _MAX_SEPARATE or (boxes[:, 2] * boxes[:, 3]).sum() > 0.6 * crop.size:
        return [(crop, c0, r0)]
    return [
        ((labels[y : y + h, x : x + w] == k + 1).astype(np.uint8), c0 + int(x), r0 + int(y))
        for k, (x, y, w, h) in enumerate(boxes)
    ]


_MAX_AREA_CHANGE = 0.05  # a simplified part may differ from the traced one by 5 % of its area


def _simplify_part(part: Polygon, tolerance: float) -> Polygon | MultiPolygon:
    """Simplify one part, halving the tolerance while that changes more than 5 % of its area
    (thin or tiny parts would otherwise collapse); below 0.1 px the part stays as traced."""
    while tolerance >= 0.1:
        simplified = part.simplify(tolerance, preserve_topology=True)
        if (
            isinstance(simplified, Polygon | MultiPolygon)
            and simplified.is_valid
            and not simplified.is_empty
            and shapely.symmetric_difference(part, simplified).area
            <= _MAX_AREA_CHANGE * part.area
        ):
            return simplified
        tolerance /= 2
    return part


def _drop_small(parts: list[Polygon], min_area: float) -> list[Polygon]:
    kept = []
    for p in parts:
        if p.area < min_area:
            continue
        holes = [h for h in p.interiors if Polygon(h).area >= min_area]
        kept.append(p if len(holes) == len(p.interiors) else Polygon(p.exterior, holes))
    return kept


def mask_to_geometry(
    mask: np.ndarray, tolerance: float = DEFAULT_TOLERANCE, min_area: float = 0.0
) -> Geometry | None:
    """The (Multi)Polygon whose pixels are `mask`'s True pixels, holes and every part kept.

    With tolerance 0 the outline is the exact pixel-edge staircase (integer vertices, area ==
    pixel count). With tolerance > 0 the outline through the pixel-edge midpoints (same pixel
    centres inside, diagonals straight) is simplified with Douglas-Peucker at `tolerance`
    pixels, topology preserved; a part that this would change by more than 5 % of its area
    (a thin line, a speck) is simplified with half the tolerance, and so on. Either way
    `geometry_to_mask` gives back the mask exactly up to the simplification. Parts smaller
    than `min_area` pixels are dropped and holes smaller than it filled. Returns None for an
    empty mask. An island inside a hole is its own part.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    crops = _crops(mask.astype(bool, copy=False))
    parts = [p for crop, x0, y0 in crops for p in _traced_parts(crop, tolerance > 0, x0, y0)]
    if min_area > 0:
        parts = _drop_small(parts, min_area)
    if tolerance > 0:
        parts = [q for p in parts for q in polygons_of(_simplify_part(p, tolerance))]
    geom = _from_parts(parts)
    if geom is not None and not geom.is_valid:  # simplified parts that now overlap
        geom = make_valid_polygonal(geom)
    return geom


# ---------------------------------------------------------------------------------------------
# geometry -> mask


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


def geometry_to_mask(geom: BaseGeometry | None, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the pixels whose centres lie inside `geom`.

    Holes are subtracted; each polygon is rasterised within its own bounding box; None or an
    empty geometry gives an empty mask.
    """
    out = np.zeros((int(height), int(width)), dtype=bool)
    for polygon in polygons_of(geom):
        _fill_polygon(polygon, out)
    return out


# Hit-testing and edits (re-exported; they build on the functions above).
from app.core.geometry_edit import (  # noqa: E402
    contains,
    delete_vertex,
    insert_vertex,
    move_vertex,
    nearest_edge,
    nearest_vertex,
    translate,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "bbox",
    "contains",
    "delete_vertex",
    "difference",
    "geometry_to_mask",
    "insert_vertex",
    "make_valid_polygonal",
    "mask_iou",
    "mask_to_geometry",
    "move_vertex",
    "nearest_edge",
    "nearest_vertex",
    "polygons_of",
    "simplify",
    "translate",
    "union",
]
