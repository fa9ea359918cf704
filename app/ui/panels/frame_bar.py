"""The frame bar under the canvas while a sequence is shown: a slider over its frames with a
mark on each frame where a track has an instance (tall: an anchor, the person's; short: a
propagated one), and the current frame, the count and the time."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QWidget,
)

ANCHOR_COLOUR = QColor("#ff9500")
PROPAGATED_COLOUR = QColor("#007aff")


def time_text(frame: int, fps: float) -> str:
    """``frame`` as m:ss.cc at ``fps`` (frames per second)."""
    seconds = frame / fps if fps > 0 else 0.0
    minutes, rest = divmod(seconds, 60.0)
    return f"{int(minutes)}:{rest:05.2f}"


class MarkedSlider(QSlider):
    """A horizontal slider that paints a mark per frame that has an anchor or a propagated
    instance (a frame with both shows the anchor)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.anchors: frozenset[int] = frozenset()
        self.propagated: frozenset[int] = frozenset()
        self.setMinimumHeight(28)
        self.setPageStep(10)

    def set_marks(self, anchors: Iterable[int], propagated: Iterable[int]) -> None:
        self.anchors = frozenset(anchors)
        self.propagated = frozenset(propagated) - self.anchors
        self.update()

    def mark_xs(self, frames: Iterable[int]) -> list[int]:
        """The x of each frame's mark: the centre of the handle when it is on that frame."""
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        style = self.style()
        groove = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderGroove, self)
        handle = style.subControlRect(QStyle.ComplexControl.CC_Slider, opt,
                                      QStyle.SubControl.SC_SliderHandle, self)
        span, lo, hi = groove.width() - handle.width(), self.minimum(), self.maximum()
        left = groove.x() + handle.width() // 2
        return [left + QStyle.sliderPositionFromValue(lo, hi, f, span) for f in frames]

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(event)
        if not (self.anchors or self.propagated):
            return
        painter = QPainter(self)
        h = self.height()
        for frames, colour, top in ((self.propagated, PROPAGATED_COLOUR, h * 2 // 3),
                                    (self.anchors, ANCHOR_COLOUR, h // 3)):
            painter.setPen(colour)
            for x in set(self.mark_xs(frames)):  # one line per pixel column
                painter.drawLine(x, top, x, h - 1)
        painter.end()


class FrameBar(QWidget):
    """Slider, marks and "frame i / last · time". ``frame_chosen(i)`` when the person moves the
    slider (not when ``set_frame`` moves it)."""

    frame_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = MarkedSlider(self)
        self.label = QLabel(self)
        self.label.setMinimumWidth(170)
        self.label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.fps = 30.0
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 0, 6, 2)
        row.addWidget(self.slider, 1)
        row.addWidget(self.label)
        self.slider.valueChanged.connect(self._moved)
        self._quiet = False
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)

    @property
    def frame(self) -> int:
        return self.slider.value()

    @property
    def count(self) -> int:
        return self.slider.maximum() + 1

    def set_sequence(self, count: int, fps: float) -> None:
        """A sequence of ``count`` frames at ``fps``; the marks are cleared."""
        self.fps = fps
        self._quiet = True
        self.slider.setRange(0, max(0, count - 1))
        self.slider.setValue(0)
        self._quiet = False
        self.slider.set_marks((), ())
        self._update_label()

    def set_frame(self, frame: int) -> None:
        self._quiet = True
        self.slider.setValue(frame)
        self._quiet = False
        self._update_label()

    def set_marks(self, anchors: Iterable[int], propagated: Iterable[int]) -> None:
        self.slider.set_marks(anchors, propagated)

    def _moved(self, value: int) -> None:
        self._update_label()
        if not self._quiet:
            self.frame_chosen.emit(value)

    def _update_label(self) -> None:
        frame = self.slider.value()
        # frames are numbered from 0, as everywhere in the project (exports, messages)
        self.label.setText(f"frame {frame} / {self.count - 1} · {time_text(frame, self.fps)}")
