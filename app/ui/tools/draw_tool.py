"""Manual polygon and box tools: shapes drawn by hand become instances."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from app.core.types import Box, Geometry, Source
from app.ui.canvas.layers import MarksItem
from app.ui.interaction.draw_tools import BoxDrawer, PolygonDrawer
from app.ui.interaction.events import PointerEvent
from app.ui.session import AnnotationSession


class PolygonTool(QObject):
    """Click vertices; click the first one, double click or Enter closes; Backspace, Esc."""

    message = Signal(str)

    def __init__(self, session: AnnotationSession, marks: MarksItem,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.marks = session, marks
        self.state = PolygonDrawer()
        # given a finished shape and how to draw it again: stores it (the label popup);
        # None: stored at once with the current label
        self.on_shape: Callable[[Geometry, Callable[[], None] | None], None] | None = None

    def press(self, ev: PointerEvent) -> None:
        self._done(self.state.press(ev))
        self._draw()

    def move(self, ev: PointerEvent) -> None:
        self.state.move(ev)
        if self.state.vertices:
            self._draw()

    def release(self, ev: PointerEvent) -> None:
        pass

    def double_click(self, ev: PointerEvent) -> None:
        self._done(self.state.double_click(ev))
        self._draw()

    def accept(self) -> bool:
        geom = self.state.finish()
        self._done(geom)
        self._draw()
        return geom is not None

    def undo_last(self) -> None:
        self.state.undo_last()
        self._draw()

    def clear(self) -> None:
        self.state.cancel()
        self._draw()

    def reset(self) -> None:
        self.clear()

    def _done(self, geom: Geometry | None) -> None:
        if geom is None:
            return
        if self.on_shape is not None:
            self.on_shape(geom, lambda: self.restore(geom))
        else:
            self.session.add_instance(geom, Source.MANUAL)

    def restore(self, geom: Geometry) -> None:
        """Draw ``geom``'s outline again as the polygon being drawn (its label was not
        given: Enter finishes it again, Esc drops it)."""
        ring = getattr(geom, "exterior", None)
        if ring is not None:
            self.state.vertices = [(float(x), float(y)) for x, y in list(ring.coords)[:-1]]
            self._draw()

    def _draw(self) -> None:
        pts = list(self.state.vertices)
        if pts and self.state.cursor is not None:
            pts.append(self.state.cursor)
        self.marks.set_marks(polyline=pts)


class BoxTool(QObject):
    """Drag a rectangle: it becomes an instance at once."""

    message = Signal(str)

    def __init__(self, session: AnnotationSession, marks: MarksItem,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.marks = session, marks
        self.state = BoxDrawer()
        self.on_shape: Callable[[Geometry, Callable[[], None] | None], None] | None = None

    def press(self, ev: PointerEvent) -> None:
        self.state.press(ev)

    def move(self, ev: PointerEvent) -> None:
        r = self.state.move(ev)
        if r is not None:
            self.marks.set_marks(band=Box(*r))

    def release(self, ev: PointerEvent) -> None:
        geom = self.state.release(ev)
        self.marks.set_marks()
        if geom is not None and self.on_shape is not None:
            self.on_shape(geom, None)
        elif geom is not None:
            self.session.add_instance(geom, Source.MANUAL)

    def double_click(self, ev: PointerEvent) -> None:
        pass

    def accept(self) -> bool:
        return False

    def undo_last(self) -> None:
        pass

    def clear(self) -> None:
        self.state.start = None
        self.marks.set_marks()

    def reset(self) -> None:
        self.clear()
