"""The image list: thumbnails (made off the GUI thread), status, a filter; unreadable files
are listed too, with their error: those that could not be registered, and registered images
that cannot be decoded (a truncated JPEG: its header reads), which a check started with
``check`` finds off the GUI thread. An image with proposals waiting for review says how many
("◇3"), and the filter "to review" lists only those."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QItemSelectionModel, QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.types import ImageRecord, ImageStatus
from app.ui.tasks import TaskRunner

THUMB = 64
TO_REVIEW = "to review"  # the filter entry: images with pending proposals
STATUS_MARK = {ImageStatus.NEW: "○", ImageStatus.IN_PROGRESS: "◐", ImageStatus.DONE: "●",
               ImageStatus.SKIPPED: "–"}


def make_thumbnail(path: Path) -> QImage:
    """A small QImage of the file (QImage is safe off the GUI thread; QPixmap is not).
    JPEGs are decoded at reduced size (PIL's draft mode), so big folders list quickly."""
    from PIL import Image, ImageOps

    from app.core.images import IMAGE_FORMATS
    from app.ui.canvas.convert import rgb_to_qimage

    try:
        with Image.open(path, formats=IMAGE_FORMATS) as im:  # never EPS (Ghostscript)
            im.draft("RGB", (THUMB * 2, THUMB * 2))
            rgb = ImageOps.exif_transpose(im).convert("RGB")
            rgb.thumbnail((THUMB, THUMB))
            return rgb_to_qimage(np.asarray(rgb))
    except Exception:  # noqa: BLE001 - unusual formats: the core loader knows them all
        from app.core.images import load_image

        pixels = load_image(path)
        step = max(1, max(pixels.shape[:2]) // THUMB)
        return rgb_to_qimage(pixels[::step, ::step])


class ImagesPanel(QWidget):
    activated = Signal(object)  # ImageRecord, or str (path of an unreadable file)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = TaskRunner(1, self)  # thumbnails never delay the current image
        self.filter_status = QComboBox()
        self.filter_status.addItems(["all", *[s.value for s in ImageStatus], TO_REVIEW])
        self.filter_text = QLineEdit()
        self.filter_text.setPlaceholderText("filter by name")
        self.list = QListWidget()
        self.list.setIconSize(QSize(THUMB, THUMB))
        # Ctrl/Shift+click selects several (Export: "the selected images")
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._clicked)
        self.filter_status.currentTextChanged.connect(lambda _: self._apply_filter())
        self.filter_text.textChanged.connect(lambda _: self._apply_filter())
        self.filter_text.returnPressed.connect(self._open_first_shown)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.filter_status)
        layout.addWidget(self.filter_text)
        layout.addWidget(self.list)
        self.records: list[ImageRecord] = []
        self.problems: dict[int, str] = {}  # image id -> why it cannot be decoded
        self.pending: dict[int, int] = {}  # image id -> proposals waiting for review
        self._unreadable: list[tuple[str, str]] = []
        self._root = Path()
        self._thumbs: dict[str, QIcon] = {}
        self._pending: set[str] = set()
        self._checks = TaskRunner(1, self)  # never delays the thumbnails

    def add_section(self, widget: QWidget) -> None:
        """A part shown under the list (the review's counts and filters)."""
        layout = self.layout()
        assert layout is not None
        layout.addWidget(widget)

    def check(self, find_problems: Callable[..., dict[int, str]]) -> None:
        """Run ``find_problems(progress=, cancel=)`` (image id -> problem) off the GUI thread
        and mark what it finds."""
        self._checks.start(find_problems, with_progress=True, on_result=self.set_problems)

    def set_problems(self, problems: dict[int, str]) -> None:
        if problems != self.problems:
            self.problems = dict(problems)
            self.set_images(self.records, self._unreadable, self._root)

    def wait(self, msecs: int) -> None:
        """Cancel the check and wait for the background work (the window closes)."""
        self._checks.wait(msecs)
        self.tasks.wait(msecs)

    def set_images(self, records: list[ImageRecord], unreadable: list[tuple[str, str]],
                   root: Path) -> None:
        current = self.current_id()
        self.records, self._unreadable, self._root = records, unreadable, root
        self.list.clear()
        for rec in records:
            item = QListWidgetItem(self._text(rec))
            item.setData(Qt.ItemDataRole.UserRole, rec)
            item.setToolTip(f"{rec.path}\n{rec.width}×{rec.height}, {rec.status}")
            problem = self.problems.get(rec.id or 0)
            if problem is not None:  # like the files that could not be registered
                item.setText(f"⚠ {rec.path}")
                item.setToolTip(problem)
            elif rec.content_hash in self._thumbs:
                item.setIcon(self._thumbs[rec.content_hash])
            else:
                self._request_thumb(rec, root / rec.path)
            self.list.addItem(item)
            if rec.id == current:
                self.list.setCurrentItem(item)
        for path, message in unreadable:
            item = QListWidgetItem(f"⚠ {Path(path).name}")
            item.setData(Qt.ItemDataRole.UserRole, f"{path}: {message}")
            item.setToolTip(message)
            self.list.addItem(item)
        self._apply_filter()

    def _text(self, rec: ImageRecord) -> str:
        waiting = self.pending.get(rec.id or 0, 0)
        return f"{STATUS_MARK[ImageStatus(rec.status)]} {rec.path}" + (
            f"  ◇{waiting}" if waiting else "")

    def set_pending(self, pending: dict[int, int]) -> None:
        """Proposals waiting for review, by image id (the review's counts)."""
        if pending == self.pending:
            return
        self.pending = dict(pending)
        for row in range(self.list.count()):
            item = self.list.item(row)
            rec = item.data(Qt.ItemDataRole.UserRole)
            if isinstance(rec, ImageRecord) and (rec.id or 0) not in self.problems:
                item.setText(self._text(rec))
        self._apply_filter()

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        rec = item.data(Qt.ItemDataRole.UserRole) if item else None
        return rec.id if isinstance(rec, ImageRecord) else None

    def show_current(self, image_id: int | None) -> None:
        for row in range(self.list.count()):
            rec = self.list.item(row).data(Qt.ItemDataRole.UserRole)
            if isinstance(rec, ImageRecord) and rec.id == image_id:
                keep = QItemSelectionModel.SelectionFlag.NoUpdate  # a multiple selection
                flag = keep if self.list.item(row).isSelected() else \
                    QItemSelectionModel.SelectionFlag.ClearAndSelect
                self.list.blockSignals(True)
                self.list.setCurrentRow(row, flag)
                self.list.blockSignals(False)
                return

    def visible_records(self) -> list[ImageRecord]:
        out = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            rec = item.data(Qt.ItemDataRole.UserRole)
            if isinstance(rec, ImageRecord) and not item.isHidden():
                out.append(rec)
        return out

    def selected_records(self) -> list[ImageRecord]:
        """The images selected in the list (Ctrl/Shift+click), in list order."""
        out = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            rec = item.data(Qt.ItemDataRole.UserRole)
            if item.isSelected() and isinstance(rec, ImageRecord) and not item.isHidden():
                out.append(rec)
        return out

    def _open_first_shown(self) -> None:
        """Enter in the filter box: open the first image it lets through, unless the one
        shown already passes."""
        shown = self.visible_records()
        current = self.current_id()
        if shown and current not in [r.id for r in shown]:
            self.activated.emit(shown[0])

    def _apply_filter(self) -> None:
        status = self.filter_status.currentText()
        text = self.filter_text.text().lower()
        for row in range(self.list.count()):
            item = self.list.item(row)
            rec = item.data(Qt.ItemDataRole.UserRole)
            name = rec.path if isinstance(rec, ImageRecord) else item.text()
            ok = text in name.lower()
            if isinstance(rec, ImageRecord) and status == TO_REVIEW:
                ok = ok and self.pending.get(rec.id or 0, 0) > 0
            elif isinstance(rec, ImageRecord) and status != "all":
                ok = ok and rec.status == status
            item.setHidden(not ok)

    def _clicked(self, item: QListWidgetItem) -> None:
        """A plain click opens the image; Ctrl/Shift+click only selects (for Export)."""
        mods = QApplication.keyboardModifiers()
        if not mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier):
            self._activated(item)

    def _activated(self, item: QListWidgetItem) -> None:
        self.activated.emit(item.data(Qt.ItemDataRole.UserRole))

    def _request_thumb(self, rec: ImageRecord, path: Path) -> None:
        if rec.content_hash in self._pending:
            return
        self._pending.add(rec.content_hash)
        h = rec.content_hash
        self.tasks.start(make_thumbnail, path,
                         on_result=functools.partial(self._thumb_ready, h),
                         on_error=lambda _exc: self._pending.discard(h))

    def _thumb_ready(self, image_hash: str, image: QImage) -> None:
        self._pending.discard(image_hash)
        icon = QIcon(QPixmap.fromImage(image))
        self._thumbs[image_hash] = icon
        for row in range(self.list.count()):
            item = self.list.item(row)
            rec = item.data(Qt.ItemDataRole.UserRole)
            if isinstance(rec, ImageRecord) and rec.content_hash == image_hash:
                item.setIcon(icon)
