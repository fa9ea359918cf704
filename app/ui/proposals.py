"""Segment everything and "find all: TEXT": the predictor's proposals shown as dashed
suggestions. Click one to accept it (right click discards it), or point at it and press Y
(accept) or N (discard); Enter accepts all that are left, Esc discards them. The proposal
under the pointer is highlighted, and a banner over the canvas says the keys for as long as
proposals are shown (and the progress while they are computed). Accepted suggestions get the
CURRENT label, also those found by text (the text is a query, the label stays the person's
choice: pick or add the label first, e.g. "person", to store them under it)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene
from shapely.geometry import Point as ShapelyPoint

from app.core.types import Geometry, MaskProposal, Source
from app.interaction.events import Button, PointerEvent
from app.predict.base import EverythingOptions
from app.predict.service.types import Phase, ProgressEvent
from app.ui.app_state import AppState
from app.ui.canvas.banner import Banner
from app.ui.canvas.convert import geometry_path
from app.ui.canvas.layers import cosmetic_pen
from app.ui.canvas.view import CanvasView
from app.ui.tasks import TaskRunner
from app.ui.workers import PredictorBridge


def proposals_to_geometries(proposals: list[MaskProposal], tolerance: float
                            ) -> list[tuple[Geometry, float]]:
    """Polygons of the proposals (runs on a pool thread)."""
    from app.core.geometry import mask_to_geometry

    out = []
    for p in proposals:
        geom = mask_to_geometry(p.mask, tolerance=tolerance)
        if geom is not None:
            out.append((geom, float(p.score)))
    return out


class ProposalsController(QObject):
    """Owns the suggestion items; acts as the canvas tool while suggestions are shown."""

    def __init__(self, state: AppState, canvas: CanvasView, tasks: TaskRunner,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state, self.canvas, self.tasks = state, canvas, tasks
        self.scene: QGraphicsScene = canvas.scene()
        self.items: list[tuple[QGraphicsPathItem, Geometry, float]] = []
        self._request: int | None = None
        self._query: str | None = None  # the text of a find-all request, None for everything
        self._previous_tool: str | None = None
        self._bridge: PredictorBridge | None = None
        self.banner = Banner(canvas)
        self._hover: int | None = None  # index of the proposal under the pointer
        self._pointer: tuple[float, float] | None = None
        canvas.cursor_moved.connect(self._moved)
        self.set_bridge(state.bridge)
        state.backend_changed.connect(self.set_bridge)

    def set_bridge(self, bridge: PredictorBridge) -> None:
        if self._bridge is not None:
            self.clear()
            self._bridge.proposals_ready.disconnect(self._on_ready)
            self._bridge.failed.disconnect(self._on_failed)
            self._bridge.progress.disconnect(self._on_progress)
        self._bridge = bridge
        bridge.proposals_ready.connect(self._on_ready)
        bridge.failed.connect(self._on_failed)
        bridge.progress.connect(self._on_progress)

    @property
    def active(self) -> bool:
        """Suggestions are shown (the canvas tool is this controller)."""
        return bool(self.items)

    @property
    def busy(self) -> bool:
        """Segment everything was asked for and has not answered yet."""
        return self._request is not None

    def request(self) -> None:
        if self.state.session.image is None:
            self.state.say("Open an image first")
            return
        self.clear()
        self._query = None
        self._request = self.state.bridge.segment_everything(
            EverythingOptions(points_per_side=self.state.bridge.everything_grid))
        self.state.say("Segmenting everything… (Esc cancels)")
        self.banner.say("Segmenting everything… (Esc cancels)")

    def find_all(self, text: str) -> None:
        """Every instance of ``text`` (a text-capable backend), run on the prediction worker."""
        text = text.strip()
        if not text:
            return
        if self.state.session.image is None:
            self.state.say("Open an image first")
            return
        if not self.state.bridge.supports_text:
            self.state.say(f"{self.state.bridge.description} does not understand text")
            return
        self.clear()
        self._query = text
        self._request = self.state.bridge.find_all(text)
        self.state.say(f"Finding all {text!r}… (Esc cancels)")
        self.banner.say(f"Finding all {text!r}… (Esc cancels)")

    def cancel(self) -> None:
        if self._request is not None:
            self.state.bridge.cancel_everything()
            self._request = None
            self.banner.say("")

    def _on_progress(self, event: ProgressEvent) -> None:
        if self._request is not None and event.total > 1 and event.phase is Phase.SEGMENTING:
            self.banner.say(f"Segmenting everything… {100 * event.done // event.total}% "
                            "(Esc cancels)")

    def _on_failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "everything" and request_id == self._request:
            self._request = None
            self.banner.say("")
            what = f"Find all {self._query!r}" if self._query else "Segment everything"
            self.state.say(f"{what} failed: {message}")

    def _on_ready(self, request_id: int, proposals: list[MaskProposal]) -> None:
        if request_id != self._request:
            return
        self._request = None
        image = self.state.session.image
        self.tasks.start(proposals_to_geometries, proposals, self.state.tolerance,
                           on_result=lambda geoms: self._show(image, geoms))

    def _show(self, image: object, geoms: list[tuple[Geometry, float]]) -> None:
        if image is not self.state.session.image:
            return
        self.clear()
        for geom, score in geoms:
            item = QGraphicsPathItem(geometry_path(geom))
            item.setPen(cosmetic_pen(QColor(255, 220, 0), 1.5, Qt.PenStyle.DashLine))
            fill = QColor(255, 220, 0)
            fill.setAlphaF(0.12)
            item.setBrush(fill)
            item.setZValue(2.5)
            self.scene.addItem(item)
            self.items.append((item, geom, score))
        if self.items:
            self._previous_tool = self.state.tool
            self.canvas.tool = self
        found = f" of {self._query!r}" if self._query else ""
        if not self.items:
            self.banner.say("")
            self.state.say(f"No proposals{found}")
            return
        self._say_keys()
        if self._pointer is not None:
            self._highlight(*self._pointer)

    def _say_keys(self) -> None:
        found = f" of {self._query!r}" if self._query else ""
        text = (f"{len(self.items)} proposals{found} for label "
                f"{self.state.label!r}: click or Y accepts the one under the "
                "pointer, right click or N discards it · Enter accepts all · Esc discards all")
        self.banner.say(text)
        self.state.say(text)

    def clear(self) -> None:
        self.cancel()
        for item, _, _ in self.items:
            self.scene.removeItem(item)
        self.items.clear()
        self._hover = None
        if self._request is None:
            self.banner.say("")
        if self._previous_tool is not None and self.canvas.tool is self:
            self.state.set_tool(self._previous_tool)
        self._previous_tool = None

    def accept_all(self) -> None:
        for _, geom, score in list(self.items):
            self.state.session.add_instance(geom, self._source(), score)
        self.clear()

    def _source(self) -> Source:
        return self.state.bridge.source

    def _at(self, x: float, y: float) -> int | None:
        pt = ShapelyPoint(x, y)
        hits = [i for i, (_, g, _) in enumerate(self.items) if g.covers(pt)]
        return min(hits, key=lambda i: self.items[i][1].area) if hits else None

    def take(self, i: int, accept: bool) -> None:
        """Accept (or discard) proposal ``i``; the last one taken ends the suggestions."""
        item, geom, score = self.items.pop(i)
        self.scene.removeItem(item)
        self._hover = None
        if accept:
            self.state.session.add_instance(geom, self._source(), score)
        if not self.items:
            self.clear()
        else:
            self._say_keys()
            if self._pointer is not None:
                self._highlight(*self._pointer)

    def take_under_pointer(self, accept: bool) -> None:
        """Y (accept) / N (discard): the proposal under the pointer."""
        if not self.active:
            return
        i = self._at(*self._pointer) if self._pointer is not None else None
        if i is None:
            self.state.say("Point at a proposal first", 3000)
            return
        self.take(i, accept)

    def _highlight(self, x: float, y: float) -> None:
        i = self._at(x, y)
        if i == self._hover:
            return
        for k, (item, _, _) in enumerate(self.items):
            on = k == i
            item.setPen(cosmetic_pen(QColor(255, 220, 0), 3.0 if on else 1.5,
                                     Qt.PenStyle.SolidLine if on else Qt.PenStyle.DashLine))
            fill = QColor(255, 220, 0)
            fill.setAlphaF(0.3 if on else 0.12)
            item.setBrush(fill)
        self._hover = i

    # -- CanvasTool ------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> None:
        i = self._at(ev.x, ev.y)
        if i is not None:
            self.take(i, ev.button == Button.LEFT)

    def _moved(self, x: float, y: float) -> None:
        self._pointer = (x, y)
        if self.items:
            self._highlight(x, y)

    def move(self, ev: PointerEvent) -> None:
        pass

    def release(self, ev: PointerEvent) -> None:
        pass

    def double_click(self, ev: PointerEvent) -> None:
        pass
