"""Qt adapters of the hand-drawing state machines in ``app.interaction.drawing``: they feed
pointer events in, draw the marks and store finished shapes as instances."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from app.core.types import Box, Geometry, Source
from app.interaction.drawing import BoxDrawer, PolygonDrawer
from app.interaction.events import PointerEvent
from app.ui.canvas.layers import MarksItem
from app.ui.session import AnnotationSession


class _DrawingAdapter(QObject):
    """What both adapters share: the marks they draw on and where a finished shape goes."""

    message = Signal(str)
    state_type: type[PolygonDrawer] | type[BoxDrawer]

    def __init__(self, session: AnnotationSession, marks: MarksItem,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session, self.marks = session, marks
        self.state = self.state_type()  # the Qt-free state machine this adapts
        # given a finished shape and how to draw it again: stores it (the label popup);
        # None: stored at once with the current label
        self.on_shape: Callable[[Geometry, Callable[[], None] | None], None] | None = None

    def _store(self, geom: Geometry | None, redraw: Callable[[], None] | None) -> None:
        if geom is None:
            return
        if self.on_shape is not None:
            self.on_shape(geom, redraw)
        else:
            self.session.add_instance(geom, Source.MANUAL)

    def release(self, ev: PointerEvent) -> None:
        pass

    def double_click(self, ev: PointerEvent) -> None:
        pass

    def accept(self) -> bool:
        return False

    def undo_last(self) -> None:
        pass

    def clear(self) -> None:
        pass

    def reset(self) -> None:
        self.clear()


class PolygonTool(_DrawingAdapter):
    """Click vertices; click the first one, double click or Enter closes; Backspace, Esc."""

    state: PolygonDrawer
    state_type = PolygonDrawer

    def press(self, ev: PointerEvent) -> None:
        self._done(self.state.press(ev))
        self._draw()

    def move(self, ev: PointerEvent) -> None:
        self.state.move(ev)
        if self.state.vertices:
            self._draw()

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

    def _done(self, geom: Geometry | None) -> None:
        if geom is not None:
            self._store(geom, lambda: self.restore(geom))

    def restore(self, geom: Geometry) -> None:
        """Draw ``geom``'s outline again as the polygon being drawn (its label was not
        given: Enter finishes it again, Esc drops it)."""
        self.state.resume(geom)
        self._draw()

    def _draw(self) -> None:
        self.marks.set_marks(polyline=self.state.preview())


class BoxTool(_DrawingAdapter):
    """Drag a rectangle: it becomes an instance at once."""

    state: BoxDrawer
    state_type = BoxDrawer

    def press(self, ev: PointerEvent) -> None:
        self.state.press(ev)

    def move(self, ev: PointerEvent) -> None:
        r = self.state.move(ev)
        if r is not None:
            self.marks.set_marks(band=Box(*r))

    def release(self, ev: PointerEvent) -> None:
        geom = self.state.release(ev)
        self.marks.set_marks()
        self._store(geom, None)

    def clear(self) -> None:
        self.state.cancel()
        self.marks.set_marks()
