"""Hover preview: with the SAM tool and no prompt yet, resting the pointer on an object shows
(dashed) the mask a click there would give. Only where the backend decodes fast enough (a
local SAM2 with the image's embedding ready: tens of ms on a GPU or a fast CPU; never the
classical backend, never while the image is still being encoded), and never in the way of a
real click: nothing is asked while a click is awaited, a click drops a preview still queued,
and a click exactly where the preview was asked takes its answer at once."""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtGui import QColor

from app.core.types import MaskResult, Point, Prompt, Source
from app.interaction.prompt_tool import candidate_crop
from app.ui.app_state import AppState
from app.ui.canvas.convert import LiveOverlay
from app.ui.canvas.feedback import PreviewOutline
from app.ui.canvas.view import CanvasView
from app.ui.tasks import TaskRunner, run_sized
from app.ui.tools.sam_tool import SamTool, crop_overlay

REST_MS = 90  # the pointer rests this long before a preview is asked for
MAX_MS = 150.0  # decodes slower than this (median of the last ones): no preview


class HoverPreview(QObject):
    """Asks the predictor for the mask under a resting pointer and shows its outline."""

    def __init__(self, state: AppState, canvas: CanvasView, tool: SamTool, tasks: TaskRunner,
                 *, waiting_for_encoder: Callable[[], bool],
                 proposals_busy: Callable[[], bool], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state, self.canvas, self.tool, self.tasks = state, canvas, tool, tasks
        self.waiting_for_encoder = waiting_for_encoder  # the image is still being encoded
        self.proposals_busy = proposals_busy  # segment everything / find all is running
        self.enabled = state.hover_preview
        state.hover_preview_changed.connect(self._set_enabled)
        self.max_ms = MAX_MS
        self.outline = PreviewOutline()
        canvas.scene().addItem(self.outline)
        self.latencies: deque[float] = deque(maxlen=5)
        self._at: tuple[float, float] | None = None  # the resting pointer
        self._request: tuple[int, float, float, float] | None = None  # id, x, y, t0
        self._result: tuple[float, float, MaskResult] | None = None
        self._shown = 0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REST_MS)
        self._timer.timeout.connect(self._ask)
        canvas.cursor_moved.connect(self._moved)
        tool.instant = self.result_for
        tool.requested.connect(lambda *_: self.clear())
        tool.answered.connect(self._click_answered)
        state.image_changed.connect(lambda _: self._new_image())
        self._bridge: object = None
        self.set_bridge(state.bridge)
        state.backend_changed.connect(self.set_bridge)

    def _set_enabled(self, on: bool) -> None:
        self.enabled = on

    def set_bridge(self, bridge: object) -> None:
        old = self._bridge
        if old is not None:
            old.predicted.disconnect(self._on_predicted)  # type: ignore[attr-defined]
            old.failed.disconnect(self._on_failed)  # type: ignore[attr-defined]
        self._bridge = bridge
        bridge.predicted.connect(self._on_predicted)  # type: ignore[attr-defined]
        bridge.failed.connect(self._on_failed)  # type: ignore[attr-defined]
        self.latencies.clear()
        self._new_image()

    # -- when -----------------------------------------------------------------------------
    def fast_enough(self) -> bool:
        bridge = self.state.bridge
        if bridge.is_classical:
            return False
        if self.latencies:
            return statistics.median(self.latencies) <= self.max_ms
        return bridge.source == Source.SAM2  # a local decoder: one probe to measure it

    def _may_ask(self) -> bool:
        tool = self.tool
        return (self.enabled and self._at is not None and self._request is None
                and self.canvas.tool is tool and not tool.has_prompt() and not tool.pending
                and not self.waiting_for_encoder() and not self.proposals_busy()
                and self.state.image is not None
                and self.canvas.image_size is not None and self.fast_enough())

    def _moved(self, x: float, y: float) -> None:
        size = self.canvas.image_size
        inside = size is not None and 0 <= x < size[0] and 0 <= y < size[1]
        self._at = (x, y) if inside else None
        if not self.enabled:
            return
        if not inside or self.canvas.tool is not self.tool \
                or self.tool.has_prompt():
            self._forget_shown()
            return
        self._timer.start()

    def _ask(self) -> None:
        if not self._may_ask() or self._at is None:
            return
        x, y = self._at
        prompt = Prompt(points=(Point(x, y, True),), multimask=True,
                        view=self.canvas.visible_image_rect())
        self._request = (self.state.bridge.predict(prompt), x, y, time.perf_counter())

    # -- answers --------------------------------------------------------------------------
    def _on_predicted(self, request_id: int, result: MaskResult, latency_ms: float) -> None:
        req = self._request
        if req is None or request_id != req[0]:
            return
        self._request = None
        self.latencies.append((time.perf_counter() - req[3]) * 1000.0)
        tool = self.tool
        if tool.has_prompt() or tool.pending or self.canvas.tool is not tool \
                or len(result) == 0:
            return
        self._result = (req[1], req[2], result)
        mask, x0, y0 = candidate_crop(result, result.best)  # a crop on tiled images
        colour = QColor(self.state.session.colour_of(self.state.label))
        self._shown += 1
        shown = self._shown
        run_sized(self.tasks, mask.size, crop_overlay, mask, x0, y0, colour,
                  on_result=lambda ov: self._draw(shown, ov, colour))
        if self._at is not None and self._at != (req[1], req[2]):
            self._timer.start()  # the pointer moved on meanwhile: ask for where it is now

    def _draw(self, shown: int, overlay: LiveOverlay | None, colour: QColor) -> None:
        if shown != self._shown or overlay is None:
            return
        if self.tool.has_prompt() or self.canvas.tool is not self.tool:
            return
        self.outline.show_path(overlay.outline, colour)

    def _on_failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "predict" and self._request is not None and request_id == self._request[0]:
            self._request = None

    def _click_answered(self, latency_ms: float) -> None:
        self._forget_shown()  # the click's own mask is shown now
        if latency_ms > 0 and not self.waiting_for_encoder():
            self.latencies.append(latency_ms)

    def previewed_at(self) -> tuple[float, float] | None:
        """Where the shown preview was asked for (image coordinates)."""
        return (self._result[0], self._result[1]) if self._result is not None else None

    # -- a click --------------------------------------------------------------------------
    def result_for(self, prompt: Prompt) -> MaskResult | None:
        """The preview's answer when ``prompt`` is the one it asked (one positive point
        exactly there), else None (the click is asked for as usual)."""
        found = self._result
        if (found is None or prompt.box is not None or prompt.mask_input is not None
                or len(prompt.points) != 1 or not prompt.points[0].positive):
            return None
        p = prompt.points[0]
        return found[2] if (p.x, p.y) == (found[0], found[1]) else None

    def clear(self) -> None:
        """A real click (or another image): the preview goes, one still queued is dropped
        by the predictor (a newer request replaces it)."""
        self._timer.stop()
        self._request = None
        self._forget_shown()

    def _forget_shown(self) -> None:
        self._shown += 1
        self._result = None
        self.outline.clear()

    def _new_image(self) -> None:
        self.clear()
        self._at = None
