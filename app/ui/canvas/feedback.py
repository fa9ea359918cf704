"""Scene items that say something is happening: a spinning ring at a click that is being
answered (with the encode's progress while the click waits for it), and the hover preview's
outline (dashed: what a click here would give)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

from app.ui.canvas.layers import Z_MARKS, cosmetic_pen

RING_RADIUS = 13.0  # screen pixels
SPIN_MS = 40


class BusyRing(QGraphicsItem):
    """A spinning arc of a fixed screen size at an image point, with an optional text
    under it ("encoding 40%"). ``start`` shows it, ``stop`` hides it."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(Z_MARKS + 0.5)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setVisible(False)
        self.angle = 0
        self.text = ""
        self._timer = QTimer()
        self._timer.setInterval(SPIN_MS)
        self._timer.timeout.connect(self._spin)

    @property
    def spinning(self) -> bool:
        return self.isVisible()

    def start(self, x: float, y: float) -> None:
        self.setPos(QPointF(x, y))
        self.setVisible(True)
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self.setVisible(False)
        self.set_text("")

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.prepareGeometryChange()
            self.text = text
            self.update()

    def _spin(self) -> None:
        self.angle = (self.angle + 30) % 360
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        r = RING_RADIUS + 4
        extra = 22.0 if self.text else 0.0
        width = max(2 * r, 9.0 * len(self.text))
        return QRectF(-width / 2, -r, width, 2 * r + extra)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        r = RING_RADIUS
        rect = QRectF(-r, -r, 2 * r, 2 * r)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(cosmetic_pen(QColor(0, 0, 0, 110), 5.0))
        painter.drawEllipse(rect)
        pen = cosmetic_pen(QColor(255, 255, 255), 3.0)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        painter.drawArc(rect, -self.angle * 16, 100 * 16)
        if self.text:
            font = QFont(painter.font())
            font.setBold(True)
            painter.setFont(font)
            box = QRectF(-70, r + 3, 140, 18)
            path = QPainterPath()
            path.addText(QPointF(0, 0), font, self.text)
            w = path.boundingRect().width()
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 150))
            painter.drawRoundedRect(QRectF(-w / 2 - 5, box.top(), w + 10, box.height()), 4, 4)
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self.text)


class PreviewOutline(QGraphicsPathItem):
    """What a click at the pointer would give: a dashed outline and a faint fill."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(Z_MARKS - 0.5)
        self.setVisible(False)

    def show_path(self, path: QPainterPath, colour: QColor) -> None:
        self.setPath(path)
        self.setPen(cosmetic_pen(colour.lighter(130), 1.5, Qt.PenStyle.DashLine))
        fill = QColor(colour)
        fill.setAlphaF(0.18)
        self.setBrush(fill)
        self.setVisible(True)

    def clear(self) -> None:
        self.setPath(QPainterPath())
        self.setVisible(False)
