"""The Video panel: the project's sequences (videos and frame folders) and, for the chosen
one, its tracks with their counts of anchors and propagated frames. The track list renames
(double-click or F2 on the name), relabels and deletes a track from the current frame on
(context menu); the panel only asks, the video controller does it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.sequences import VIDEO_EXTENSIONS
from app.core.types import SequenceRecord, Track

_ID = Qt.ItemDataRole.UserRole
VIDEO_PATTERNS = sorted(f"*{ext}" for ext in VIDEO_EXTENSIONS)


@dataclass(frozen=True)
class TrackRow:
    """One row of the track list: the track and how many frames it has of each origin."""

    track: Track
    anchors: int
    propagated: int


def ask_sequence_path(parent: QWidget) -> Path | None:
    """Ask for a video file or (second choice) a folder of frames; None: cancelled."""
    box = QMessageBox(QMessageBox.Icon.Question, "Add video or frames",
                      "Add a video file or a folder of frames?",
                      QMessageBox.StandardButton.Cancel, parent)
    video = box.addButton("Video file…", QMessageBox.ButtonRole.AcceptRole)
    folder = box.addButton("Folder of frames…", QMessageBox.ButtonRole.AcceptRole)
    box.exec()
    if box.clickedButton() is video:
        name, _ = QFileDialog.getOpenFileName(
            parent, "Add a video", "", f"Videos ({' '.join(VIDEO_PATTERNS)});;All files (*)")
        return Path(name) if name else None
    if box.clickedButton() is folder:
        name = QFileDialog.getExistingDirectory(parent, "Add a folder of frames")
        return Path(name) if name else None
    return None


def ask_yes(parent: QWidget, text: str) -> bool:
    """A yes / no question (the default confirmation of a deletion)."""
    answer = QMessageBox.question(parent, "MaskLoop", text)
    return answer == QMessageBox.StandardButton.Yes


class VideoPanel(QWidget):
    """Sequences above, the chosen sequence's tracks below.

    Signals: ``add_clicked()``, ``sequence_chosen(id)``, ``track_chosen(id or None)``,
    ``rename_requested(id, name)``, ``relabel_requested(id, label)``,
    ``delete_requested(id)`` (from the current frame on; asked with ``confirm`` first, by
    the controller that knows the counts)."""

    add_clicked = Signal()
    sequence_chosen = Signal(int)
    track_chosen = Signal(object)  # int | None
    rename_requested = Signal(int, str)
    relabel_requested = Signal(int, str)
    delete_requested = Signal(int)

    def __init__(self, labels: Callable[[], list[str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = labels  # the project's label names, for the relabel menu
        self.sequences = QListWidget()
        self.sequences.setObjectName("video_sequences")
        self.sequences.currentItemChanged.connect(self._sequence_clicked)
        self.tracks = QTreeWidget()
        self.tracks.setObjectName("video_tracks")
        self.tracks.setHeaderLabels(["Track", "Label", "Anchors", "Propagated"])
        self.tracks.setRootIsDecorated(False)
        self.tracks.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                    | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.tracks.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tracks.customContextMenuRequested.connect(self._context_menu)
        self.tracks.currentItemChanged.connect(self._track_clicked)
        self.tracks.itemChanged.connect(self._renamed)
        self.tracks.setToolTip("New instances join the chosen track (none chosen: a new "
                               "track). Double-click or F2 renames; right-click relabels or "
                               "deletes from the current frame on.")
        add = QPushButton("Add video or frames…")
        add.clicked.connect(self.add_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.sequences, 1)
        layout.addWidget(add)
        layout.addWidget(QLabel("Tracks"))
        layout.addWidget(self.tracks, 2)
        self._filling = False

    # -- contents ------------------------------------------------------------------------------
    def set_sequences(self, records: Sequence[SequenceRecord], current: int | None) -> None:
        """List ``records``; ``current`` (an id) is highlighted without ``sequence_chosen``."""
        self._filling = True
        self.sequences.clear()
        for rec in records:
            item = QListWidgetItem(f"{Path(rec.path).name}  ({rec.frame_count} frames)")
            item.setData(_ID, rec.id)
            item.setToolTip(f"{rec.path}\n{rec.kind}, {rec.width} x {rec.height}, "
                            f"{rec.fps:g} fps")
            self.sequences.addItem(item)
            if rec.id == current:
                self.sequences.setCurrentItem(item)
        self._filling = False

    def show_sequence(self, sequence_id: int | None) -> None:
        """Highlight ``sequence_id`` (None: none) without ``sequence_chosen``."""
        self._filling = True
        for i in range(self.sequences.count()):
            item = self.sequences.item(i)
            if item.data(_ID) == sequence_id:
                self.sequences.setCurrentItem(item)
                break
        else:
            self.sequences.setCurrentRow(-1)
        self._filling = False

    def set_tracks(self, rows: Sequence[TrackRow], current: int | None) -> None:
        """List ``rows``; ``current`` (a track id) stays chosen if it is still there."""
        self._filling = True
        self.tracks.clear()
        for row in rows:
            item = QTreeWidgetItem([row.track.name, row.track.label, str(row.anchors),
                                    str(row.propagated)])
            item.setData(0, _ID, row.track.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.tracks.addTopLevelItem(item)
            if row.track.id == current:
                self.tracks.setCurrentItem(item)
        for column in range(4):
            self.tracks.resizeColumnToContents(column)
        self._filling = False

    def current_track(self) -> int | None:
        item = self.tracks.currentItem()
        return None if item is None else int(item.data(0, _ID))

    def choose_track(self, track_id: int | None) -> None:
        """Make ``track_id`` (None: no track) the chosen one; ``track_chosen`` follows."""
        for i in range(self.tracks.topLevelItemCount()):
            item = self.tracks.topLevelItem(i)
            if item is not None and item.data(0, _ID) == track_id:
                self.tracks.setCurrentItem(item)
                return
        self.tracks.setCurrentIndex(QModelIndex())  # track_chosen(None) if one was chosen
        self.tracks.clearSelection()

    # -- the person's choices ------------------------------------------------------------------
    def _sequence_clicked(self, item: QListWidgetItem | None, _old: object) -> None:
        if not self._filling and item is not None:
            self.sequence_chosen.emit(int(item.data(_ID)))

    def _track_clicked(self, item: QTreeWidgetItem | None, _old: object) -> None:
        if not self._filling:
            self.track_chosen.emit(None if item is None else int(item.data(0, _ID)))

    def _renamed(self, item: QTreeWidgetItem, column: int) -> None:
        if not self._filling and column == 0:
            self.rename_requested.emit(int(item.data(0, _ID)), item.text(0))

    def _context_menu(self, pos: QPoint) -> None:
        item = self.tracks.itemAt(pos)
        if item is None:
            return
        track_id = int(item.data(0, _ID))
        menu = QMenu(self)
        relabel = menu.addMenu("Relabel")
        for name in self.labels():
            act = relabel.addAction(name)
            act.triggered.connect(lambda *_, n=name: self.relabel_requested.emit(track_id, n))
        menu.addAction("Rename").triggered.connect(lambda *_: self.tracks.editItem(item, 0))
        menu.addAction("Delete from the current frame on…").triggered.connect(
            lambda *_: self.delete_requested.emit(track_id))
        menu.exec(self.tracks.viewport().mapToGlobal(pos))
