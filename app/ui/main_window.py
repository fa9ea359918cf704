"""The main window: wiring only. Behaviour lives in canvas/, tools/, panels/, dialogs/."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence, QPixmap
from PySide6.QtWidgets import QDockWidget, QMainWindow, QPushButton, QVBoxLayout, QWidget

from app.core.image_checks import check_images, known_problems
from app.core.project import Project
from app.core.types import ImageRecord, ImageStatus
from app.interaction.review import ReviewAction
from app.predict.base import FindQuery
from app.ui import dialogs, keys
from app.ui.app_state import AppState
from app.ui.canvas.convert import rgb_to_display_qimage
from app.ui.canvas.layers import BrushCursor, HandlesItem, InstanceLayer, MarksItem, MaskLayer
from app.ui.canvas.tiled_image import TILED_PIXELS, TiledImageItem, TiledOpening
from app.ui.canvas.view import CanvasTool, CanvasView
from app.ui.feedback import ClickFeedback
from app.ui.find_all import FindAllBox
from app.ui.guide import show_guide
from app.ui.hover import HoverPreview
from app.ui.instance_sync import InstanceSync
from app.ui.label_popup import LabelChooser
from app.ui.layout import ResponsivePanels
from app.ui.navigation import FocusKeeper, Navigator
from app.ui.panels.frame_bar import FrameBar
from app.ui.panels.images_panel import ImagesPanel
from app.ui.panels.instances_panel import InstancesPanel
from app.ui.panels.labels_panel import LabelsPanel
from app.ui.panels.video_panel import VideoPanel, ask_sequence_path
from app.ui.proposals import ProposalsController
from app.ui.review import ReviewController
from app.ui.session import AnnotationSession
from app.ui.settings import GuiSettings
from app.ui.status import StatusLine
from app.ui.tasks import TaskRunner
from app.ui.tools.drawing_qt import BoxTool, PolygonTool
from app.ui.tools.edit_tool import EditTool
from app.ui.tools.instance_ops import NEXT_IMAGES, InstanceOps
from app.ui.tools.sam_tool import SamTool
from app.ui.video_controller import VideoController
from app.ui.workers import PredictorBridge

PREFETCH = 2  # next images encoded ahead


class MainWindow(QMainWindow):
    """One project, one window. ``closed`` fires after the window saved its layout."""

    closed = Signal()
    image_shown = Signal(object)  # ImageRecord once its pixels are on the canvas

    def __init__(self, project: Project, bridge: PredictorBridge, *,
                 unreadable: list[tuple[str, str]] | None = None,
                 settings: GuiSettings | None = None,
                 open_path: Callable[[Path | None], None] | None = None,
                 switch_backend: Callable[[GuiSettings], None] | None = None) -> None:
        super().__init__()
        self.project = project
        self.settings = settings or GuiSettings()
        self.unreadable = list(unreadable or [])
        self.open_path = open_path
        self.switch_backend = switch_backend  # builds a new predictor, then calls set_bridge
        self._closing = False
        self.tasks = TaskRunner(2, self)
        self._opening: TiledOpening | None = None  # a large image being opened
        self.session = AnnotationSession(project, self)
        # the application's state: panels, tools and dialogs observe it (app_state.py)
        self.app_state = state = AppState(self.settings, self.session, bridge, self)
        state.message.connect(self.show_message)
        self.setWindowTitle(f"MaskLoop — {project.path.name}")

        # canvas and its layers
        self.canvas = CanvasView(self)
        self.canvas.key_fallback = self._key_fallback
        scene = self.canvas.scene()
        self.mask_layer = MaskLayer(scene)
        self.instance_layer = InstanceLayer(scene)
        self.instance_layer.opacity = state.opacity
        self.handles = HandlesItem()
        self.marks = MarksItem()
        self.brush_cursor = BrushCursor()
        for item in (self.handles, self.marks, self.brush_cursor):
            scene.addItem(item)
        self.frame_bar = FrameBar()  # under the canvas while a video is shown
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.frame_bar)
        self.setCentralWidget(central)

        # tools
        self.sam_tool = SamTool(state, self.mask_layer, self.marks, self.tasks, self)
        self.sam_tool.view = self.canvas.visible_image_rect
        self.edit_tool = EditTool(self.session, self.instance_layer, self.handles, self.marks,
                                  self, brush_cursor=self.brush_cursor)
        self.polygon_tool = PolygonTool(self.session, self.marks, self)
        self.box_tool = BoxTool(self.session, self.marks, self)
        self.proposals = ProposalsController(state, self.canvas, self.tasks, self)
        self.ops = InstanceOps(state, self.tasks, self.sam_tool.redraw_candidate,
                               find=self.proposals.find_all, find_next=self.find_in_next,
                               pointed=self.proposals.reject_pointed)
        for tool in (self.sam_tool, self.edit_tool, self.polygon_tool, self.box_tool):
            tool.message.connect(self.show_message)

        # panels
        self.images_panel = ImagesPanel()
        self.labels_panel = LabelsPanel(state)
        self.labels_panel.message.connect(self.show_message)
        self.instances_panel = InstancesPanel(self.session, state)
        self.instance_sync = InstanceSync(self.instance_layer, self.instances_panel)
        images_dock = self._dock("Images", self.images_panel,
                                 Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Labels", self.labels_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("Instances", self.instances_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self.video_panel = VideoPanel(lambda: [lab.name for lab in self.session.labels()])
        self.splitDockWidget(images_dock, self._dock(  # under the images: no width taken
            "Video", self.video_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
            Qt.Orientation.Vertical)
        self.video = VideoController(state, self.tasks, self.video_panel, self.frame_bar,
                                     self.show_image, self)
        self.video_panel.add_clicked.connect(self.add_video)
        self.image_shown.connect(self.video.image_shown)

        # status bar
        self.status = st = StatusLine(self.statusBar(), bridge.description)
        self.encode_label, self.latency_label, self.backend_label = (st.encode, st.latency,
                                                                     st.backend)
        # the friendly way to something better than the classical backend
        self.get_model_button = QPushButton("Get a SAM2 model…")
        self.get_model_button.setFlat(True)
        self.get_model_button.setToolTip("Download SAM2, choose a checkpoint or a server")
        self.get_model_button.clicked.connect(self.open_settings)
        self.statusBar().addPermanentWidget(self.get_model_button)
        self.get_model_button.setVisible(bridge.is_classical)

        self.find_all_box = FindAllBox()
        self.find_all_box.submitted.connect(self.find_all)
        self.nav = Navigator(self)
        self.labelling = LabelChooser(state, self.canvas, self.sam_tool, self.mask_layer,
                                      self)  # the label popup on accept
        self.polygon_tool.on_shape = self.box_tool.on_shape = self.labelling.store_shape
        self.review = ReviewController(  # review mode: the stored proposals, from the keys
            state, self.canvas, self.handles, ask_label=self.labelling.ask,
            show_image=self.show_image,
            image_order=lambda: [int(r.id or 0) for r in self.images_panel.visible_records()],
            parent=self)
        self.images_panel.add_section(self.review.panel)  # counts and filters, under the list
        self.help_dialog: QWidget | None = None
        # menus, toolbar (with the find-all box), shortcuts
        actions = keys.install(self, self._slots(), recent=self.settings.recent,
                               open_recent=lambda p: self._open(Path(p)),
                               toolbar_widget=self.find_all_box)
        self.actions_by_name: dict[str, QAction] = actions.by_name
        self.find_all_action: QAction | None = actions.find_all
        self._show_find_all(bridge)
        self._connect()
        self._connect_review()
        self.feedback = ClickFeedback(self)  # a ring at a click being answered
        self.hover = HoverPreview(state, self.canvas, self.sam_tool, self.tasks,
                                  waiting_for_encoder=lambda: self.feedback.waiting_for_encoder,
                                  proposals_busy=lambda: self.proposals.busy, parent=self)
        self.set_tool("sam")
        self._restore_layout()
        self.panels = ResponsivePanels(self)  # collapse to icons on small screens
        self.focus_keeper = FocusKeeper(self, [self.images_panel, self.labels_panel,
                                               self.instances_panel, self.video_panel,
                                               self.find_all_box])
        self.images_panel.problems = known_problems(project)  # then checked in the background
        self.images_panel.check(lambda **kw: check_images(project, **kw))
        self.refresh_images()
        self._open_first_image()
        self.guide = show_guide(self)  # first run only

    # -- construction helpers ----------------------------------------------------------------
    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower()}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _connect_bridge(self, b: PredictorBridge, connect: bool = True) -> None:
        for signal, slot in ((b.progress, self.status.progress),
                             (b.embedding_ready, self.status.embedded),
                             (b.failed, self.status.failed)):
            if connect:
                signal.connect(slot)
            else:
                signal.disconnect(slot)

    @property
    def bridge(self) -> PredictorBridge:
        """The predictor bridge in use (owned by ``app_state``)."""
        return self.app_state.bridge

    def set_bridge(self, bridge: PredictorBridge) -> None:
        """Switch to another predictor; the current image is encoded again with it. The
        tools follow ``app_state.backend_changed``."""
        self._connect_bridge(self.bridge, connect=False)
        self.feedback.connect_bridge(self.bridge, connect=False)
        self.app_state.set_bridge(bridge)
        self._connect_bridge(bridge)
        self.feedback.connect_bridge(bridge)
        self.encode_label.setText("")
        if self.session.image is not None:  # the picture stays; only the encoding is redone
            self.sam_tool.reset()
            self.proposals.clear()
            self._encode(self.session.image)
        self.backend_changed(f"Now using {bridge.description}")

    def backend_changed(self, note: str, failed: bool = False) -> None:
        """The predictor changed: show it and ``note`` (a failure's reason stays shown)."""
        self.backend_label.setText(self.bridge.description)
        self.get_model_button.setVisible(self.bridge.is_classical)
        self._show_find_all(self.bridge)
        self.show_message(note, 0 if failed else 8000)

    def _show_find_all(self, bridge: PredictorBridge) -> None:
        """The find-all box is shown only while the backend understands text; "find all
        like this" is enabled only while it finds by example (the tooltip says why not)."""
        if self.find_all_action is not None:
            self.find_all_action.setVisible(bridge.supports_text)
        why = "" if bridge.supports_exemplars else \
            f"{bridge.description} cannot find objects like an example"
        for name in ("find_like", "find_unlike", "find_like_next"):
            if (action := self.actions_by_name.get(name)) is not None:
                action.setEnabled(not why)
                action.setToolTip(why or action.text())

    def _connect(self) -> None:
        s, state = self.session, self.app_state
        s.instances_changed.connect(self.refresh_instances)
        s.labels_changed.connect(self.refresh_instances)
        s.images_changed.connect(self.refresh_images)
        state.label_changed.connect(lambda name: self.show_message(f"Label: {name}"))
        state.image_changed.connect(lambda _: self.status.new_image())
        state.image_changed.connect(lambda _: self.nav.update_counter())
        state.image_changed.connect(self._follow_image)
        state.tool_changed.connect(self._apply_tool)
        state.opacity_changed.connect(self.instance_layer.set_opacity)
        state.backend_changed.connect(self._show_find_all)
        s.saved.connect(lambda: self.status.saved_now(self.project.path.name))
        self._connect_bridge(self.bridge)
        self.sam_tool.answered.connect(self.status.answered)
        self.images_panel.activated.connect(self._on_image_activated)
        # one selection (app_state): the edit tool sets it from the canvas, the instance
        # list from its rows; the edit tool and the layer follow it
        self.edit_tool.selection_changed.connect(state.set_selection)
        state.selection_changed.connect(self.edit_tool.follow_selection)
        state.selection_changed.connect(self.instance_layer.set_selected)
        ip = self.instances_panel
        ip.visibility_changed.connect(self._set_visible)
        ip.tolerance_changed.connect(self.ops.simplify_selected)
        ip.delete_clicked.connect(self.edit_tool.delete_vertex_or_instance)
        ip.merge_clicked.connect(self.ops.merge_selected)
        ip.subtract_clicked.connect(self.ops.subtract_selected)
        ip.relabel_requested.connect(self.session.relabel)
        ip.delete_requested.connect(self.ops.delete)
        ip.hide_requested.connect(ip.set_hidden)
        ip.zoom_requested.connect(self.nav.zoom_to_instances)

    def _connect_review(self) -> None:
        """Review mode swaps the keys; its counts go to the images panel and the status bar."""
        review = self.review
        review.mode_changed.connect(lambda on: keys.switch_review(self.actions_by_name, on))
        review.pending_changed.connect(self.images_panel.set_pending)
        review.summary.connect(self.status.set_review)
        self.image_shown.connect(review.image_shown)
        self.proposals.stored.connect(lambda _: review.update_counts())
        self.proposals.hand_over = review.take_stored
        self.session.saved.connect(review.update_counts)

    def _slots(self) -> dict[str, Callable[[], object]]:
        """What each action of ``keys.MENUS`` does."""
        nav, canvas, edit, props = self.nav, self.canvas, self.edit_tool, self.proposals
        slots: dict[str, Callable[[], object]] = {
            "open_folder": self.open_folder, "open_project": self.open_project,
            "add_video": self.add_video,
            "export": self.export, "settings": self.open_settings, "quit": self.close,
            "undo": self.undo, "redo": self.redo, "accept": self.accept,
            "cycle": self.sam_tool.cycle, "undo_click": self.backspace, "clear": self.escape,
            "delete": edit.delete_vertex_or_instance, "merge": self.ops.merge_selected,
            "subtract": self.ops.subtract_selected, "everything": props.request,
            "find_like": self.ops.find_like, "find_unlike": self.ops.find_unlike,
            "find_like_next": self.ops.find_like_next,
            "accept_here": lambda: props.take_under_pointer(True),
            "reject_here": lambda: props.take_under_pointer(False),
            "brush_smaller": lambda: edit.resize_brush(-1),
            "brush_bigger": lambda: edit.resize_brush(1),
            "next": lambda: nav.step(1), "prev": lambda: nav.step(-1),
            "next_new": lambda: nav.step_new(1), "prev_new": lambda: nav.step_new(-1),
            "done": self.mark_done, "done_next": nav.done_next, "skip": nav.skip,
            "fit": canvas.fit, "zoom_selection": nav.zoom_to_selection,
            "zoom_in": lambda: canvas.zoom_by(1.25), "zoom_out": lambda: canvas.zoom_by(0.8),
            "toggle_instances": nav.toggle_instances,
            "add_label": self.labels_panel.add_label,
            "shortcuts": self.show_shortcuts, "models": self.open_settings,
        }
        video = self.video
        slots.update({"next_frame": lambda: video.step(1), "prev_frame": lambda: video.step(-1),
                      "next_10_frames": lambda: video.step(10),
                      "prev_10_frames": lambda: video.step(-10), "play": video.play_pause,
                      "next_anchor": lambda: video.step_anchor(1),
                      "prev_anchor": lambda: video.step_anchor(-1),
                      "propagate_forward": lambda: video.propagate(1),
                      "propagate_backward": lambda: video.propagate(-1),
                      "cancel_propagation": video.cancel_propagation})
        for name, _, _ in keys.TOOLS:
            slots[f"tool_{name}"] = partial(self.set_tool, name)
        slots["review"] = self.review.toggle
        for action in ReviewAction:
            slots[f"{keys.REVIEW_PREFIX}{action.value}"] = partial(self.review.trigger, action)
        for k in range(1, 10):
            slots[f"label_{k}"] = partial(self.ops.label_hotkey, str(k))
        return slots

    # -- dialogs -----------------------------------------------------------------------------
    def _open(self, path: Path) -> None:
        if self.open_path is None:
            self.show_message("Opening another project is not available here")
            return
        self.open_path(path)

    def open_folder(self) -> None:
        path = dialogs.ask_folder(self)
        if path is not None:
            self._open(path)

    def open_project(self) -> None:
        path = dialogs.ask_project(self)
        if path is not None:
            self._open(path)

    def add_video(self) -> None:
        """File > Add video or frames: a video file or a folder of frames joins the project."""
        path = ask_sequence_path(self)
        if path is not None:
            self.video.add_sequence(path)

    def export(self) -> None:
        panel = self.images_panel
        dialogs.export(self, self.project, self.tasks,
                       shown_ids=[int(r.id or 0) for r in panel.visible_records()],
                       selected_ids=[int(r.id or 0) for r in panel.selected_records()])

    def open_settings(self) -> None:
        dialogs.settings(self, self.app_state, self.tasks, self.switch_backend)

    def show_shortcuts(self) -> None:
        """F1: the table of every key and mouse action."""
        from app.ui.help_dialog import show_help

        self.help_dialog = show_help(self.menuBar(), self)

    # -- tools -------------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        """sam | edit | polygon | box | brush | eraser (``app_state.set_tool``)."""
        self.app_state.set_tool(name)

    @property
    def active_tool_name(self) -> str:
        return self.app_state.tool

    def _apply_tool(self, name: str) -> None:
        """The tool chosen in ``app_state``: the canvas gets it, the others are reset."""
        self.edit_tool.set_brush(name if name in ("brush", "eraser") else None)
        for tool in (self.sam_tool, self.polygon_tool, self.box_tool):
            tool.reset()
        if name in ("brush", "eraser"):
            self.canvas.tool = self.edit_tool
        else:
            tools: dict[str, CanvasTool] = {"sam": self.sam_tool, "edit": self.edit_tool,
                                            "polygon": self.polygon_tool, "box": self.box_tool}
            self.canvas.tool = tools[name]
        if name in ("sam", "polygon", "box"):
            self.edit_tool.select(None)
        action = self.actions_by_name.get(f"tool_{name}")
        if action is not None:
            action.setChecked(True)

    def active_tool(self) -> object:
        return self.canvas.tool

    def _key_fallback(self, event: QKeyEvent) -> bool:
        """Keys that reached the canvas without triggering a shortcut (tests, focus quirks)."""
        seq = QKeySequence(event.keyCombination())
        for action in self.actions_by_name.values():
            if action.isEnabled() and any(s == seq for s in action.shortcuts()):
                action.trigger()
                return True
        return False

    # -- images ------------------------------------------------------------------------------
    def refresh_images(self) -> None:
        self.images_panel.set_images(self.project.images(), self.unreadable,
                                     self.project.image_root)
        if self.session.image is not None:
            self.images_panel.show_current(self.session.image.id)
        self.nav.update_counter()

    def _open_first_image(self) -> None:
        records = self.project.images()
        last = self.session.last_image()
        if last is not None:
            self.show_image(last)
        elif records:
            self.show_image(records[0])
        elif self.unreadable:
            self._on_image_activated(f"{self.unreadable[0][0]}: {self.unreadable[0][1]}")
        else:
            self.canvas.set_message("No images in this project: open a folder (Ctrl+O)")

    def _on_image_activated(self, item: object) -> None:
        if isinstance(item, ImageRecord):
            self.show_image(item)
        else:  # an unreadable file: say so where the image would be
            self.session.set_image(None)
            self.canvas.set_message(f"Cannot read this image:\n{item}")

    def _follow_image(self, record: ImageRecord | None) -> None:
        if record is not None:
            self.images_panel.show_current(record.id)

    def show_image(self, record: ImageRecord) -> None:
        """Show ``record``: pixels decoded off the GUI thread; encoding starts at once."""
        for tool in (self.sam_tool, self.polygon_tool, self.box_tool):
            tool.reset()
        self.edit_tool.select(None)
        self.proposals.clear()
        self.session.set_image(record)
        self.setWindowTitle(f"MaskLoop — {self.project.path.name} — {record.path}")
        self.canvas.set_message(f"Loading {record.path} …")
        path = self._encode(record)
        store = self.bridge.images
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if (frame := self.video.loader(record)) is not None:  # a video frame: decoded
            self.tasks.start(lambda: rgb_to_display_qimage(frame()),
                             on_result=lambda img: self._image_loaded(record, img),
                             on_error=lambda exc: self._image_failed(record, exc))
            return
        if record.width * record.height > TILED_PIXELS:
            self._show_tiled(record, path)
            return
        self.tasks.start(lambda: rgb_to_display_qimage(store.get(record.content_hash, path)),
                         on_result=lambda img: self._image_loaded(record, img),
                         on_error=lambda exc: self._image_failed(record, exc))

    def _encode(self, record: ImageRecord) -> Path:
        """Start encoding ``record`` with the current predictor and prefetch the next images."""
        root = self.project.image_root
        if self.video.frame_of(record) is not None:
            self.video.encode_frame(record)
            return root / record.path
        nxt = self._next_records(record, PREFETCH)
        self.bridge.set_image(record.content_hash, root / record.path,
                              [(r.content_hash, root / r.path) for r in nxt])
        return root / record.path

    def _show_tiled(self, record: ImageRecord, path: Path) -> None:
        """A large image: a first picture from a reduced decode, then the visible tiles of
        the pyramid level that matches the zoom (canvas/tiled_image.py), all made on the
        pool; the full image comes from the store the encoder shares (decoded once)."""
        store, item = self.bridge.images, TiledImageItem(record.width, record.height,
                                                         self.tasks)
        self._opening = TiledOpening(
            self.tasks, item, path, lambda: store.get(record.content_hash, path),
            on_first_picture=lambda: self._image_loaded(record, item),
            on_error=lambda exc: self._image_failed(record, exc))

    def _image_loaded(self, record: ImageRecord, image: object) -> None:
        if (self._closing or self.session.image is None
                or self.session.image.id != record.id):
            return  # the person moved on (or closed the window: the project is closed)
        if isinstance(image, TiledImageItem):
            self.canvas.set_tiled(image, image.width, image.height)
        else:
            self.canvas.set_image(QPixmap.fromImage(image))  # type: ignore[arg-type]
        self.sam_tool.state.bounds = (float(record.width), float(record.height))
        self.refresh_instances()
        self.image_shown.emit(record)

    def _image_failed(self, record: ImageRecord, exc: BaseException) -> None:
        if (not self._closing and self.session.image is not None
                and self.session.image.id == record.id):
            self.canvas.set_message(f"Cannot show {record.path}:\n{exc}")
            self.show_message(str(exc))

    def mark_done(self) -> None:
        self.session.set_status(ImageStatus.DONE)
        self.show_message("Marked done")

    # -- instances ---------------------------------------------------------------------------
    def refresh_instances(self) -> None:
        instances = self.session.instance_map() if self.canvas.image_size else {}
        colours: dict[str, str] = {}  # one look-up per label, not one per instance

        def colour_of(label: str) -> str:
            if label not in colours:
                colours[label] = self.session.colour_of(label)
            return colours[label]

        # the canvas and the list: an accept draws and lists the new instance only
        self.instance_sync.refresh(instances, colour_of)
        self.instance_layer.set_selected(self.app_state.selection)
        self.edit_tool.refresh()
        # what the edit tool can still edit stays selected (a deleted instance leaves)
        self.app_state.set_selection(self.edit_tool.selected_ids())
        self.instances_panel.select(self.app_state.selection)
        self.instance_layer.set_selected(self.app_state.selection)

    def _set_visible(self, iid: int, visible: bool) -> None:
        self.instance_layer.set_visible(iid, visible)
        self.edit_tool.refresh()

    # -- keys shared by tools ----------------------------------------------------------------
    def accept(self) -> None:
        tool = self.canvas.tool
        if tool is self.sam_tool:
            self.labelling.accept_candidate()  # asks for the label (the popup), then stores
        elif tool is self.polygon_tool:
            self.polygon_tool.accept()
        elif self.proposals.active:
            self.proposals.accept_all()

    def escape(self) -> None:
        if self.proposals.active or self.proposals.busy:
            self.proposals.clear()
            return
        if self.proposals.searching_next:
            self.proposals.cancel_next()
            return
        tool = self.canvas.tool
        if tool is self.edit_tool:
            self.edit_tool.select(None)
        elif callable(clear := getattr(tool, "clear", None)):
            clear()

    def find_all(self, text: str) -> None:
        """Find-all's Enter: suggestions for ``text`` ("person, car": any of them); the
        canvas takes the keyboard back."""
        self.proposals.find_all(FindQuery.text(text))
        self.canvas.setFocus()

    def _next_records(self, record: ImageRecord, limit: int) -> list[ImageRecord]:
        """Up to ``limit`` readable images after ``record`` in the image list's order."""
        order = self.images_panel.visible_records() or self.project.images()
        ids = [r.id for r in order]
        if record.id not in ids:
            return []
        return [r for r in order[ids.index(record.id) + 1:]
                if r.id not in self.images_panel.problems][:limit]

    def find_in_next(self, query: FindQuery) -> None:
        """The query searched in the next ``NEXT_IMAGES`` images of the list (off the GUI
        thread; the results go to review)."""
        record = self.session.image
        self.proposals.find_in_next(query, [] if record is None
                                    else self._next_records(record, NEXT_IMAGES))

    def backspace(self) -> None:
        undo_last = getattr(self.canvas.tool, "undo_last", None)
        if callable(undo_last):
            undo_last()

    def undo(self) -> None:
        self.show_message("Undone" if self.session.undo() else "Nothing to undo")

    def redo(self) -> None:
        self.show_message("Redone" if self.session.redo() else "Nothing to redo")

    def show_message(self, text: str, ms: int = 8000) -> None:
        self.status.show(text, ms)

    # -- layout and closing ------------------------------------------------------------------
    def _restore_layout(self) -> None:
        if self.settings.geometry:
            self.restoreGeometry(QByteArray.fromBase64(self.settings.geometry.encode()))
        else:  # the first start: as large as fits the screen, up to 1280 x 820
            area = dialogs.screen_area(self)
            self.resize(min(1280, area.width()), min(820, area.height() - 40))
        if self.settings.state:
            self.restoreState(QByteArray.fromBase64(self.settings.state.encode()))

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.settings.geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        self.settings.state = bytes(self.saveState().toBase64().data()).decode()
        self.settings.add_recent(self.project.path)
        self.settings.save()
        self._closing = True
        if self._opening is not None:
            self._opening.cancel()
        self.proposals.cancel()
        self.video.stop()
        self.sam_tool.clear()  # a mask result still on its way is dropped
        self.session.close()  # late results (polygons, image loads) change nothing
        self.tasks.wait(10000)
        self.video.close()  # after the frame decodes still running
        self.images_panel.wait(10000)
        super().closeEvent(event)
        self.closed.emit()
