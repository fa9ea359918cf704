"""F1: every key and mouse action in one readable table, grouped as the menus are, with a
filter box ("zoom", "label", "Ctrl"). Built from the window's actions, so it never goes out
of date; fits a 1366 x 768 screen (the table scrolls)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLineEdit,
    QMenu,
    QMenuBar,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.dialogs.fit import fit_to_screen

MOUSE = [("Left click", "Add a positive point (SAM) / a vertex (Polygon) / select (Edit)"),
         ("Right click, Shift+click", "Add a negative point (SAM)"),
         ("Left drag", "Draw a box prompt (SAM) / a box (Box) / move a vertex or shape (Edit)"),
         ("Rest the pointer", "Preview the mask a click would give (fast SAM2 backends)"),
         ("Wheel", "Zoom at the pointer"),
         ("Middle drag, Space+drag", "Pan"),
         ("Double click an instance in the list", "Zoom to it"),
         ("Right click an instance in the list", "Relabel, delete, hide, zoom to")]
POPUP = [("Type", "Filter the labels, or name a new label"),
         ("↑ ↓  Page Up / Down", "Move in the list"),
         ("Enter", "Use the highlighted label (the first: the current / last one)"),
         ("Tab", "Complete the name"),
         ("Esc", "Back to the candidate (nothing stored)")]
PANELS = [("Esc", "Give the keyboard back to the canvas (from any panel or box)"),
          ("Enter in the image filter", "Open the first image it lets through")]


def key_rows(menu_bar: QMenuBar) -> list[tuple[str, list[tuple[str, str]]]]:
    """(group, [(keys, what)]) for every menu of ``menu_bar`` and the mouse."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for top in menu_bar.actions():
        menu = top.menu()
        if not isinstance(menu, QMenu):
            continue
        rows = []
        for action in menu.actions():
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText)
                             for s in action.shortcuts())
            if keys and action.isVisible():
                rows.append((keys, action.text().replace("&", "")))
        if rows:
            groups.append((top.text().replace("&", ""), rows))
    groups.append(("Mouse", MOUSE))
    groups.append(("Label popup (after Enter)", POPUP))
    groups.append(("Panels", PANELS))
    return groups


class HelpDialog(QDialog):
    def __init__(self, menu_bar: QMenuBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keys and mouse")
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("filter: zoom, label, Ctrl…")
        self.filter.setClearButtonEnabled(True)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Key", "Does"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        bold = QFont(self.font())
        bold.setBold(True)
        for group, rows in key_rows(menu_bar):
            r = self.table.rowCount()
            self.table.insertRow(r)
            title = QTableWidgetItem(group)
            title.setFont(bold)
            self.table.setItem(r, 0, title)
            self.table.setSpan(r, 0, 1, 2)
            for keys, what in rows:
                r = self.table.rowCount()
                self.table.insertRow(r)
                self.table.setItem(r, 0, QTableWidgetItem(keys))
                self.table.setItem(r, 1, QTableWidgetItem(what))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.filter)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.filter.textChanged.connect(self._apply_filter)
        self.resize(720, 640)
        fit_to_screen(self)
        self.filter.setFocus()

    def rows(self) -> list[tuple[str, str]]:
        """The (key, what) rows shown now (tests)."""
        out = []
        for r in range(self.table.rowCount()):
            what = self.table.item(r, 1)
            keys = self.table.item(r, 0)
            if what is not None and keys is not None and not self.table.isRowHidden(r):
                out.append((keys.text(), what.text()))
        return out

    def _apply_filter(self, text: str) -> None:
        t = text.strip().lower()
        title_row = -1
        shown_in_group = False
        for r in range(self.table.rowCount()):
            what = self.table.item(r, 1)
            if what is None:  # a group title: shown when one of its rows is
                if title_row >= 0:
                    self.table.setRowHidden(title_row, not shown_in_group)
                title_row, shown_in_group = r, False
                continue
            keys = self.table.item(r, 0)
            hit = (not t or t in what.text().lower()
                   or (keys is not None and t in keys.text().lower()))
            self.table.setRowHidden(r, not hit)
            shown_in_group = shown_in_group or hit
        if title_row >= 0:
            self.table.setRowHidden(title_row, not shown_in_group)


def show_help(menu_bar: QMenuBar, parent: QWidget | None = None) -> HelpDialog:
    """F1: the table of every key and mouse action, non-modal."""
    dlg = HelpDialog(menu_bar, parent)
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.open()
    return dlg
