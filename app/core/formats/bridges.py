"""One closed path for a (Multi)Polygon with holes, and back: what YOLO segmentation needs.

A YOLO segmentation label has ONE polygon per object. Like Ultralytics' own COCO converter
(``ultralytics/data/converter.py``, ``merge_multi_segment``), we join all rings of an object
(every part's exterior and every hole) with zero-width bridges: the path walks from a ring to
the next one through a close pair of their vertices, around it, and back along the same bridge.
A bridge is traversed once in each direction, so it encloses no area: filled with the even-odd
rule the path covers exactly the parts minus their holes. Unlike Ultralytics, which bridges
rings in the order they come, the bridges form a minimum spanning tree of the rings (the
shortest total length: a reader that draws the outline, as ``cv2.fillPoly`` does, draws each
bridge's pixels), joined at the closest pair of vertices of each two rings.

``even_odd_geometry`` reverses it exactly: segments traversed an even number of times (the
bridges) cancel, the rest are noded and polygonised, and each face is kept when a ray from its
interior crosses the path an odd number of times.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import shapely
from shapely.geometry import MultiLineString, Polygon
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


def closest_vertices(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the closest pair a[i], b[j] (chunked to bound memory)."""
    best = (np.inf, 0, 0)
    for start in range(0, len(a), _CHUNK):
        chunk = a[start:start + _CHUNK]
        d = ((chunk[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        if d[i, j] < best[0]:
            best = (float(d[i, j]), start + int(i), int(j))
    return best[1], best[2]


def _nearest_order(rings: list[np.ndarray]) -> list[int]:
    """Ring indices ordered so that each next ring is the unvisited one nearest to the last."""
    shapes = np.array([shapely.multipoints(r) for r in rings], dtype=object)
    order = [0]
    left = np.arange(1, len(rings))
    while len(left):
        distances = shapely.distance(shapes[order[-1]], shapes[left])
        k = int(np.argmin(distances))
        order.append(int(left[k]))
        left = np.delete(left, k)
    return order


_MAX_TREE = 256  # above this many rings, bridge them as a chain (nearest next) instead


def bridge_tree(rings: list[np.ndarray]) -> list[tuple[int, int]]:
    """(parent, child) ring pairs of the bridges: a minimum spanning tree (Prim) of the rings
    by the distance of their closest vertices, rooted at ring 0; a chain for many rings."""
    n = len(rings)
    if n > _MAX_TREE:
        order = _nearest_order(rings)
        return list(itertools.pairwise(order))
    shapes = np.array([shapely.multipoints(r) for r in rings], dtype=object)
    dist = shapely.distance(shapes[:, None], shapes[None, :])
    best = dist[0].copy()
    parent = np.zeros(n, dtype=int)
    done = np.zeros(n, dtype=bool)
    done[0] = True
    edges = []
    for _ in range(n - 1):
        k = int(np.argmin(np.where(done, np.inf, best)))
        edges.append((int(parent[k]), k))
        done[k] = True
        closer = dist[k] < best
        best = np.where(closer, dist[k], best)
        parent = np.where(closer, k, parent)
    return edges


def bridge_rings(rings: Sequence[np.ndarray]) -> np.ndarray:
    """Rings (each (M, 2), M >= 1, not closed) joined into one closed path by zero-width
    bridges along a tree of the rings (see the module docstring); the first point is not
    repeated at the end. Empty (0, 2) when there is no ring."""
    rings = [np.asarray(r).reshape(-1, 2) for r in rings if len(r)]
    if not rings:
        return np.zeros((0, 2))
    if len(rings) == 1:
        return rings[0]
    links: dict[int, list[tuple[int, int, int]]] = {}  # ring -> (vertex, child, child vertex)
    for parent, child in bridge_tree(rings):
        out_vertex, in_vertex = closest_vertices(rings[parent], rings[child])
        links.setdefault(parent, []).append((out_vertex, child, in_vertex))

    def walk(ring: int, entry: int) -> Iterator[np.ndarray | tuple[int, int]]:
        """The ring's points from ``entry`` around and back to it, with (child, vertex) where
        a child's walk goes in; after it, the bridge leads back to the same vertex."""
        points = rings[ring]
        m = len(points)
        loop = np.concatenate([np.roll(points, -entry, axis=0), points[entry:entry + 1]])
        start = 0
        for k, child, vertex in sorted(((v - entry) % m, c, cv)
                                       for v, c, cv in links.get(ring, [])):
            yield loop[start:k + 1]
            yield child, vertex
            start = k
        yield loop[start:]

    out: list[np.ndarray] = []
    stack = [walk(0, 0)]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, tuple):
            stack.append(walk(*item))
        else:
            out.append(item)
    return np.concatenate(out)[:-1]  # the last point is the first one again


def bridged_path(geom: Geometry) -> np.ndarray:
    """All rings of ``geom`` as one closed path (M, 2), without repeating the first point.
    Empty (0, 2) when ``geom`` has no ring of 3 points or more."""
    return bridge_rings(_rings(geom))


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
