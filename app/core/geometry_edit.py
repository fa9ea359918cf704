"""Editable vertex lists of a (Multi)Polygon for the polygon editor: hit-testing and pure
vertex edits.

A ``Shape`` is a list of polygons (the parts of a MultiPolygon, in order), each a list of
rings (exterior first, then the holes in ``polygon.interiors`` order), each a list of (x, y)
vertices without the closing repeat. ``VertexRef(polygon, ring, index)`` addresses one
vertex; edge ``index`` of a ring goes from vertex ``index`` to vertex ``index + 1`` (the last
edge closes the ring). Edits return a new shape and never change their input;
``to_geometry`` turns a shape back into a valid Polygon/MultiPolygon.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.validation import make_valid

from app.core.types import Geometry

Ring = list[tuple[float, float]]
Shape = list[list[Ring]]


@dataclass(frozen=True)
class VertexRef:
    """One vertex of a shape (or the first vertex of one edge)."""

    polygon: int
    ring: int
    index: int


def to_shape(geom: Geometry) -> Shape:
    """Vertex lists of a Polygon or MultiPolygon (holes included)."""
    polys = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    shape: Shape = []
    for poly in polys:
        if poly.is_empty:
            continue
        rings = [poly.exterior, *poly.interiors]
        shape.append([[(float(x), float(y)) for x, y in list(r.coords)[:-1]] for r in rings])
    return shape


def to_geometry(shape: Shape) -> Geometry | None:
    """A valid Polygon/MultiPolygon from vertex lists; None when nothing with area is left."""
    polys: list[Polygon] = []
    for rings in shape:
        if not rings or len(rings[0]) < 3:
            continue
        holes = [r for r in rings[1:] if len(r) >= 3]
        polys.append(Polygon(rings[0], holes))
    if not polys:
        return None
    geom = polys[0] if len(polys) == 1 else MultiPolygon(polys)
    if not geom.is_valid:
        geom = make_valid(geom)
    parts = _polygonal_parts(geom)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _polygonal_parts(geom: object) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom] if geom.area > 0 else []
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        parts.extend(_polygonal_parts(g))
    return parts


def vertex(shape: Shape, ref: VertexRef) -> tuple[float, float]:
    return shape[ref.polygon][ref.ring][ref.index]


def _ring_arrays(shape: Shape) -> Iterator[tuple[int, int, np.ndarray]]:
    for p, rings in enumerate(shape):
        for r, ring in enumerate(rings):
            yield p, r, np.asarray(ring, dtype=float).reshape(-1, 2)


def nearest_vertex(shape: Shape, x: float, y: float, radius: float) -> VertexRef | None:
    """The vertex closest to (x, y) within ``radius``, or None; on a tie the first wins."""
    best: VertexRef | None = None
    best_d2 = radius * radius
    for pi, ri, ring in _ring_arrays(shape):
        if len(ring) == 0:
            continue
        d2 = (ring[:, 0] - x) ** 2 + (ring[:, 1] - y) ** 2
        vi = int(np.argmin(d2))
        if d2[vi] <= best_d2 and (best is None or d2[vi] < best_d2):
            best, best_d2 = VertexRef(pi, ri, vi), float(d2[vi])
    return best


def nearest_edge(
    shape: Shape, x: float, y: float, radius: float
) -> tuple[VertexRef, tuple[float, float]] | None:
    """The edge closest to (x, y) within ``radius``: (ref of its first vertex, the closest
    point on it), or None."""
    best: tuple[VertexRef, tuple[float, float]] | None = None
    best_d2 = radius * radius
    p = np.array([x, y], dtype=float)
    for pi, ri, ring in _ring_arrays(shape):
        if len(ring) < 2:
            continue
        ab = np.roll(ring, -1, axis=0) - ring
        length2 = np.einsum("ij,ij->i", ab, ab)
        t = np.einsum("ij,ij->i", p - ring, ab) / np.where(length2 > 0, length2, 1.0)
        proj = ring + np.clip(t, 0.0, 1.0)[:, None] * ab
        d2 = np.einsum("ij,ij->i", proj - p, proj - p)
        ei = int(np.argmin(d2))
        if d2[ei] <= best_d2 and (best is None or d2[ei] < best_d2):
            best_d2 = float(d2[ei])
            best = (VertexRef(pi, ri, ei), (float(proj[ei, 0]), float(proj[ei, 1])))
    return best


def contains(geom: BaseGeometry | None, x: float, y: float) -> bool:
    """True if (x, y) is inside ``geom`` or on its boundary (a click on an outline selects it)."""
    if geom is None or geom.is_empty:
        return False
    return bool(shapely.intersects_xy(geom, x, y))


def copy_shape(shape: Shape) -> Shape:
    return [[list(ring) for ring in rings] for rings in shape]


def move_vertex(shape: Shape, ref: VertexRef, x: float, y: float) -> Shape:
    out = copy_shape(shape)
    out[ref.polygon][ref.ring][ref.index] = (x, y)
    return out


def insert_vertex(shape: Shape, after: VertexRef, x: float, y: float) -> Shape:
    """A new vertex (x, y) on the edge that starts at ``after``."""
    out = copy_shape(shape)
    out[after.polygon][after.ring].insert(after.index + 1, (x, y))
    return out


def delete_vertex(shape: Shape, ref: VertexRef) -> Shape:
    """Remove a vertex; a ring left with fewer than 3 vertices is removed (a hole disappears,
    an exterior takes its polygon with it)."""
    out = copy_shape(shape)
    ring = out[ref.polygon][ref.ring]
    del ring[ref.index]
    if len(ring) < 3:
        if ref.ring == 0:
            del out[ref.polygon]
        else:
            del out[ref.polygon][ref.ring]
    return out


def translate(shape: Shape, dx: float, dy: float) -> Shape:
    return [[[(x + dx, y + dy) for x, y in ring] for ring in rings] for rings in shape]
