"""A short first-run guide over the canvas: three steps (click, refine, Enter), each ticked
off as it is done; closed with its × or once the first instance is stored, and not shown
again (``GuiSettings.guide_done``). It never takes a click meant for the canvas: the card
lets the mouse through, except its close button."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QToolButton, QVBoxLayout

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

STEPS = ["<b>Click</b> on an object: a mask appears (drag a box for a tight start)",
         "<b>Refine</b>: left click adds, right click removes, Tab tries the other masks",
         "<b>Enter</b> accepts: pick or type the label, Enter again. D: next image · F1: keys"]
DONE_CLOSE_MS = 2500  # the finished guide stays this long


class FirstRunGuide(QFrame):
    """The card in the canvas's top-left corner; ``step`` is the step being shown (0-2)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window.canvas)
        self.w = window
        self.step = 0
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setObjectName("guide")
        self.setStyleSheet("#guide { background: rgba(25, 25, 25, 215); border-radius: 8px; }"
                           " QLabel { color: white; }")
        self.lines = [QLabel() for _ in STEPS]
        # the only part that takes the mouse: a sibling over the card's corner (a child of
        # the card would be mouse-transparent with it)
        self.close_button = QToolButton(window.canvas)
        self.close_button.setText("×")
        self.close_button.setToolTip("Close the guide (it is not shown again)")
        self.close_button.setAutoRaise(True)
        self.close_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.close_button.setStyleSheet("QToolButton { color: white; font-size: 13pt; }")
        self.close_button.clicked.connect(self.dismiss)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 28, 10)
        layout.addWidget(QLabel("<b>First image? Three steps</b>"))
        for line in self.lines:
            line.setWordWrap(True)
            layout.addWidget(line)
        self.setFixedWidth(330)
        self._render()
        tool = window.sam_tool
        tool.answered.connect(lambda _: self.advance(1))
        tool.accepted.connect(lambda: self.advance(3))
        window.session.instances_changed.connect(self._stored)
        self.move(10, 10)
        self.show()
        self.raise_()
        self.close_button.adjustSize()
        self.close_button.move(10 + self.width() - self.close_button.width() - 4, 12)
        self.close_button.show()
        self.close_button.raise_()

    def _render(self) -> None:
        for i, (line, text) in enumerate(zip(self.lines, STEPS, strict=True)):
            mark = "✓" if i < self.step else ("➜" if i == self.step else "·")
            colour = "#9be29b" if i < self.step else ("white" if i == self.step else "#aaa")
            line.setText(f"<span style='color:{colour}'>{mark} {i + 1}. {text}</span>")
        self.adjustSize()

    def advance(self, step: int) -> None:
        """Step ``step`` is reached (1: a mask shown, 3: an instance stored)."""
        if step <= self.step or not self.isVisible():
            return
        self.step = min(step, len(STEPS))
        self._render()
        if self.step >= len(STEPS):
            self._finish()

    def _stored(self) -> None:
        if self.w.session.image is not None and self.w.session.instances():
            self.advance(3)

    def _finish(self) -> None:
        self.w.settings.guide_done = True
        QTimer.singleShot(DONE_CLOSE_MS, self.dismiss)

    def dismiss(self) -> None:
        self.w.settings.guide_done = True
        self.hide()
        self.close_button.hide()


def show_guide(window: MainWindow) -> FirstRunGuide | None:
    """The guide, unless it was seen."""
    if window.settings.guide_done:
        return None
    return FirstRunGuide(window)
