"""The SAM tool: clicks and boxes go to the predictor bridge; the chosen candidate is shown
as a translucent overlay; Enter turns it into an instance. A candidate that lies in a crop
(a tiled result on a large image) is drawn and traced from its crop, placed at its offset:
no full-size mask is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import shapely
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from app.core.types import Box, Geometry, MaskResult, Prompt
from app.interaction.events import PointerEvent
from app.interaction.prompt_tool import PromptTool
from app.ui.app_state import AppState
from app.ui.canvas.convert import LiveOverlay, live_overlay
from app.ui.canvas.layers import MarksItem, MaskLayer
from app.ui.tasks import TaskRunner, run_sized
from app.ui.workers import PredictorBridge


def crop_geometry(mask: np.ndarray, x0: int, y0: int, tolerance: float) -> Geometry | None:
    """The polygon of a mask crop whose top-left pixel is (x0, y0) of the image, in image
    coordinates (traced in the crop: its cost follows the object, not the image)."""
    from app.core.geometry import mask_to_geometry

    geom = mask_to_geometry(mask, tolerance)
    if geom is None or (x0 == 0 and y0 == 0):
        return geom
    return shapely.transform(geom, lambda xy: xy + (x0, y0))


def crop_overlay(mask: np.ndarray, x0: int, y0: int, colour: QColor) -> LiveOverlay | None:
    """``live_overlay`` of a mask crop, moved to the crop's place (x0, y0) in the image."""
    overlay = live_overlay(mask, colour)
    if overlay is None or (x0 == 0 and y0 == 0):
        return overlay
    return dataclasses.replace(overlay, x=overlay.x + x0, y=overlay.y + y0,
                               outline=overlay.outline.translated(x0, y0))


