"""Hit-testing and pure edits of (Multi)Polygons for the polygon editor.

A vertex or edge is addressed by (polygon index, ring index, index):
- polygon index: position in `polygons_of(geom)` (0 for a Polygon, the part of a MultiPolygon);
- ring index: 0 is the exterior, k >= 1 is the hole `polygon.interiors[k - 1]`;
- vertex index i: the i-th coordinate of the ring, without the repeated closing point;
  edge index i goes from vertex i to vertex i + 1 (the last edge closes the ring).
Every edit returns a new valid geometry (or None when nothing polygonal is left); the input is
never changed. Use `app.core.geometry`, which re-exports these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from app.core.types import Geometry

VertexRef = tuple[int, int, int]
"""(polygon index, ring index, vertex index)."""

EdgeHit = tuple[int, int, int, tuple[float, float]]
"""(polygon index, ring index, edge index, nearest point on that edge)."""


def _polygons(geom: BaseGeometry | None) -> list[Polygon]:
    from app.core.geometry import polygons_of

    return polygons_of(geom)


def _rings(polygon: Polygon) -> list[np.ndarray]:
    """Each ring's vertices (n, 2) without the closing point, exterior first."""
    return [np.asarray(r.coords, dtype=float)[:-1] for r in (polygon.exterior, *polygon.interiors)]


RingArrays = Iterable[tuple[int, int, np.ndarray]]
"""(polygon index, ring index, (n, 2) vertices without the closing point) for each ring."""


def nearest_vertex_in(rings: RingArrays, x: float, y: float,
                      radius: float) -> VertexRef | None:
    """The vertex closest to (x, y) within `radius` among `rings`; on a tie the first wins."""
    best: VertexRef | None = None
    best_d2 = radius * radius
    for pi, ri, ring in rings:
        if len(ring) == 0:
            continue
        d2 = (ring[:, 0] - x) ** 2 + (ring[:, 1] - y) ** 2
        vi = int(np.argmin(d2))
        if d2[vi] <= best_d2 and (best is None or d2[vi] < best_d2):
            best, best_d2 = (pi, ri, vi), float(d2[vi])
    return best


def nearest_edge_in(rings: RingArrays, x: float, y: float, radius: float) -> EdgeHit | None:
    """The edge closest to (x, y) within `radius` among `rings`, with the closest point on it."""
    best: EdgeHit | None = None
    best_d2 = radius * radius
    p = np.array([x, y], dtype=float)
    for pi, ri, ring in rings:
        if len(ring) < 2:
            continue
        a = ring
        ab = np.roll(ring, -1, axis=0) - a
        length2 = np.einsum("ij,ij->i", ab, ab)
        t = np.einsum("ij,ij->i", p - a, ab) / np.where(length2 > 0, length2, 1.0)
        proj = a + np.clip(t, 0.0, 1.0)[:, None] * ab
        d2 = np.einsum("ij,ij->i", proj - p, proj - p)
        ei = int(np.argmin(d2))
        if d2[ei] <= best_d2 and (best is None or d2[ei] < best_d2):
            best_d2 = float(d2[ei])
            best = (pi, ri, ei, (float(proj[ei, 0]), float(proj[ei, 1])))
    return best


def _geometry_rings(geom: BaseGeometry | None) -> Iterator[tuple[int, int, np.ndarray]]:
    for pi, polygon in enumerate(_polygons(geom)):
        for ri, ring in enumerate(_rings(polygon)):
            yield pi, ri, ring


def nearest_vertex(
    geom: BaseGeometry | None, x: float, y: float, radius: float
) -> VertexRef | None:
    """The vertex closest to (x, y) within `radius` pixels, or None."""
    return nearest_vertex_in(_geometry_rings(geom), x, y, radius)


def nearest_edge(geom: BaseGeometry | None, x: float, y: float, radius: float) -> EdgeHit | None:
    """The edge closest to (x, y) within `radius` pixels and the closest point on it, or None."""
    return nearest_edge_in(_geometry_rings(geom), x, y, radius)


def contains(geom: BaseGeometry | None, x: float, y: float) -> bool:
    """True if (x, y) is inside `geom` or on its boundary (a click on an outline selects it)."""
    if geom is None or geom.is_empty:
        return False
    return bool(shapely.intersects_xy(geom, x, y))


def _with_ring(
    geom: BaseGeometry, poly: int, ring: int, edit: object
) -> Geometry | None:
    """Rebuild `geom` with ring (poly, ring) replaced by edit(vertices), then make it valid."""
    from app.core.geometry import make_valid_polygonal

    polygons = _polygons(geom)
    if not 0 <= poly < len(polygons):
        raise IndexError(f"polygon index {poly} out of range (0..{len(polygons) - 1})")
    rings = _rings(polygons[poly])
    if not 0 <= ring < len(rings):
        raise IndexError(f"ring index {ring} out of range (0..{len(rings) - 1})")
    rings[ring] = edit(rings[ring])  # type: ignore[operator]
    polygons[poly] = Polygon(rings[0], rings[1:])
    rebuilt = polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)
    return make_valid_polygonal(rebuilt)


def _check_vertex(vertices: np.ndarray, vertex: int) -> None:
    if not 0 <= vertex < len(vertices):
        raise IndexError(f"vertex index {vertex} out of range (0..{len(vertices) - 1})")


def move_vertex(
    geom: BaseGeometry, poly: int, ring: int, vertex: int, x: float, y: float
) -> Geometry | None:
    """`geom` with one vertex moved to (x, y); a move that crosses edges is made valid."""

    def edit(vertices: np.ndarray) -> np.ndarray:
        _check_vertex(vertices, vertex)
        out = vertices.copy()
        out[vertex] = (x, y)
        return out

    return _with_ring(geom, poly, ring, edit)


def insert_vertex(
    geom: BaseGeometry, poly: int, ring: int, edge: int, x: float, y: float
) -> Geometry | None:
    """`geom` with a vertex (x, y) inserted on edge `edge` (it becomes vertex edge + 1)."""

    def edit(vertices: np.ndarray) -> np.ndarray:
        _check_vertex(vertices, edge)
        return np.insert(vertices, edge + 1, (x, y), axis=0)

    return _with_ring(geom, poly, ring, edit)


def delete_vertex(geom: BaseGeometry, poly: int, ring: int, vertex: int) -> Geometry | None:
    """`geom` without one vertex. Raises ValueError if the ring would have fewer than 3."""

    def edit(vertices: np.ndarray) -> np.ndarray:
        _check_vertex(vertices, vertex)
        if len(vertices) <= 3:
            raise ValueError("a ring needs at least 3 vertices; this one has only 3")
        return np.delete(vertices, vertex, axis=0)

    return _with_ring(geom, poly, ring, edit)


def translate(geom: BaseGeometry, dx: float, dy: float) -> Geometry | None:
    """`geom` moved by (dx, dy) pixels."""
    from app.core.geometry import make_valid_polygonal

    if geom is None or geom.is_empty:
        return None
    offset = np.array([dx, dy], dtype=float)
    return make_valid_polygonal(shapely.transform(geom, lambda xy: xy + offset))
