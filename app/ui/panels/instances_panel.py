"""The instances of the current image: visibility, opacity, selection, delete/merge/subtract,
and the simplification slider (pixels) applied to the selected instances. Each row shows the
instance's own shade; a right click offers relabel, delete, hide and zoom, a double click
zooms to the instance."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.core.types import Instance
from app.ui.app_state import AppState
from app.ui.panels.labels_panel import colour_icon
from app.ui.session import AnnotationSession

STEPS = 20  # slider steps per pixel of simplification tolerance


class InstancesPanel(QWidget):
    selection_changed = Signal(list)  # instance ids picked in the list (AppState is told)
    visibility_changed = Signal(int, bool)
    opacity_changed = Signal(float)
    tolerance_changed = Signal(float)  # slider released: simplify the selected instances
    delete_clicked = Signal()
    merge_clicked = Signal()
    subtract_clicked = Signal()
    relabel_requested = Signal(list, str)  # ids, label
    delete_requested = Signal(list)
    hide_requested = Signal(list, bool)  # ids, hidden
    zoom_requested = Signal(list)

    def __init__(self, session: AnnotationSession, app_state: AppState,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.state = app_state
        self.hidden: set[int] = set()
        self._rows: list[tuple[int | None, str, str, bool]] = []  # what the list shows
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.itemSelectionChanged.connect(self._selection)
        self.list.itemChanged.connect(self._checked)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.itemDoubleClicked.connect(
            lambda item: self.zoom_requested.emit([item.data(Qt.ItemDataRole.UserRole)]))
        self.menu: QMenu | None = None  # the open context menu (tests drive it)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(round(app_state.opacity * 100))
        self.opacity.valueChanged.connect(self._opacity_moved)
        self.tolerance = QSlider(Qt.Orientation.Horizontal)
        self.tolerance.setRange(0, 100)  # twentieths of a pixel: 0 to 5 px
        self.tolerance_label = QLabel()
        self.tolerance.valueChanged.connect(self._show_tolerance)
        self.tolerance.sliderReleased.connect(
            lambda: self.tolerance_changed.emit(self.tolerance.value() / STEPS))
        self._show_tolerance(self.tolerance.value())
        self.set_tolerance(app_state.tolerance)
        app_state.tolerance_changed.connect(self.set_tolerance)
        app_state.opacity_changed.connect(self._show_opacity)
        app_state.selection_changed.connect(self.select)
        buttons = QHBoxLayout()
        for text, signal in (("Delete", self.delete_clicked), ("Merge", self.merge_clicked),
                             ("Subtract", self.subtract_clicked)):
            b = QPushButton(text)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keyboard stays on the canvas
            b.clicked.connect(signal.emit)
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("Opacity"))
        layout.addWidget(self.opacity)
        layout.addWidget(self.tolerance_label)
        layout.addWidget(self.tolerance)
        for slider in (self.opacity, self.tolerance):
            slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._updating = False

    def _show_tolerance(self, value: int) -> None:
        self.tolerance_label.setText(f"Simplification: {value / STEPS:.2f} px")

    def set_tolerance(self, pixels: float) -> None:
        self.tolerance.setValue(round(pixels * STEPS))

    def _opacity_moved(self, value: int) -> None:
        self.opacity_changed.emit(value / 100)
        self.state.set_opacity(value / 100)

    def _show_opacity(self, opacity: float) -> None:
        value = round(opacity * 100)
        if self.opacity.value() != value:
            self.opacity.setValue(value)

    def set_instances(self, instances: list[Instance],
                      shades: dict[int, QColor] | None = None) -> None:
        """List ``instances``, each with its shade on the canvas (default: its label's).
        Rows that did not change are kept: an accept appends one row, not a new list."""
        rows: list[tuple[int | None, str, str, bool]] = []
        for inst in instances:
            score = f"  {inst.score:.2f}" if inst.score is not None else ""
            colour = (shades or {}).get(int(inst.id or 0)) or self.session.colour_of(inst.label)
            rows.append((inst.id, f"#{inst.id} {inst.label}  ({inst.source.value}){score}",
                         QColor(colour).name(), inst.id not in self.hidden))
        keep = 0
        if self.list.count() == len(self._rows):
            while keep < min(len(rows), len(self._rows)) and rows[keep] == self._rows[keep]:
                keep += 1
        else:
            self._rows = []
        self._updating = True
        if keep == 0:
            self.list.clear()
        else:
            while self.list.count() > keep:
                self.list.takeItem(self.list.count() - 1)
        for iid, text, colour_name, shown in rows[keep:]:
            item = QListWidgetItem(colour_icon(colour_name), text)
            item.setData(Qt.ItemDataRole.UserRole, iid)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self._rows = rows
        self._updating = False

    def select(self, ids: list[int]) -> None:
        self._updating = True
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setSelected(item.data(Qt.ItemDataRole.UserRole) in ids)
        self._updating = False

    def _selection(self) -> None:
        if not self._updating:
            ids = [i.data(Qt.ItemDataRole.UserRole) for i in self.list.selectedItems()]
            self.selection_changed.emit(ids)
            self.state.set_selection(ids)

    def _checked(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        iid = item.data(Qt.ItemDataRole.UserRole)
        visible = item.checkState() == Qt.CheckState.Checked
        (self.hidden.discard if visible else self.hidden.add)(iid)
        self.visibility_changed.emit(iid, visible)

    def ids(self) -> list[int]:
        return [self.list.item(r).data(Qt.ItemDataRole.UserRole)
                for r in range(self.list.count())]

    def _context_menu(self, pos: QPoint) -> None:
        """Relabel, delete, hide / show, zoom to: the instance under the pointer, or the
        selection when the pointer is on a selected row."""
        item = self.list.itemAt(pos)
        if item is None:
            return
        if not item.isSelected():
            self.list.clearSelection()
            item.setSelected(True)  # the selection follows (selection_changed)
        ids = [i.data(Qt.ItemDataRole.UserRole) for i in self.list.selectedItems()]
        self.menu = menu = QMenu(self)
        relabel = menu.addMenu("Relabel")
        for lab in self.session.labels():
            key = f"\t{lab.hotkey}" if lab.hotkey else ""
            action = relabel.addAction(colour_icon(lab.colour), f"{lab.name}{key}")
            action.triggered.connect(lambda *_, n=lab.name: self.relabel_requested.emit(ids, n))
        menu.addAction("Delete", lambda: self.delete_requested.emit(ids))
        hidden = all(i in self.hidden for i in ids)
        menu.addAction("Show" if hidden else "Hide",
                       lambda: self.hide_requested.emit(ids, not hidden))
        menu.addAction("Zoom to (double click)", lambda: self.zoom_requested.emit(ids))
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def set_hidden(self, ids: list[int], hidden: bool) -> None:
        """Tick or untick rows (as a click on their box would)."""
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) in ids:
                item.setCheckState(Qt.CheckState.Unchecked if hidden
                                   else Qt.CheckState.Checked)