class SamTool(QObject):
    """Left click +, right/Shift click -, drag = box; Tab, Backspace, Esc, Enter."""

    message = Signal(str)
    accepted = Signal()
    answered = Signal(float)  # a prediction for the current prompt is shown: latency in ms
    requested = Signal(float, float)  # a prediction was asked for (at this image point)
    settled = Signal()  # nothing is awaited any more (answered, failed or dropped)

    def __init__(self, app_state: AppState, mask: MaskLayer, marks: MarksItem,
                 tasks: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        bridge, session = app_state.bridge, app_state.session
        self.bridge, self.session, self.mask, self.marks = bridge, session, mask, marks
        self.tasks = tasks
        self.state = PromptTool()
        self.app_state = app_state  # its simplification tolerance is used on accept
        self._pending: int | None = None  # request id of the newest prediction asked for
        self._connected: PredictorBridge | None = None
        self._shown = 0  # increases with every overlay asked for: late ones are dropped
        self._scores_shown = False  # the status bar shows a candidate's scores
        # a result for a prompt already at hand (the hover preview's), or None: asked first
        self.instant: Callable[[Prompt], MaskResult | None] | None = None
        # the part of the image on screen, sent with each prompt (``Prompt.view``)
        self.view: Callable[[], Box | None] | None = None
        self.set_bridge(bridge)
        app_state.backend_changed.connect(self.set_bridge)  # the backend was switched

    def set_bridge(self, bridge: PredictorBridge) -> None:
        """Use another predictor (the backend was switched)."""
        old = self._connected
        if old is not None:
            old.predicted.disconnect(self._on_predicted)
            old.failed.disconnect(self._on_failed)
        self.bridge = self._connected = bridge
        bridge.predicted.connect(self._on_predicted)
        bridge.failed.connect(self._on_failed)
        self.clear()

    # -- CanvasTool ------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> None:
        self.state.press(ev)

    def move(self, ev: PointerEvent) -> None:
        band = self.state.move(ev)
        if band is not None:
            self.marks.set_marks(self.state.points, self.state.box, band)

    def release(self, ev: PointerEvent) -> None:
        if self.state.release(ev):
            self._request()
        self._draw_marks()

    def double_click(self, ev: PointerEvent) -> None:
        """A double click is two clicks for Qt: the second press/release already counted."""

    # -- keys ------------------------------------------------------------------------------
    def cycle(self) -> None:
        if self.state.cycle() is not None:
            self._show()

    def undo_last(self) -> None:
        if self.state.undo_last():
            if self.state.is_empty():
                self._settle()
                self._clear_mask()
                self._forget_scores()
            else:
                self._request()
            self._draw_marks()

    def clear(self) -> None:
        """Forget the prompt and its candidates (Esc, Enter, another image), and their
        scores in the status bar."""
        self.state.clear()
        self._settle()
        self._clear_mask()
        self._draw_marks()
        self._forget_scores()

    def _forget_scores(self) -> None:
        if self._scores_shown:
            self._scores_shown = False
            self.message.emit("")

    def accept(self, label: str | None = None) -> bool:
        """Store the chosen candidate as an instance of ``label`` (default: the current
        label)."""
        chosen = self.state.chosen_crop()
        image = self.session.image
        if chosen is None or image is None:
            self.message.emit("Nothing to accept: click on an object first")
            return False
        source = self.bridge.source
        score, label = self.state.chosen_score(), label or self.session.current_label

        def store(geom: Geometry | None) -> None:
            if geom is None:
                self.message.emit("The mask is empty: nothing was added")
            elif self.session.image is image:
                self.session.add_instance(geom, source, score, label)
                self.accepted.emit()

        self.clear()  # first: what the conversion says is not cleared with the candidate
        mask, x0, y0 = chosen
        run_sized(self.tasks, mask.size, crop_geometry, mask, x0, y0,
                  self.app_state.tolerance,
                  on_result=store, on_error=lambda exc: self.message.emit(str(exc)))
        return True

    def redraw(self) -> None:
        """Show the chosen candidate again (the label colour changed)."""
        self._show()

    def redraw_candidate(self) -> None:
        """Show the candidate again, if there is one (another label was picked)."""
        if self.state.result is not None:
            self._show()

    def has_prompt(self) -> bool:
        return not self.state.is_empty()

    def reset(self) -> None:
        """A new image: forget everything."""
        self.clear()

    # -- predictions -----------------------------------------------------------------------
    @property
    def pending(self) -> bool:
        """A prediction was asked for and is not answered yet."""
        return self._pending is not None

    def _request(self) -> None:
        prompt = self.state.prompt()
        if self.view is not None:
            prompt = dataclasses.replace(prompt, view=self.view())
        ready = self.instant(prompt) if self.instant is not None else None
        if ready is not None:  # the hover preview had it: no wait at all
            self._settle()
            self.state.set_result(ready)
            self._show(0.0)
            self.answered.emit(0.0)
            return
        self._pending = self.bridge.predict(prompt)
        if prompt.points:
            at = prompt.points[-1]
            self.requested.emit(at.x, at.y)
        elif prompt.box is not None:
            b = prompt.box
            self.requested.emit((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)

    def _settle(self) -> None:
        if self._pending is not None:
            self._pending = None
            self.settled.emit()

    def _on_predicted(self, request_id: int, result: MaskResult, latency_ms: float) -> None:
        if request_id != self._pending:
            return  # a newer click is on its way
        self._settle()
        self.state.set_result(result)
        self._show(latency_ms)
        self.answered.emit(latency_ms)

    def _on_failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "predict" and request_id == self._pending:
            self._settle()
            self.message.emit(f"Prediction failed: {message}")

    def _show(self, latency_ms: float | None = None) -> None:
        chosen = self.state.chosen_crop()
        colour = QColor(self.session.colour_of(self.session.current_label))
        self._shown += 1
        if chosen is None:
            self.mask.clear()
        else:  # fill + outline: inline for small masks, on the pool for large ones
            shown = self._shown
            mask, x0, y0 = chosen
            run_sized(self.tasks, mask.size, crop_overlay, mask, x0, y0, colour,
                      on_result=lambda ov: self._draw_overlay(shown, ov, colour))
        result = self.state.result
        if result is None:
            return
        scores = "  ".join(
            f"[{s:.2f}]" if i == self.state.chosen else f"{s:.2f}"
            for i, s in enumerate(np.asarray(result.scores).tolist()))
        text = f"Candidate {self.state.chosen + 1}/{len(result)}  scores {scores}"
        if latency_ms is not None:
            text += f"  ·  {latency_ms:.0f} ms"
        self._scores_shown = True
        self.message.emit(text)

    def _draw_overlay(self, shown: int, overlay: LiveOverlay | None, colour: QColor) -> None:
        if shown == self._shown:  # still the candidate to show
            self.mask.show(overlay, colour)

    def _clear_mask(self) -> None:
        self._shown += 1
        self.mask.clear()

    def _draw_marks(self) -> None:
        self.marks.set_marks(self.state.points, self.state.box)
