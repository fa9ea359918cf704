"""Review mode (issue 17): the stored proposals, one at a time, image by image, from the keys.

Enter accepts the current proposal (the label popup first when it is on), Del rejects it, E
edits its polygon (Enter then accepts the edited shape, Esc goes back), Shift+Enter accepts
all left on the image; the next proposal, then the next image with some, comes by itself;
arrows and PgUp / PgDn move by hand; Ctrl+Z undoes the last decision, on its image; Esc
leaves. The current proposal is drawn solid and the view zooms to it, the others dashed.
The queue itself (order, moves, filters, the commands of the keys) is Qt-free:
``app/interaction/review.py``; the keys are listed in ``app/ui/keys.py``'s Review menu.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGraphicsPathItem,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import MaskLoopError
from app.core.proposals import Proposal, ProposalSource
from app.core.types import Geometry, ImageRecord
from app.interaction.events import Button, PointerEvent
from app.interaction.polygon_edit import EditKind, PolygonEditor
from app.interaction.review import ReviewAction, ReviewFilter, ReviewQueue, counts_text
from app.ui.app_state import AppState
from app.ui.canvas.banner import Banner
from app.ui.canvas.convert import geometry_path
from app.ui.canvas.layers import HandlesItem, cosmetic_pen
from app.ui.canvas.view import CanvasView

OTHER = QColor(255, 220, 0)  # the other pending proposals of the image: dashed yellow
CURRENT = QColor(0, 200, 255)  # the one to decide: solid cyan
EDITED = 0  # the editor's id for the proposal being edited
ZOOM_MARGIN = 1.0  # the view shows the proposal with its own size around it on each side
ZOOM_MAX = 4.0
AskLabel = Callable[[QPointF | None, Callable[[str], None], Callable[[], None] | None], None]


class ReviewPanel(QWidget):
    """Counts (this image, the project) and the filters: source and minimum score."""

    filter_changed = Signal(object)  # ReviewFilter
    review_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image_counts = QLabel("–")
        self.project_counts = QLabel("–")
        for label in (self.image_counts, self.project_counts):
            label.setWordWrap(True)
        self.source = QComboBox()
        self.source.addItem("all sources", None)
        for source in ProposalSource:
            self.source.addItem(source.value, source)
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setDecimals(2)
        self.min_score.setSpecialValueText("any")  # 0: also proposals without a score
        self.button = QPushButton("Review proposals (Ctrl+R)")
        form = QFormLayout()
        form.addRow("This image:", self.image_counts)
        form.addRow("Project:", self.project_counts)
        form.addRow("Source:", self.source)
        form.addRow("Min score:", self.min_score)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(form)
        layout.addWidget(self.button)
        layout.addStretch(1)
        self.source.currentIndexChanged.connect(lambda _: self._changed())
        self.min_score.valueChanged.connect(lambda _: self._changed())
        self.button.clicked.connect(self.review_clicked)

    def set_reviewing(self, on: bool) -> None:
        self.button.setText("Stop reviewing (Esc)" if on else "Review proposals (Ctrl+R)")

    def current_filter(self) -> ReviewFilter:
        source = self.source.currentData()
        score = self.min_score.value()
        return ReviewFilter(frozenset({ProposalSource(source)}) if source else frozenset(),
                            score if score > 0 else None)

    def _changed(self) -> None:
        self.filter_changed.emit(self.current_filter())


class ShapeEdit:
    """E in review: the proposal's polygon in the polygon editor (drag, insert, delete
    vertices); ``geometry`` is the edited shape, ``on_change`` redraws it."""

    def __init__(self, geometry: Geometry, handles: HandlesItem,
                 on_change: Callable[[Geometry], None]) -> None:
        self.geometry = geometry
        self.handles, self.on_change = handles, on_change
        self.editor = PolygonEditor()
        self.editor.set_instances({EDITED: geometry})
        self.editor.select(EDITED)
        self._show_handles()

    def pointer(self, kind: str, ev: PointerEvent) -> None:
        """A press, move, release or double click from the canvas."""
        action = getattr(self.editor, kind)(ev)
        if action.kind in (EditKind.PREVIEW, EditKind.COMMIT) and action.geometry is not None:
            if action.kind is EditKind.COMMIT:
                self.geometry = action.geometry
                self.editor.set_instances({EDITED: action.geometry})
                self.editor.select(EDITED)
            self.on_change(action.geometry)
        elif action.kind is EditKind.SELECT and self.editor.selected is None:
            self.editor.select(EDITED)  # a click beside it keeps editing it
        self._show_handles()

    def _show_handles(self) -> None:
        self.handles.set_shape(self.editor.shape())

    def close(self) -> None:
        self.handles.set_shape(None)


class ReviewController(QObject):
    """The review mode of one window; the canvas tool while it is on.

    Signals: ``mode_changed(on)`` (the window swaps the keys), ``pending_changed(dict)``
    (image id -> pending proposals, for the images panel), ``summary(str)`` (the status bar).
    """

    mode_changed = Signal(bool)
    pending_changed = Signal(object)  # dict: image id -> pending
    summary = Signal(str)

    def __init__(self, state: AppState, canvas: CanvasView, handles: HandlesItem, *,
                 ask_label: AskLabel, show_image: Callable[[ImageRecord], None],
                 image_order: Callable[[], Sequence[int]],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state, self.canvas, self.handles = state, canvas, handles
        self.ask_label, self.show_image = ask_label, show_image
        self.queue = ReviewQueue(state.project.proposals, image_order)
        self.panel = ReviewPanel()
        self.banner = Banner(canvas)
        self.active = False
        self.edit: ShapeEdit | None = None
        self.items: dict[int, QGraphicsPathItem] = {}  # proposal id -> its outline
        self._previous_tool = "sam"
        self._asking = False  # the label popup is open for a decision
        self.panel.filter_changed.connect(self.set_filter)
        self.panel.review_clicked.connect(self.toggle)
        self.mode_changed.connect(self.panel.set_reviewing)
        state.image_changed.connect(self._image_changed)
        state.tool_changed.connect(self._tool_chosen)

    # -- on and off ------------------------------------------------------------------------
    def toggle(self) -> None:
        """Ctrl+R: start reviewing here (or at the next image with proposals), or stop."""
        if self.active:
            self.leave()
        else:
            self.start()

    def start(self) -> bool:
        image = self.state.image
        if not self.queue.start(image.id if image is not None else None):
            self.state.say(f"Nothing to review ({self.queue.filter.describe()})", 4000)
            self.update_counts()
            return False
        self.active = True
        self._previous_tool = self.state.tool
        self.canvas.tool = self
        self.mode_changed.emit(True)
        self._follow_queue()
        return True

    def leave(self) -> None:
        """Esc: back to the tool used before; the proposals left stay pending."""
        if self.edit is not None:
            self._stop_edit()
            self._draw()
            return
        self.active = False
        self._clear_items()
        self.banner.say("")
        self.mode_changed.emit(False)
        self.state.set_tool(self._previous_tool)
        self.update_counts()

    def take_stored(self, image_id: int) -> bool:
        """Segment everything / find all stored new proposals: while reviewing they join
        the queue (True) rather than being shown as suggestions."""
        if not self.active:
            return False
        self.queue.refresh()
        self._follow_queue()
        return True

    def _tool_chosen(self, name: str) -> None:
        """Another tool was chosen (S, V, a toolbar button) while reviewing: it ends."""
        if self.active:  # (leave() is not active any more when it sets the tool)
            self.active = False
            self._stop_edit()
            self._clear_items()
            self.banner.say("")
            self.mode_changed.emit(False)

    # -- the keys --------------------------------------------------------------------------
    def trigger(self, action: ReviewAction) -> None:
        """What a key of review mode does (``app.interaction.review.REVIEW_KEYS``)."""
        if not self.active or self._asking:
            return
        moves = {ReviewAction.NEXT: lambda: self.queue.step(1),
                 ReviewAction.PREVIOUS: lambda: self.queue.step(-1),
                 ReviewAction.NEXT_IMAGE: lambda: self.queue.step_image(1),
                 ReviewAction.PREVIOUS_IMAGE: lambda: self.queue.step_image(-1)}
        if action in moves:
            self._stop_edit()
            if not moves[action]():
                self.state.say("No more proposals that way", 3000)
            self._follow_queue()
        elif action is ReviewAction.LEAVE:
            self.leave()
        elif action is ReviewAction.UNDO:
            self._undo(redo=False)
        elif action is ReviewAction.REDO:
            self._undo(redo=True)
        elif action is ReviewAction.EDIT:
            self._start_edit()
        elif action is ReviewAction.REJECT:
            self._stop_edit()
            self._decide(ReviewAction.REJECT)
        elif action in (ReviewAction.ACCEPT, ReviewAction.ACCEPT_ALL):
            self._accept(action)

    def _accept(self, action: ReviewAction) -> None:
        current = self.queue.current
        if current is None:
            return
        geometry = self.edit.geometry if self.edit is not None else None
        kind = ReviewAction.EDIT if geometry is not None and action is ReviewAction.ACCEPT \
            else action
        if not self.state.label_popup:
            self._decide(kind, geometry=geometry)
            return
        x0, y0, x1, y1 = (geometry or current.geometry).bounds
        self._asking = True

        def chosen(name: str) -> None:
            self._asking = False
            self._decide(kind, name, geometry)

        def cancelled() -> None:
            self._asking = False

        self.ask_label(QPointF(x1, (y0 + y1) / 2), chosen, cancelled)

    def _decide(self, action: ReviewAction, label: str | None = None,
                geometry: Geometry | None = None) -> None:
        """Push the decision on the image's undo stack and move on."""
        image = self.state.image
        if image is None or image.id is None or image.id != self.queue.image_id:
            return  # the image is still being shown
        command = self.queue.command(action, label, geometry,
                                     label_of=lambda p: p.label or self.state.label)
        if command is None:
            return
        self._stop_edit()
        try:
            self.state.session.apply(command)
        except MaskLoopError as exc:  # decided meanwhile elsewhere: say it, read again
            self.state.say(str(exc))
        else:
            self.queue.decided(image.id)
        self.queue.refresh()
        self._follow_queue()

    def _undo(self, redo: bool) -> None:
        """Ctrl+Z / Ctrl+Shift+Z: the last decision (redo: the last undone), on its image
        even after the queue moved on; without one, the image's own undo."""
        self._stop_edit()
        target = self.queue.redo_image() if redo else self.queue.undo_image()
        image = self.state.image
        if target is not None and (image is None or image.id != target):
            self.show_image(self.state.project.image(target))
        if target is not None:
            self.queue.go_to_image(target)
        session = self.state.session
        done = session.redo() if redo else session.undo()
        self.state.say(("Redone" if redo else "Undone") if done else
                       ("Nothing to redo" if redo else "Nothing to undo"), 3000)
        self.queue.refresh()
        self._follow_queue()

    # -- editing ---------------------------------------------------------------------------
    def _start_edit(self) -> None:
        current = self.queue.current
        if current is None or self.edit is not None:
            return
        item = self.items.get(current.id)
        self.edit = ShapeEdit(current.geometry, self.handles,
                              lambda g: item.setPath(geometry_path(g)) if item else None)
        self._say(current, "Editing: drag vertices, double click adds one, right click "
                           "deletes one · Enter accepts the edited shape · Esc back")

    def _stop_edit(self) -> None:
        if self.edit is not None:
            self.edit.close()
            self.edit = None

    # -- following the queue ---------------------------------------------------------------
    def set_filter(self, new: ReviewFilter) -> None:
        self._stop_edit()
        self.queue.set_filter(new)
        if self.active:
            self._follow_queue()
        self.canvas.setFocus()

    def _follow_queue(self) -> None:
        """Show the queue's image (its pixels come later: ``image_shown``), then draw."""
        image = self.state.image
        target = self.queue.image_id
        if self.queue.current is not None and target is not None and (
                image is None or image.id != target):
            self.show_image(self.state.project.image(target))
            return  # _image_changed draws, image_shown zooms
        self._draw(zoom=True)

    def _image_changed(self, record: ImageRecord | None) -> None:
        """Another image is shown (by the queue, or D / A / a click in the list)."""
        if not self.active:
            self.update_counts()
            return
        self._stop_edit()
        if record is not None and record.id is not None and record.id != self.queue.image_id:
            self.queue.go_to_image(record.id)
        self._draw(zoom=False)

    def image_shown(self, record: ImageRecord) -> None:
        """The image's pixels are on the canvas: zoom to the current proposal."""
        if self.active:
            self._draw(zoom=True)

    def _clear_items(self) -> None:
        scene = self.canvas.scene()
        for item in self.items.values():
            scene.removeItem(item)
        self.items.clear()

    def _draw(self, zoom: bool = False) -> None:
        """The image's pending proposals, the current one solid; the banner; the counts."""
        self._clear_items()
        current = self.queue.current
        image = self.state.image
        on_image = image is not None and image.id == self.queue.image_id
        for p in self.queue.items if on_image else []:
            on = current is not None and p.id == current.id
            colour = CURRENT if on else OTHER
            item = QGraphicsPathItem(geometry_path(p.geometry))
            item.setPen(cosmetic_pen(colour, 3.0 if on else 1.5,
                                     Qt.PenStyle.SolidLine if on else Qt.PenStyle.DashLine))
            fill = QColor(colour)
            fill.setAlphaF(0.3 if on else 0.1)
            item.setBrush(fill)
            item.setZValue(2.6 if on else 2.5)
            self.canvas.scene().addItem(item)
            self.items[p.id] = item
        if current is None or not on_image:
            left = "Nothing left to review" if self.queue.done else "No proposals here"
            self.banner.say(f"Review · {left} ({self.queue.filter.describe()}) · "
                            "PgDn / PgUp: images with proposals · Esc leaves")
        else:
            self._say(current, "Enter accept · Del reject · E edit · Shift+Enter all · "
                               "←/→ proposals · PgUp/PgDn images · Ctrl+Z undo · Esc leave")
            if zoom and self.canvas.image_size:
                x0, y0, x1, y1 = current.geometry.bounds
                self.canvas.zoom_to(QRectF(x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)),
                                    margin=ZOOM_MARGIN, max_scale=ZOOM_MAX)
        self.update_counts()

    def _say(self, current: Proposal, keys: str) -> None:
        what = current.source.value + (f" {current.prompt!r}" if current.prompt else "")
        score = f" · score {current.score:.2f}" if current.score is not None else ""
        self.banner.say(f"Review · proposal {self.queue.index + 1} / {len(self.queue.items)} "
                        f"on this image · {what}{score}\n{keys}")

    def update_counts(self) -> None:
        """Counts of this image and of the project (the panel, the status bar, the list)."""
        store = self.state.project.proposals
        image = self.state.image
        here = store.counts(image.id) if image is not None and image.id is not None else None
        total = store.counts()
        self.panel.image_counts.setText(counts_text(here) if here is not None else "–")
        self.panel.project_counts.setText(counts_text(total))
        self.summary.emit(f"{total.pending} to review" if total.pending else "")
        self.pending_changed.emit({i: c.pending for i, c in store.counts_by_image().items()})

    # -- CanvasTool: a click picks the proposal; while editing, the editor has the pointer --
    def press(self, ev: PointerEvent) -> None:
        if self.edit is not None:
            self.edit.pointer("press", ev)
            return
        if ev.button != Button.LEFT:
            return
        from shapely.geometry import Point

        pt = Point(ev.x, ev.y)
        hits = [p for p in self.queue.items if p.geometry.covers(pt)]
        if hits and self.queue.select(min(hits, key=lambda p: p.geometry.area).id):
            self._draw()

    def move(self, ev: PointerEvent) -> None:
        if self.edit is not None:
            self.edit.pointer("move", ev)

    def release(self, ev: PointerEvent) -> None:
        if self.edit is not None:
            self.edit.pointer("release", ev)

    def double_click(self, ev: PointerEvent) -> None:
        if self.edit is not None:
            self.edit.pointer("double_click", ev)
