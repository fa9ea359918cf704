"""Moving through the images and the view from the keyboard: next / previous image (D / A),
next / previous image without instances (Shift+D / Shift+A), skip (Ctrl+K), done and next
(Ctrl+Shift+D), the "image 3 / 15" counter, hide / show all instances (H), zoom to the
selection (Z); and the keyboard focus: Esc in any panel (or Enter in a filter box) gives the
keyboard back to the canvas, so that the navigation keys work whatever was used last."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QComboBox,
    QLineEdit,
    QWidget,
)

from app.core.types import ImageRecord, ImageStatus

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


class Navigator(QObject):
    """Image order, the counter and the view commands of one window."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window

    # -- images ---------------------------------------------------------------------------
    def _order(self) -> tuple[list[ImageRecord], int | None]:
        """The images of the (filtered) list and the index of the shown one."""
        records = self.w.images_panel.visible_records()
        cur = self.w.session.image.id if self.w.session.image else None
        ids = [r.id for r in records]
        return records, (ids.index(cur) if cur in ids else None)

    def step(self, delta: int) -> None:
        """Next (D) / previous (A) image in the (filtered) list."""
        records, i = self._order()
        if not records:
            return
        j = 0 if i is None else i + delta
        if 0 <= j < len(records):
            self.w.show_image(records[j])
        else:
            self.w.show_message("Last image of the list" if delta > 0
                                else "First image of the list", 3000)

    def step_to(self, delta: int, wanted: Callable[[ImageRecord], bool], what: str) -> bool:
        """The next (``delta`` 1) or previous (-1) image that is ``wanted``, wrapping
        around; False (and a message) when there is none."""
        records, i = self._order()
        n = len(records)
        start = -1 if i is None and delta > 0 else (n if i is None else i)
        for k in range(1, n + 1):
            j = (start + delta * k) % n
            if j != i and wanted(records[j]):
                self.w.show_image(records[j])
                return True
        self.w.show_message(f"No other image {what}", 4000)
        return False

    def step_new(self, delta: int) -> None:
        """Shift+D / Shift+A: the next / previous image without instances yet."""
        self.step_to(delta, lambda r: r.status == ImageStatus.NEW, "without instances")

    def skip(self) -> None:
        """Ctrl+K: mark the image skipped and go to the next one to label."""
        if self.w.session.image is None:
            return
        self.w.session.set_status(ImageStatus.SKIPPED)
        self.w.show_message("Skipped", 3000)
        self._next_to_do()

    def done_next(self) -> None:
        """Ctrl+Shift+D: mark the image done and go to the next one that is not."""
        if self.w.session.image is None:
            return
        self.w.mark_done()
        self._next_to_do()

    def _next_to_do(self) -> None:
        todo = (ImageStatus.NEW, ImageStatus.IN_PROGRESS)
        self.step_to(1, lambda r: r.status in todo, "left to label")

    def update_counter(self) -> None:
        records, i = self._order()
        done = sum(r.status == ImageStatus.DONE for r in records)
        where = f"image {i + 1} / {len(records)}" if i is not None else \
            f"{len(records)} images"
        self.w.status.set_counter(f"{where} · {done} done")
        dock = self.w.findChild(QWidget, "dock_images")
        if dock is not None:
            dock.setWindowTitle(f"Images ({i + 1} / {len(records)})" if i is not None
                                else "Images")

    # -- view -----------------------------------------------------------------------------
    def toggle_instances(self) -> None:
        """H: hide every instance (to see the image), H again shows them."""
        layer = self.w.instance_layer
        layer.set_all_hidden(not layer.all_hidden)
        self.w.edit_tool.refresh()
        self.w.show_message("Instances hidden (H shows them)" if layer.all_hidden
                            else "Instances shown", 3000)

    def zoom_to_instances(self, ids: list[int]) -> None:
        rect = QRectF()
        for iid in ids:
            try:
                x0, y0, x1, y1 = self.w.project.instance(iid).geometry.bounds
            except Exception:  # noqa: BLE001 - deleted meanwhile
                continue
            rect = rect.united(QRectF(x0, y0, x1 - x0, y1 - y0))
        if not rect.isNull():
            self.w.canvas.zoom_to(rect)

    def zoom_to_selection(self) -> None:
        """Z: the selected instances, else the candidate mask, else the whole image."""
        ids = self.w.edit_tool.selected_ids()
        outline = self.w.mask_layer.outline()
        if ids:
            self.zoom_to_instances(ids)
        elif not outline.isEmpty():
            self.w.canvas.zoom_to(outline.boundingRect())
        else:
            self.w.canvas.fit()


class FocusKeeper(QObject):
    """Watches the panels' widgets: Esc gives the keyboard back to the canvas; Enter in a
    line edit or a list does too, after the widget's own action (a filter applied, the image
    opened); buttons and sliders never keep the keyboard (they are used with the mouse)."""

    def __init__(self, window: MainWindow, panels: list[QWidget]) -> None:
        super().__init__(window)
        self.w = window
        for panel in panels:
            self.watch(panel)

    def watch(self, root: QWidget) -> None:
        for widget in [root, *root.findChildren(QWidget)]:
            if isinstance(widget, QAbstractButton | QAbstractSlider):
                widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            widget.installEventFilter(self)
            if isinstance(widget, QComboBox):
                widget.activated.connect(lambda *_: self.w.canvas.setFocus())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) \
                or not isinstance(event, QKeyEvent):
            return super().eventFilter(obj, event)
        key = event.key()
        enter = key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and isinstance(
            obj, QLineEdit | QAbstractItemView)
        if kind == QEvent.Type.ShortcutOverride:
            if key == Qt.Key.Key_Escape or enter:
                event.accept()  # not the window's Esc / Enter: the widget's (below)
            return False
        if key == Qt.Key.Key_Escape:
            self.w.canvas.setFocus()
            return True
        if enter:  # the line edit's or the list's own Enter first, then the canvas
            QTimer.singleShot(0, self.w.canvas.setFocus)
        return False
