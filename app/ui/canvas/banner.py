"""A line of text over the top of the canvas that stays while it is true (segment
everything's proposals and their keys), unlike the status bar's messages, which time out."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLabel, QWidget

MARGIN = 8


class Banner(QLabel):
    """Shown with ``say(text)``, gone with ``say("")``; never takes a click."""

    def __init__(self, canvas: QWidget) -> None:
        super().__init__(canvas)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet("QLabel { background: rgba(20, 20, 20, 200); color: white; "
                           "border-radius: 6px; padding: 6px 10px; }")
        self.hide()
        canvas.installEventFilter(self)

    def say(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))
        if text:
            self._place()
            self.raise_()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False

    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        width = min(parent.width() - 2 * MARGIN, 760)
        self.setFixedWidth(max(120, width))
        self.adjustSize()
        self.move((parent.width() - self.width()) // 2, MARGIN)
