"""The application's state: one owner for each thing that several parts of the window use,
with a typed signal that panels, tools and dialogs observe instead of reaching into the
window or being kept in step by hand.

What it owns (or fronts, with one source of truth each):

- the open project and its session (the project store handle, the image being labelled);
  the image and the current label live in ``AnnotationSession`` (it stores instances with
  them), AppState re-emits their changes as ``image_changed`` and ``label_changed``;
- the selected instances (``selection``, ``selection_changed``): the edit tool, the instance
  list and the canvas layer follow it;
- the active tool or mode (``tool``, ``tool_changed``): the window installs the canvas tool;
- the backend (``bridge``, its ``description`` and ``capabilities``, ``backend_changed``);
- the settings that several parts use (``tolerance``, ``opacity``, ``hover_preview``,
  ``label_popup``), whose values live in ``GuiSettings`` (saved between runs);
- status messages for the status bar (``say`` -> ``message``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.core.types import ImageRecord
from app.ui.settings import GuiSettings

if TYPE_CHECKING:
    from app.core.project import Project
    from app.predict.base import Capabilities
    from app.ui.session import AnnotationSession
    from app.ui.workers import PredictorBridge

TOOLS = ("sam", "edit", "polygon", "box", "brush", "eraser")
MESSAGE_MS = 8000


class AppState(QObject):
    tolerance_changed = Signal(float)  # polygon simplification, pixels
    opacity_changed = Signal(float)  # fill opacity of the stored instances, 0..1
    hover_preview_changed = Signal(bool)  # the mask under a resting pointer, on or off
    image_changed = Signal(object)  # ImageRecord | None: another image is being labelled
    label_changed = Signal(str)  # the current label (new instances get it)
    labels_changed = Signal()  # a label was added, renamed or recoloured
    selection_changed = Signal(list)  # ids of the selected instances, the edited one first
    tool_changed = Signal(str)  # sam | edit | polygon | box | brush | eraser (chosen again too)
    backend_changed = Signal(object)  # the PredictorBridge now used
    message = Signal(str, int)  # a status bar message and its timeout (ms, 0: it stays)

    def __init__(self, settings: GuiSettings, session: AnnotationSession,
                 bridge: PredictorBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.session = session
        self._bridge = bridge
        self._selection: list[int] = []
        self._tool = "sam"
        session.image_changed.connect(self._image_changed)
        session.current_label_changed.connect(self.label_changed)
        session.labels_changed.connect(self.labels_changed)

    # -- the open project and image ------------------------------------------------------------
    @property
    def project(self) -> Project:
        """The open project (the store)."""
        return self.session.project

    @property
    def image(self) -> ImageRecord | None:
        """The image being labelled (None: none, or an unreadable file is shown)."""
        return self.session.image

    @property
    def image_path(self) -> Path | None:
        """The file of the image being labelled."""
        image = self.session.image
        return None if image is None else self.project.image_root / image.path

    def _image_changed(self, record: ImageRecord | None) -> None:
        self._set_selection([])  # nothing of the previous image stays selected
        self.image_changed.emit(record)

    # -- the current label ---------------------------------------------------------------------
    @property
    def label(self) -> str:
        """The current label: new instances get it; the label list highlights it."""
        return self.session.current_label

    def set_label(self, name: str) -> None:
        """Make ``name`` (a label of the project) the current label; observers follow."""
        self.session.set_current_label(name)

    def label_for_hotkey(self, key: str) -> str | None:
        return self.session.label_for_hotkey(key)

    # -- the selected instances ----------------------------------------------------------------
    @property
    def selection(self) -> list[int]:
        """The selected instances' ids (the one being edited first)."""
        return list(self._selection)

    def set_selection(self, ids: list[int]) -> None:
        """Select ``ids`` (from the canvas or the list); observers follow when it changed."""
        self._set_selection(list(ids))

    def _set_selection(self, ids: list[int]) -> None:
        if ids != self._selection:
            self._selection = ids
            self.selection_changed.emit(list(ids))

    # -- the active tool -----------------------------------------------------------------------
    @property
    def tool(self) -> str:
        """The tool or mode chosen: sam | edit | polygon | box | brush | eraser."""
        return self._tool

    def set_tool(self, name: str) -> None:
        """Choose a tool; told even when it is the same one (choosing it again resets it)."""
        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}")
        self._tool = name
        self.tool_changed.emit(name)

    # -- the backend ---------------------------------------------------------------------------
    @property
    def bridge(self) -> PredictorBridge:
        """The predictor bridge in use (one worker thread behind it)."""
        return self._bridge

    @property
    def description(self) -> str:
        """The backend in words (the status bar, the settings dialog)."""
        return self._bridge.description

    @property
    def capabilities(self) -> Capabilities:
        return self._bridge.capabilities

    def set_bridge(self, bridge: PredictorBridge) -> None:
        """Switch to another predictor; observers move their connections to it."""
        self._bridge = bridge
        self.backend_changed.emit(bridge)

    # -- settings that several parts use -------------------------------------------------------
    @property
    def tolerance(self) -> float:
        """Simplification tolerance (pixels) of new instances and of the slider."""
        return self.settings.tolerance

    def set_tolerance(self, pixels: float) -> None:
        """Change the tolerance (from the slider or the settings dialog) and tell observers."""
        self.settings.tolerance = pixels
        self.tolerance_changed.emit(pixels)

    @property
    def opacity(self) -> float:
        return self.settings.opacity

    def set_opacity(self, opacity: float) -> None:
        """The instances' fill opacity (the slider); the canvas layer follows."""
        self.settings.opacity = opacity
        self.opacity_changed.emit(opacity)

    @property
    def hover_preview(self) -> bool:
        return bool(self.settings.hover_preview)

    def set_hover_preview(self, on: bool) -> None:
        self.settings.hover_preview = on
        self.hover_preview_changed.emit(on)

    @property
    def label_popup(self) -> bool:
        """Enter asks for the label (off: the current label at once)."""
        return bool(self.settings.label_popup)

    # -- messages ------------------------------------------------------------------------------
    def say(self, text: str, ms: int = MESSAGE_MS) -> None:
        """A message for the status bar (``ms`` 0: it stays until another one)."""
        self.message.emit(text, ms)
