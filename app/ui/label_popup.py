"""The label popup: on accept (Enter) a small list opens at the object, as in labelme and
X-AnyLabeling. Type to filter (a label's hotkey digit finds it too), arrows + Enter to pick,
type a new name and Enter to create it; the current label and then the recently used ones
come first, so Enter, Enter keeps the last label. Esc goes back to the candidate (nothing is
stored). The setting ``label_popup`` off gives the old behaviour: Enter stores the current
label at once."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRect, Qt, Signal
from PySide6.QtGui import QCloseEvent, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import MaskLoopError
from app.core.types import Geometry, Label, Source
from app.ui.app_state import AppState
from app.ui.canvas.layers import MaskLayer
from app.ui.canvas.view import CanvasView
from app.ui.panels.labels_panel import colour_icon
from app.ui.tools.sam_tool import SamTool

RECENT_KEY = "recent_labels"  # project setting: label names, most recent first
MAX_RECENT = 20
VISIBLE_ROWS = 8
_MOVES = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_PageUp: -VISIBLE_ROWS,
          Qt.Key.Key_PageDown: VISIBLE_ROWS}


def ranked(labels: list[Label], order: list[str], text: str) -> list[Label]:
    """The labels to list for ``text``: a label whose hotkey is ``text`` first, then names
    that start with it, then names that contain it (case-insensitive); in ``order`` (names,
    first first) and then the project's order within each group."""
    pos = {name: i for i, name in enumerate(order)}
    base = sorted(labels, key=lambda lab: pos.get(lab.name, len(pos)))
    t = text.strip().lower()
    if not t:
        return base
    hot = [lab for lab in base if lab.hotkey == t]
    starts = [lab for lab in base if lab.name.lower().startswith(t) and lab not in hot]
    within = [lab for lab in base if t in lab.name.lower() and lab not in hot + starts]
    return hot + starts + within


class LabelPopup(QFrame):
    """A filter box over a list of labels; ``chosen(name)`` (maybe a new name) or
    ``cancelled`` once, then it closes."""

    chosen = Signal(str)
    cancelled = Signal()

    def __init__(self, labels: list[Label], order: list[str],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.labels, self.order = labels, order
        self.done = False
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("label: type to filter or to name a new one")
        self.edit.installEventFilter(self)
        self.list = QListWidget()
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # typing stays in the box
        self.list.itemClicked.connect(self._pick)
        hint = QLabel("Enter pick · ↑↓ move · Esc back")
        hint.setStyleSheet("color: gray; font-size: 9pt")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.edit)
        layout.addWidget(self.list)
        layout.addWidget(hint)
        self.edit.textChanged.connect(self._fill)
        self._fill("")
        row = self.list.sizeHintForRow(0) if self.list.count() else 20
        self.list.setFixedHeight(row * VISIBLE_ROWS + 6)
        self.setFixedWidth(260)

    # -- contents -------------------------------------------------------------------------
    def _fill(self, text: str) -> None:
        self.list.clear()
        for lab in ranked(self.labels, self.order, text):
            key = f"   [{lab.hotkey}]" if lab.hotkey else ""
            item = QListWidgetItem(colour_icon(lab.colour), f"{lab.name}{key}")
            item.setData(Qt.ItemDataRole.UserRole, lab.name)
            self.list.addItem(item)
        name = text.strip()
        if name and all(lab.name.lower() != name.lower() for lab in self.labels):
            item = QListWidgetItem(f"+ new label “{name}”")
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def names(self) -> list[str]:
        """What the list offers now, top first (tests, the keyboard session)."""
        return [self.list.item(r).data(Qt.ItemDataRole.UserRole)
                for r in range(self.list.count())]

    # -- keys -----------------------------------------------------------------------------
    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = Qt.Key(event.key())
            if key in _MOVES and self.list.count():
                row = self.list.currentRow() + _MOVES[key]
                self.list.setCurrentRow(max(0, min(self.list.count() - 1, row)))
                return True
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.pick_current()
                return True
            if key == Qt.Key.Key_Escape:
                self.close()
                return True
            if key == Qt.Key.Key_Tab and self.list.currentItem() is not None:
                self.edit.setText(self.list.currentItem().data(Qt.ItemDataRole.UserRole))
                return True
        return super().eventFilter(obj, event)

    def pick_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self._pick(item)

    def _pick(self, item: QListWidgetItem) -> None:
        self.done = True
        self.close()
        self.chosen.emit(item.data(Qt.ItemDataRole.UserRole))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        super().closeEvent(event)
        if not self.done:
            self.done = True
            self.cancelled.emit()

    # -- placement ------------------------------------------------------------------------
    def open_at(self, pos: QPoint) -> None:
        """Show with the top-left corner near ``pos`` (global), inside its screen."""
        self.adjustSize()
        screen = QGuiApplication.screenAt(pos) or QGuiApplication.primaryScreen()
        area = screen.availableGeometry() if screen is not None else QRect(0, 0, 1366, 768)
        x = min(max(area.left(), pos.x() + 12), area.right() - self.width())
        y = pos.y() + 12
        if y + self.height() > area.bottom():
            y = pos.y() - 12 - self.height()  # above the object instead
        self.move(x, max(area.top(), y))
        self.show()
        self.edit.setFocus()


