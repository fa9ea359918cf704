"""Labels: add, rename, recolour; the current label (hotkeys 1-9) for new instances."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QColorDialog,
    QHBoxLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import MaskLoopError
from app.ui.app_state import AppState


def colour_icon(colour: str) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(colour))
    return QIcon(pm)


class LabelsPanel(QWidget):
    """The project's labels; follows ``AppState``'s current label (``label_changed``) and
    sets it on a click."""

    message = Signal(str)  # an error to show in the status bar

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.session = state.session  # adds, renames and recolours labels
        self.list = QListWidget()
        self.list.itemClicked.connect(self._clicked)
        add, rename, recolour = QPushButton("Add"), QPushButton("Rename"), QPushButton("Colour")
        add.clicked.connect(self.add_label)
        rename.clicked.connect(self.rename_label)
        recolour.clicked.connect(self.recolour_label)
        buttons = QHBoxLayout()
        for b in (add, rename, recolour):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        state.labels_changed.connect(self.refresh)
        state.label_changed.connect(lambda _: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for lab in self.session.labels():
            key = f"  [{lab.hotkey}]" if lab.hotkey else ""
            item = QListWidgetItem(colour_icon(lab.colour), f"{lab.name}{key}")
            item.setData(Qt.ItemDataRole.UserRole, lab.name)
            self.list.addItem(item)
            if lab.name == self.state.label:
                item.setSelected(True)
                self.list.setCurrentItem(item)

    def _selected_name(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def _clicked(self, item: QListWidgetItem) -> None:
        self.state.set_label(item.data(Qt.ItemDataRole.UserRole))

    def add_label(self) -> None:
        name, ok = QInputDialog.getText(self, "New label", "Label name:")
        if ok and name.strip():
            try:
                label = self.session.add_label(name.strip())
            except MaskLoopError as exc:
                self.message.emit(str(exc))
                return
            self.state.set_label(label.name)  # the new label is the one used next

    def rename_label(self) -> None:
        old = self._selected_name()
        if old is None:
            return
        name, ok = QInputDialog.getText(self, "Rename label", "New name:", text=old)
        if ok and name.strip() and name.strip() != old:
            try:
                self.session.update_label(old, new_name=name.strip())
            except MaskLoopError as exc:
                self.message.emit(str(exc))

    def recolour_label(self) -> None:
        name = self._selected_name()
        if name is None:
            return
        colour = QColorDialog.getColor(QColor(self.session.colour_of(name)), self, "Colour")
        if colour.isValid():
            self.session.update_label(name, colour=colour.name())
