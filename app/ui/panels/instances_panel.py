"""The instances of the current image: visibility, opacity, selection, delete/merge/subtract,
and the simplification slider (pixels) applied to the selected instances. Each row shows the
instance's own shade; a right click offers relabel, delete, hide and zoom, a double click
zooms to the instance."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from itertools import pairwise

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QColor, QIcon
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

from app.core.lru import BoundedCache
from app.core.types import Instance
from app.ui.app_state import AppState
from app.ui.panels.labels_panel import colour_icon
from app.ui.session import AnnotationSession

STEPS = 20  # slider steps per pixel of simplification tolerance
ICONS_KEPT = 1024  # shade icons kept by the instance list
Row = tuple[int | None, str, str, bool]  # instance id, text, colour name, ticked (shown)


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
        self._rows: list[Row] = []  # what the list shows, row by row
        self._by_id = True  # the rows are in id order (as the window lists them)
        self._items: dict[int | None, QListWidgetItem] = {}  # instance id -> its row's item
        # instance id -> (the instance, shade and tick its row was made of, the row)
        self._made: dict[int | None, tuple[Instance, QColor | None, bool, Row]] = {}
        self.made = 0  # rows made or rewritten (for tests: an accept makes one)
        self._icons: BoundedCache[str, QIcon] = BoundedCache(ICONS_KEPT)  # colour -> icon
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.installEventFilter(self)
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
        Only the rows that changed are touched: an accept adds one row, a delete removes
        one, an unchanged instance (the same object, shade and tick as last time) costs a
        look-up, not a new row text (``made`` counts the rows made or rewritten)."""
        rows = [self._row(inst, (shades or {}).get(int(inst.id or 0))) for inst in instances]
        self._updating = True
        try:
            if rows != self._rows or self.list.count() != len(rows):
                if self.list.count() != len(self._rows) or not self._patch(rows):
                    self._rebuild(rows)
                self._rows = rows
                self._by_id = all(isinstance(a[0], int) and isinstance(b[0], int)
                                  and a[0] < b[0] for a, b in pairwise(rows))
        finally:
            self._updating = False
        live = {row[0] for row in rows}
        if len(self._made) > len(live):
            self._made = {iid: v for iid, v in self._made.items() if iid in live}

    def patch_instances(self, gone: Iterable[int], instances: Iterable[Instance],
                        shades: dict[int, QColor]) -> bool:
        """Remove the rows of the ids ``gone``, rewrite the rows of ``instances`` already
        listed and add the others in their place by id, leaving every other row alone: a
        delete, an edit or an accept costs its own rows, not the list's. False, with nothing
        done, when the list is not as last set or not in id order (then ``set_instances``
        lists them all)."""
        if self.list.count() != len(self._rows) or not self._by_id or None in self._items:
            return False
        doomed = sorted({self._index(iid) for iid in gone}, reverse=True)
        if -1 in doomed:
            return False  # not listed
        self._updating = True
        try:
            for index in doomed:
                iid = self._rows.pop(index)[0]
                self.list.takeItem(index)
                self._items.pop(iid, None)
                self._made.pop(iid, None)
            for inst in instances:
                row = self._row(inst, shades.get(int(inst.id or 0)))
                item = self._items.get(row[0])
                if item is None:
                    index = bisect_left(self._rows, row[0] or 0, key=_row_id)
                    item = self._new_item(row)
                    self.list.insertItem(index, item)
                    self._fix_size(item)
                    self._rows.insert(index, row)
                else:
                    index = self._index(row[0] or 0)
                    if self._rows[index] != row:
                        self._restyle(item, row, self._rows[index])
                        self._rows[index] = row
        finally:
            self._updating = False
        return True

    def _index(self, iid: int) -> int:
        """The row of ``iid`` (the rows are in id order), -1 when it has none."""
        index = bisect_left(self._rows, iid, key=_row_id)
        found = index < len(self._rows) and self._rows[index][0] == iid
        return index if found else -1

    def _row(self, inst: Instance, colour: QColor | None) -> Row:
        """The row of ``inst``: made again only when the instance, its shade or its tick
        changed since it was last made."""
        shown = inst.id not in self.hidden
        made = self._made.get(inst.id)
        if made is not None and made[0] is inst and made[1] is colour and made[2] == shown:
            return made[3]
        score = f"  {inst.score:.2f}" if inst.score is not None else ""
        name = QColor(colour or self.session.colour_of(inst.label)).name()
        row = (inst.id, f"#{inst.id} {inst.label}  ({inst.source.value}){score}", name, shown)
        self._made[inst.id] = (inst, colour, shown, row)
        return row

    def _patch(self, rows: list[Row]) -> bool:
        """Turn the list into ``rows`` row by row: the instances gone lose their row, new
        ones get one in their place, changed ones a new text, icon or tick. False (nothing
        changed) when the rows kept would change order (instances are listed by id, so they
        never do)."""
        new_ids = {row[0] for row in rows}
        old_ids = {row[0] for row in self._rows}
        if len(new_ids) != len(rows) or len(old_ids) != len(self._rows):
            return False  # an id twice: rows cannot be told apart by id
        kept = [row[0] for row in self._rows if row[0] in new_ids]
        if kept != [row[0] for row in rows if row[0] in old_ids]:
            return False
        for index in range(len(self._rows) - 1, -1, -1):
            iid = self._rows[index][0]
            if iid not in new_ids:
                self.list.takeItem(index)
                self._items.pop(iid, None)
        old = {row[0]: row for row in self._rows}
        for index, row in enumerate(rows):
            before = old.get(row[0])
            if before is None:
                item = self._new_item(row)
                self.list.insertItem(index, item)
                self._fix_size(item)
            elif before != row:
                self._restyle(self._items[row[0]], row, before)
        return True

    def _rebuild(self, rows: list[Row]) -> None:
        self.list.clear()
        self._items = {}
        for row in rows:
            item = self._new_item(row)
            self.list.addItem(item)
            self._fix_size(item)

    def _new_item(self, row: Row) -> QListWidgetItem:
        iid, text, colour_name, shown = row
        item = QListWidgetItem(self._icon(colour_name), text)
        item.setData(Qt.ItemDataRole.UserRole, iid)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
        self._items[iid] = item
        self.made += 1
        return item

    def _restyle(self, item: QListWidgetItem, row: Row, before: Row) -> None:
        _, text, colour_name, shown = row
        if text != before[1]:
            item.setText(text)
            self._fix_size(item)
        if colour_name != before[2]:
            item.setIcon(self._icon(colour_name))
        if shown != before[3]:
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
        self.made += 1

    def _icon(self, colour_name: str) -> QIcon:
        """One icon per shade (made once per colour, however many rows show it)."""
        icon = self._icons.get(colour_name)
        if icon is None:
            icon = colour_icon(colour_name)
            self._icons.put(colour_name, icon)
        return icon

    def _fix_size(self, item: QListWidgetItem) -> None:
        """Give the row its size once, as the list's delegate measures it: the list lays
        all rows out again after every insert or removal and would otherwise measure the
        text of every row each time (an accept cost grew with the number of rows)."""
        item.setData(Qt.ItemDataRole.SizeHintRole, None)
        item.setSizeHint(self.list.sizeHintForIndex(self.list.indexFromItem(item)))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """The list's font or style changed: the rows' sizes are measured again."""
        if watched is self.list and event.type() in (QEvent.Type.FontChange,
                                                     QEvent.Type.StyleChange):
            for item in self._items.values():
                self._fix_size(item)
        return super().eventFilter(watched, event)

    def select(self, ids: list[int]) -> None:
        """Select exactly the rows of ``ids``: only rows whose state changes are touched."""
        wanted = set(ids)
        self._updating = True
        try:
            for item in self.list.selectedItems():
                if item.data(Qt.ItemDataRole.UserRole) not in wanted:
                    item.setSelected(False)
            for iid in wanted:
                found = self._items.get(iid)
                if found is not None and not found.isSelected():
                    found.setSelected(True)
        finally:
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


def _row_id(row: Row) -> int:
    return row[0] or 0