class LabelChooser(QObject):
    """The window's side: which labels in which order, creating a new one, remembering the
    recent ones (in the project), and where the popup opens."""

    def __init__(self, state: AppState, canvas: CanvasView, sam_tool: SamTool,
                 mask_layer: MaskLayer, parent: QWidget) -> None:
        super().__init__(parent)
        self.state, self.canvas, self.sam_tool, self.mask_layer = state, canvas, sam_tool, \
            mask_layer
        self.host = parent  # the popup's parent; it takes the keyboard back after the popup
        self.popup: LabelPopup | None = None

    @property
    def enabled(self) -> bool:
        return self.state.label_popup

    def order(self) -> list[str]:
        """The current label, then the recently used ones."""
        session = self.state.session
        recent = session.project.get_setting(RECENT_KEY, []) or []
        names = [session.current_label, *[n for n in recent if isinstance(n, str)]]
        return list(dict.fromkeys(names))

    def remember(self, name: str) -> None:
        order = [name, *[n for n in self.order() if n != name]][:MAX_RECENT]
        self.state.project.set_setting(RECENT_KEY, order)

    def ask(self, anchor: QPointF | None, on_chosen: Callable[[str], None],
            on_cancel: Callable[[], None] | None = None) -> None:
        """Ask for the label of a new instance at ``anchor`` (image coordinates), then
        call ``on_chosen(name)`` with an existing label; without the popup at once with the
        current label."""
        if not self.enabled:
            on_chosen(self.state.label)
            return
        canvas = self.canvas
        at = canvas.mapFromScene(anchor) if anchor is not None else canvas.rect().center()
        popup = LabelPopup(self.state.session.labels(), self.order(), self.host)
        popup.chosen.connect(lambda name: self._chosen(name, on_chosen, on_cancel))
        popup.cancelled.connect(lambda: self._cancelled(on_cancel))
        self.popup = popup
        popup.open_at(canvas.viewport().mapToGlobal(at))

    def accept_candidate(self) -> None:
        """Enter with the SAM tool: the label of the chosen candidate, asked at its side."""
        tool = self.sam_tool
        if not tool.state.has_candidate():
            tool.accept()  # says there is nothing to accept
            return
        rect = self.mask_layer.outline().boundingRect()
        points = tool.state.points
        anchor = QPointF(rect.right(), rect.center().y()) if not rect.isNull() else \
            QPointF(points[-1].x, points[-1].y) if points else None
        def chosen(name: str) -> None:
            tool.accept(name)

        self.ask(anchor, chosen)

    def store_shape(self, geom: Geometry, restore: Callable[[], None] | None = None) -> None:
        """A manual polygon or box is finished: store it with the label asked for; Esc in
        the popup calls ``restore`` (the polygon is drawn again, to finish or drop)."""
        x0, y0, x1, y1 = geom.bounds
        self.ask(QPointF(x1, (y0 + y1) / 2),
                 lambda name: self.state.session.add_instance(geom, Source.MANUAL, label=name),
                 restore)

    def _chosen(self, name: str, on_chosen: Callable[[str], None],
                on_cancel: Callable[[], None] | None) -> None:
        self.popup = None
        session = self.state.session
        if session.project.label(name) is None:
            try:
                session.add_label(name)
            except MaskLoopError as exc:
                self.state.say(str(exc))
                self._cancelled(on_cancel)
                return
        self.state.set_label(name)
        self.remember(name)
        self._keyboard_back()
        on_chosen(name)

    def _keyboard_back(self) -> None:
        """The popup is gone: the window and its canvas take the keyboard again."""
        self.host.activateWindow()
        self.canvas.setFocus()

    def _cancelled(self, on_cancel: Callable[[], None] | None) -> None:
        self.popup = None
        self._keyboard_back()
        if on_cancel is not None:
            on_cancel()
