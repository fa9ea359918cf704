"""Segment everything and "find all: TEXT": the predictor's proposals shown as dashed
suggestions. Click one to accept it (right click discards it); Enter accepts all that are
left, Esc discards them. Accepted suggestions get the CURRENT label, also those found by
text (the text is a query, the label stays the person's choice: pick or add the label first,
e.g. "person", to store them under it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene
from shapely.geometry import Point as ShapelyPoint

from app.core.types import Geometry, MaskProposal, Source
from app.ui.canvas.convert import geometry_path
from app.ui.canvas.layers import cosmetic_pen
from app.ui.interaction.events import Button, PointerEvent
from app.ui.workers import PredictorBridge

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


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

    def __init__(self, window: MainWindow, scene: QGraphicsScene) -> None:
        super().__init__(window)
        self.w, self.scene = window, scene
        self.items: list[tuple[QGraphicsPathItem, Geometry, float]] = []
        self._request: int | None = None
        self._query: str | None = None  # the text of a find-all request, None for everything
        self._previous_tool: str | None = None
        self._bridge: PredictorBridge | None = None
        self.set_bridge(window.bridge)

    def set_bridge(self, bridge: PredictorBridge) -> None:
        if self._bridge is not None:
            self.clear()
            self._bridge.proposals_ready.disconnect(self._on_ready)
            self._bridge.failed.disconnect(self._on_failed)
        self._bridge = bridge
        bridge.proposals_ready.connect(self._on_ready)
        bridge.failed.connect(self._on_failed)

    @property
    def active(self) -> bool:
        """Suggestions are shown (the canvas tool is this controller)."""
        return bool(self.items)

    @property
    def busy(self) -> bool:
        """Segment everything was asked for and has not answered yet."""
        return self._request is not None

    def request(self) -> None:
        if self.w.session.image is None:
            self.w.show_message("Open an image first")
            return
        self.clear()
        self._query = None
        self._request = self.w.bridge.segment_everything(
            points_per_side=self.w.bridge.everything_grid)
        self.w.show_message("Segmenting everything… (Esc cancels)")

    def find_all(self, text: str) -> None:
        """Every instance of ``text`` (a text-capable backend), run on the prediction worker."""
        text = text.strip()
        if not text:
            return
        if self.w.session.image is None:
            self.w.show_message("Open an image first")
            return
        if not self.w.bridge.supports_text:
            self.w.show_message(f"{self.w.bridge.description} does not understand text")
            return
        self.clear()
        self._query = text
        self._request = self.w.bridge.find_all(text)
        self.w.show_message(f"Finding all {text!r}… (Esc cancels)")

    def cancel(self) -> None:
        if self._request is not None:
            self.w.bridge.cancel_everything()
            self._request = None

    def _on_failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "everything" and request_id == self._request:
            self._request = None
            what = f"Find all {self._query!r}" if self._query else "Segment everything"
            self.w.show_message(f"{what} failed: {message}")

    def _on_ready(self, request_id: int, proposals: list[MaskProposal]) -> None:
        if request_id != self._request:
            return
        self._request = None
        image = self.w.session.image
        self.w.tasks.start(proposals_to_geometries, proposals, self.w.sam_tool.tolerance,
                           on_result=lambda geoms: self._show(image, geoms))

    def _show(self, image: object, geoms: list[tuple[Geometry, float]]) -> None:
        if image is not self.w.session.image:
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
            self._previous_tool = self.w.active_tool_name
            self.w.canvas.tool = self
        found = f" of {self._query!r}" if self._query else ""
        if not self.items:
            self.w.show_message(f"No proposals{found}")
            return
        self.w.show_message(f"{len(self.items)} proposals{found} (label "
                            f"{self.w.session.current_label!r}): click to accept, right click "
                            "to discard, Enter accepts all, Esc discards all")

    def clear(self) -> None:
        self.cancel()
        for item, _, _ in self.items:
            self.scene.removeItem(item)
        self.items.clear()
        if self._previous_tool is not None and self.w.canvas.tool is self:
            self.w.set_tool(self._previous_tool)
        self._previous_tool = None

    def accept_all(self) -> None:
        for _, geom, score in list(self.items):
            self.w.session.add_instance(geom, self._source(), score)
        self.clear()

    def _source(self) -> Source:
        return self.w.bridge.source

    def _at(self, x: float, y: float) -> int | None:
        pt = ShapelyPoint(x, y)
        hits = [i for i, (_, g, _) in enumerate(self.items) if g.covers(pt)]
        return min(hits, key=lambda i: self.items[i][1].area) if hits else None

    # -- CanvasTool ------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> None:
        i = self._at(ev.x, ev.y)
        if i is None:
            return
        item, geom, score = self.items.pop(i)
        self.scene.removeItem(item)
        if ev.button == Button.LEFT:
            self.w.session.add_instance(geom, self._source(), score)
        if not self.items:
            self.clear()

    def move(self, ev: PointerEvent) -> None:
        pass

    def release(self, ev: PointerEvent) -> None:
        pass

    def double_click(self, ev: PointerEvent) -> None:
        pass
