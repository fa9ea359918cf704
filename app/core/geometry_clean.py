"""Removing slivers: the parts and holes smaller than a pixel that boolean operations leave
where two outlines nearly coincide (a subtract of two instances traced from overlapping
masks). They cover no pixel, yet would be exported. ``app.core.geometry`` re-exports this and
cleans the results of its union, difference and simplify with it.
"""

from __future__ import annotations

import shapely
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from app.core.types import Geometry

MIN_AREA = 1.0
"""No part or hole of an edit's result is smaller than this (pixels²)."""
MIN_WIDTH = 0.5
"""Nor thinner than this (pixels): no disc of this diameter fits in a sliver."""


def _sliver(polygon: Polygon) -> bool:
    """Smaller than `MIN_AREA`, or thinner than `MIN_WIDTH` everywhere (only a polygon whose
    area is small next to its perimeter can be: those are eroded to find out)."""
    area = polygon.area
    if area < MIN_AREA:
        return True
    if area >= MIN_WIDTH * polygon.length:
        return False
    return bool(shapely.buffer(polygon, -MIN_WIDTH / 2, quad_segs=2).is_empty)


def drop_slivers(geom: BaseGeometry | None) -> Geometry | None:
    """`geom` (made valid) without the parts and holes (filled) smaller than a pixel: smaller
    than `MIN_AREA` or thinner than `MIN_WIDTH`, as boolean operations leave where two
    outlines nearly coincide (they would cover no pixel, yet be exported). None when nothing
    is left."""
    from app.core.geometry import _from_parts, make_valid_polygonal, polygons_of

    geom = make_valid_polygonal(geom)
    parts = polygons_of(geom)
    kept: list[Polygon] = []
    changed = False
    for part in parts:
        if _sliver(part):
            changed = True
            continue
        holes = [h for h in part.interiors if not _sliver(Polygon(h))]
        if len(holes) < len(part.interiors):
            part, changed = Polygon(part.exterior, holes), True
        kept.append(part)
    if not changed:
        return geom
    out = _from_parts(kept)
    return out if out is None or out.is_valid else make_valid_polygonal(out)
