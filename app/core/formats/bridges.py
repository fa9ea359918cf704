"""One closed path for a (Multi)Polygon with holes, and back: what YOLO segmentation needs.

A YOLO segmentation label has ONE polygon per object. Like Ultralytics' own COCO converter
(``ultralytics/data/converter.py``, ``merge_multi_segment``), we join all rings of an object
(every part's exterior and every hole) with zero-width bridges: each ring is connected to the
next one through the closest pair of their vertices, the path walks into the next ring, around
it, and comes back along the same bridge. A bridge is traversed once in each direction, so it
encloses no area: filled with the even-odd rule (or non-zero, since exteriors are written
counter-clockwise and holes clockwise) the path covers exactly the parts minus their holes.
Unlike Ultralytics, which bridges rings in the order they come, the next ring is always the
nearest unvisited one, which keeps bridges short.

``even_odd_geometry`` reverses it exactly: segments traversed an even number of times (the
bridges) cancel, the rest are noded and polygonised, and each face is kept when a ray from its
interior crosses the path an odd number of times.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry import LinearRing, MultiLineString, Polygon
from shapely.geometry.polygon import orient
from shapely.ops import polygonize, unary_union

from app.core.geometry import make_valid_polygonal, polygons_of
from app.core.types import Geometry

_CHUNK = 2048


def _rings(geom: Geometry) -> list[np.ndarray]:
    rings: list[np.ndarray] = []
    for part in polygons_of(geom):
        part = orient(part, sign=1.0)  # exterior counter-clockwise, holes clockwise
        for ring in (part.exterior, *part.interiors):
            coords = np.asarray(ring.coords, dtype=float)[:-1, :2]
            if len(coords) >= 3:
                rings.append(coords)
    return rings


def _closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the closest pair a[i], b[j] (chunked to bound memory)."""
    best = (np.inf, 0, 0)
    for start in range(0, len(a), _CHUNK):
        chunk = a[start:start + _CHUNK]
        d = ((chunk[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[i, j] < best[0]:
            best = (float(d[i, j]), start + int(i), int(j))
    return best[1], best[2]


def _nearest_order(rings: list[np.ndarray]) -> list[np.ndarray]:
    """Rings reordered so that each next ring is the unvisited one nearest to the last."""
    shapes = np.array([LinearRing(r) for r in rings], dtype=object)
    order = [0]
    left = np.arange(1, len(rings))
    while len(left):
        distances = shapely.distance(shapes[order[-1]], shapes[left])
        k = int(np.argmin(distances))
        order.append(int(left[k]))
        left = np.delete(left, k)
    return [rings[k] for k in order]


def bridged_path(geom: Geometry) -> np.ndarray:
    """All rings of ``geom`` as one closed path (M, 2), without repeating the first point.
    Empty (0, 2) when ``geom`` has no ring of 3 points or more."""
    rings = _rings(geom)
    if not rings:
        return np.zeros((0, 2))
    if len(rings) == 1:
        return rings[0]
    rings = _nearest_order(rings)
    n = len(rings)
    exits = [0] * n
    entries = [0] * n
    for i in range(n - 1):
        exits[i], entries[i + 1] = _closest_vertices(rings[i], rings[i + 1])
    entries[0] = exits[0]
    out: list[np.ndarray] = []
    returns: list[np.ndarray] = []
    for i, ring in enumerate(rings):
        m = len(ring)
        loop = np.concatenate([np.roll(ring, -entries[i], axis=0), ring[entries[i]][None]])
        if i == n - 1:
            out.append(loop)
        else:
            k = (exits[i] - entries[i]) % m
            out.append(loop[:k + 1])  # walk to the bridge to ring i + 1
            returns.append(loop[k:])  # after coming back: the rest of this ring
    out.extend(reversed(returns))
    path = np.concatenate(out)
    return path[:-1]  # the last point is the first one again


def _segments(points: np.ndarray) -> np.ndarray:
    closed = np.concatenate([points, points[:1]])
    seg = np.concatenate([closed[:-1], closed[1:]], axis=1)  # (N, 4): x1 y1 x2 y2
    return seg[np.any(seg[:, :2] != seg[:, 2:], axis=1)]


def _odd_segments(seg: np.ndarray) -> np.ndarray:
    """Segments traversed an odd number of times (either direction)."""
    counts: dict[tuple[float, ...], int] = {}
    for x1, y1, x2, y2 in seg.tolist():
        key = (x1, y1, x2, y2) if (x1, y1) <= (x2, y2) else (x2, y2, x1, y1)
        counts[key] = counts.get(key, 0) + 1
    odd = [k for k, c in counts.items() if c % 2]
    return np.asarray(odd, dtype=float).reshape(-1, 4)


def _crossings(seg: np.ndarray, x: float, y: float) -> int:
    x1, y1, x2, y2 = seg.T
    straddle = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return int(np.count_nonzero(straddle & (x < xi)))


def even_odd_geometry(points: np.ndarray) -> Geometry | None:
    """The area a closed path (N, 2) encloses under the even-odd rule, as a valid (Multi)Polygon
    (bridges vanish, holes come back); None when it encloses nothing."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if len(points) < 3:
        return None
    seg = _odd_segments(_segments(points))
    if len(seg) < 3:
        return None
    lines = MultiLineString([((a, b), (c, d)) for a, b, c, d in seg.tolist()])
    faces = [f for f in polygonize(unary_union(lines)) if f.area > 0]
    keep: list[Polygon] = []
    for face in faces:
        p = face.representative_point()
        if _crossings(seg, p.x, p.y) % 2 == 1:
            keep.append(face)
    if not keep:
        return None
    merged = shapely.union_all(keep)
    return make_valid_polygonal(merged)
