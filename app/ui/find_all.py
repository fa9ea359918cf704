"""The "Find all: ..." box of the toolbar: a text query (e.g. "person") for backends that
understand text (Roboflow SAM3 concept segmentation, Segmind). Enter sends it; the answer
comes back as suggestions, stored in the project as proposals to review (app/ui/proposals.py,
app/ui/review.py)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QWidget

_SUBMIT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class QueryEdit(QLineEdit):
    """A line edit that keeps Enter for itself: the window's Enter shortcut (accept the
    mask) must not take it while the person types a query."""

    def event(self, e: QEvent) -> bool:
        if (e.type() == QEvent.Type.ShortcutOverride and isinstance(e, QKeyEvent)
                and e.key() in _SUBMIT_KEYS):
            e.accept()
            return True
        return super().event(e)


class FindAllBox(QWidget):
    """"Find all:" and a line edit; ``submitted(text)`` on Enter with a non-empty text."""

    submitted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.edit = QueryEdit()
        self.edit.setPlaceholderText("e.g. person, then Enter")
        self.edit.setClearButtonEnabled(True)
        self.edit.setMinimumWidth(160)
        self.edit.setToolTip("Find every instance of a text in this image (the backend must "
                             "understand text); the results are kept as proposals to accept or "
                             "reject (Ctrl+R reviews them)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 0, 0)
        layout.addWidget(QLabel("Find all:"))
        layout.addWidget(self.edit)
        self.edit.returnPressed.connect(self._submit)

    def _submit(self) -> None:
        text = self.edit.text().strip()
        if text:
            self.submitted.emit(text)
