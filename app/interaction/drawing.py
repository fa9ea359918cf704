"""Drawing by hand when no model helps, without Qt: the polygon, box and brush/eraser state
machines (their Qt adapters are in ``app.ui.tools.drawing_qt``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shapely.geometry import LineString, Polygon
from shapely.geometry import Point as ShapelyPoint

from app.core import geometry_edit
from app.core.types import Geometry
from app.interaction.events import Button, PointerEvent

MIN_SIDE = 1.0


@dataclass
class PolygonDrawer:
    """Left click adds a vertex; clicking the first vertex, double click or ``finish()``
    closes the polygon; ``undo_last()`` removes a vertex; ``cancel()`` drops it."""

    vertices: list[tuple[float, float]] = field(default_factory=list)
    cursor: tuple[float, float] | None = None

    def press(self, ev: PointerEvent) -> Geometry | None:
        if ev.button != Button.LEFT:
            return None
        if len(self.vertices) >= 3 and ev.distance_to(*self.vertices[0]) <= ev.radius:
            return self.finish()
        self.vertices.append((ev.x, ev.y))
        return None

    def move(self, ev: PointerEvent) -> None:
        self.cursor = (ev.x, ev.y)

    def double_click(self, ev: PointerEvent) -> Geometry | None:
        return self.finish()

    def finish(self) -> Geometry | None:
        """Close the polygon; None (and nothing reset) when it has no area yet."""
        pts = _dedupe(self.vertices)
        geom = geometry_edit.to_geometry([[pts]]) if len(pts) >= 3 else None
        if geom is None:
            return None
        self.cancel()
        return geom

    def undo_last(self) -> bool:
        if not self.vertices:
            return False
        self.vertices.pop()
        return True

    def cancel(self) -> None:
        self.vertices.clear()
        self.cursor = None

    def resume(self, geom: Geometry) -> None:
        """Take ``geom``'s outline up again as the polygon being drawn (its label was not
        given: ``finish()`` closes it again, ``cancel()`` drops it)."""
        ring = getattr(geom, "exterior", None)
        if ring is not None:
            self.vertices = [(float(x), float(y)) for x, y in list(ring.coords)[:-1]]

    def preview(self) -> list[tuple[float, float]]:
        """The open polyline to show: the vertices, then the pointer."""
        pts = list(self.vertices)
        if pts and self.cursor is not None:
            pts.append(self.cursor)
        return pts


def _dedupe(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for p in pts:
        if not out or p != out[-1]:
            out.append(p)
    return out


@dataclass
class BoxDrawer:
    """Left drag draws an axis-aligned rectangle."""

    start: tuple[float, float] | None = None
    current: tuple[float, float] | None = None

    def press(self, ev: PointerEvent) -> None:
        if ev.button == Button.LEFT:
            self.start = self.current = (ev.x, ev.y)

    def move(self, ev: PointerEvent) -> tuple[float, float, float, float] | None:
        if self.start is None:
            return None
        self.current = (ev.x, ev.y)
        return self.rect()

    def rect(self) -> tuple[float, float, float, float] | None:
        if self.start is None or self.current is None:
            return None
        (ax, ay), (bx, by) = self.start, self.current
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    def release(self, ev: PointerEvent) -> Geometry | None:
        if self.start is None:
            return None
        self.current = (ev.x, ev.y)
        r = self.rect()
        self.start = self.current = None
        if r is None or r[2] - r[0] < MIN_SIDE or r[3] - r[1] < MIN_SIDE:
            return None
        x0, y0, x1, y1 = r
        return Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    def cancel(self) -> None:
        self.start = self.current = None


@dataclass
class BrushStroke:
    """A brush or eraser stroke of ``radius`` pixels; the result is the stroke's area, which
    the caller unions with (brush) or subtracts from (eraser) the selected instance."""

    radius: float = 8.0
    points: list[tuple[float, float]] = field(default_factory=list)

    def press(self, ev: PointerEvent) -> None:
        if ev.button == Button.LEFT:
            self.points = [(ev.x, ev.y)]

    def move(self, ev: PointerEvent) -> Geometry | None:
        if not self.points:
            return None
        self.points.append((ev.x, ev.y))
        return self.area()

    def area(self) -> Geometry | None:
        if not self.points:
            return None
        if len(self.points) == 1:
            return ShapelyPoint(self.points[0]).buffer(self.radius)
        return LineString(self.points).buffer(self.radius)

    def release(self, ev: PointerEvent) -> Geometry | None:
        if not self.points:
            return None
        self.points.append((ev.x, ev.y))
        geom = self.area()
        self.points = []
        return geom
