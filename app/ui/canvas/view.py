"""CanvasView: zoom to cursor, pan, fit; translates mouse events into ``PointerEvent``s
for the active tool. Scene coordinates are image pixels (pixel (c, r) is [c, c+1] x [r, r+1])."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPixmap,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QWidget,
)

from app.core.types import Box
from app.interaction.events import Button, PointerEvent

HIT_PIXELS = 6.0  # hit-test radius on screen
ZOOM_STEP = 1.0015  # per wheel angle-delta unit (120 per notch: about 20 %)
MIN_SCALE, MAX_SCALE = 0.01, 64.0
LARGE_IMAGE_SIDE = 4096


class CanvasTool(Protocol):
    """What the canvas feeds: pointer events in image coordinates."""

    def press(self, ev: PointerEvent) -> None: ...
    def move(self, ev: PointerEvent) -> None: ...
    def release(self, ev: PointerEvent) -> None: ...
    def double_click(self, ev: PointerEvent) -> None: ...


_BUTTONS = {
    Qt.MouseButton.LeftButton: Button.LEFT,
    Qt.MouseButton.RightButton: Button.RIGHT,
    Qt.MouseButton.MiddleButton: Button.MIDDLE,
}


class CanvasView(QGraphicsView):
    """The image view. ``set_image`` shows a pixmap; ``set_message`` shows text instead."""

    cursor_moved = Signal(float, float)  # image coordinates
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontSavePainterState, True)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self.setMouseTracking(True)
        # pan with the middle button or Space+drag; the scene extends beyond the image so
        # zooming keeps the point under the cursor in place even near the image's edges
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        self.tool: CanvasTool | None = None
        self._pixmap_item = QGraphicsPixmapItem()
        self._pixmap_item.setZValue(-10)
        self._pixmap_item.setCacheMode(QGraphicsPixmapItem.CacheMode.NoCache)
        self.scene().addItem(self._pixmap_item)
        self.tiled_item: QGraphicsItem | None = None  # a large image's tiles, instead
        self._message = QGraphicsSimpleTextItem()
        self._message.setBrush(QColor(230, 120, 120))
        self._message.setZValue(100)
        self.scene().addItem(self._message)
        self._pan_from: QPointF | None = None
        self._space = False
        self.image_size: tuple[int, int] | None = None  # (width, height)
        # the person zoomed or panned: a resize keeps their view (else it refits)
        self.user_zoomed = False
        # keys that reach the canvas unhandled go here (the window's shortcuts); True = used
        self.key_fallback: Callable[[QKeyEvent], bool] | None = None

    # -- content ---------------------------------------------------------------------------
    def set_image(self, pixmap: QPixmap) -> None:
        self._drop_tiled()
        self._message.setText("")
        self._pixmap_item.setPixmap(pixmap)
        large = max(pixmap.width(), pixmap.height()) > LARGE_IMAGE_SIDE
        self._pixmap_item.setTransformationMode(
            Qt.TransformationMode.FastTransformation if large
            else Qt.TransformationMode.SmoothTransformation)
        self._show_size(pixmap.width(), pixmap.height())

    def set_tiled(self, item: QGraphicsItem, width: int, height: int) -> None:
        """Show a large image as a tiled item (``tiled_image.TiledImageItem``) instead of
        one pixmap."""
        self._drop_tiled()
        self._message.setText("")
        self._pixmap_item.setPixmap(QPixmap())
        self.tiled_item = item
        self.scene().addItem(item)
        self._show_size(width, height)

    def _show_size(self, w: int, h: int) -> None:
        self.image_size = (w, h)
        margin = 2.0 * max(w, h)
        self.scene().setSceneRect(QRectF(-margin, -margin, w + 2 * margin, h + 2 * margin))
        self.fit()

    def _drop_tiled(self) -> None:
        if self.tiled_item is not None:
            self.scene().removeItem(self.tiled_item)
            self.tiled_item = None

    def set_message(self, text: str) -> None:
        """Show a message where the image would be (a corrupt image, loading...)."""
        self._drop_tiled()
        self._pixmap_item.setPixmap(QPixmap())
        self.image_size = None
        self._message.setText(text)
        rect = self._message.boundingRect()
        self.scene().setSceneRect(rect.adjusted(-20, -20, 20, 20))
        self.resetTransform()
        self.centerOn(rect.center())

    def message(self) -> str:
        return self._message.text()

    # -- view ------------------------------------------------------------------------------
    def scale_factor(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        """Fit the whole image in the window (F); a resize refits it again."""
        self.user_zoomed = False
        if self.image_size:
            w, h = self.image_size
            self.fitInView(QRectF(0, 0, w, h), Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.scale_factor())

    def zoom_to(self, rect: QRectF, margin: float = 0.25, max_scale: float = 8.0) -> None:
        """Show ``rect`` (image coordinates) with ``margin`` of its size around it, no closer
        than ``max_scale`` screen pixels per image pixel; a resize keeps this view."""
        if rect.isNull() or not self.image_size:
            return
        dx, dy = rect.width() * margin, rect.height() * margin
        target = rect.adjusted(-dx, -dy, dx, dy)
        self.fitInView(target, Qt.AspectRatioMode.KeepAspectRatio)
        if self.scale_factor() > max_scale:
            self.zoom_by(max_scale / self.scale_factor())
            self.centerOn(rect.center())
        self.user_zoomed = True
        self.zoom_changed.emit(self.scale_factor())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.image_size and not self.user_zoomed:
            self.fit()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom by ``factor`` keeping the image point under ``anchor`` (viewport
        coordinates; default the centre) where it is."""
        s = self.scale_factor()
        factor = max(MIN_SCALE / s, min(MAX_SCALE / s, factor))
        at = anchor if anchor is not None else QPointF(self.viewport().rect().center())
        fixed = self.mapToScene(at.toPoint())
        self.scale(factor, factor)
        self.user_zoomed = True
        moved = self.mapFromScene(fixed) - at.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + moved.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + moved.y())
        self.zoom_changed.emit(self.scale_factor())

    def image_pos(self, view_pos: QPointF) -> QPointF:
        return self.mapToScene(view_pos.toPoint())

    def visible_image_rect(self) -> Box | None:
        """The part of the image on screen (image pixels), None without an image: sent with
        each prompt as ``Prompt.view``."""
        if not self.image_size:
            return None
        w, h = self.image_size
        seen = self.mapToScene(self.viewport().rect()).boundingRect()
        seen = seen.intersected(QRectF(0, 0, w, h))
        if seen.isEmpty():
            return None
        return Box(seen.left(), seen.top(), seen.right(), seen.bottom())

    def _event(self, ev: QMouseEvent, button: Button | None = None) -> PointerEvent:
        p = self.mapToScene(ev.position().toPoint())
        mods = ev.modifiers()
        return PointerEvent(
            float(p.x()), float(p.y()),
            button if button is not None else _BUTTONS.get(ev.button(), Button.NONE),
            shift=bool(mods & Qt.KeyboardModifier.ShiftModifier),
            ctrl=bool(mods & Qt.KeyboardModifier.ControlModifier),
            alt=bool(mods & Qt.KeyboardModifier.AltModifier),
            radius=HIT_PIXELS / max(self.scale_factor(), 1e-6),
        )

    # -- Qt events -------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(ZOOM_STEP ** delta, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self.setFocus()
        if event.button() == Qt.MouseButton.MiddleButton or (
            self._space and event.button() == Qt.MouseButton.LeftButton
        ):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if self.tool is not None and self.image_size is not None:
            self.tool.press(self._event(event))
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None:
            d = event.position() - self._pan_from
            self._pan_from = event.position()
            self.user_zoomed = True
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(d.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(d.y()))
            event.accept()
            return
        ev = self._event(event, Button.NONE)
        self.cursor_moved.emit(ev.x, ev.y)
        if self.tool is not None and self.image_size is not None:
            held = event.buttons()
            button = next((b for q, b in _BUTTONS.items() if held & q), Button.NONE)
            self.tool.move(self._event(event, button))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._pan_from is not None:
            self._pan_from = None
            self.viewport().unsetCursor()
            event.accept()
            return
        if self.tool is not None and self.image_size is not None:
            self.tool.release(self._event(event))
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.tool is not None and self.image_size is not None:
            self.tool.double_click(self._event(event))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        if self.key_fallback is not None and self.key_fallback(event):
            event.accept()
            return
        super().keyPressEvent(event)

    def focusNextPrevChild(self, next: bool) -> bool:  # noqa: N802, A002
        return False  # Tab cycles SAM candidates, not the focus

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().unsetCursor()
            event.accept()
            return
        super().keyReleaseEvent(event)
