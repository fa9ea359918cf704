"""The SAM prompt tool: clicks and a box become a ``Prompt``; candidates are cycled.

Left click adds a positive point, right click or Shift+click a negative one, a left drag
draws a box. Each new prompt carries the chosen candidate's low-res logits so SAM refines
the mask the person is looking at rather than starting over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.core.types import Box, MaskResult, Point, Prompt
from app.interaction.events import Button, PointerEvent

MIN_BOX_SIDE = 2.0  # image pixels; smaller drags count as clicks


def candidate_crop(result: MaskResult, index: int) -> tuple[np.ndarray, int, int]:
    """Candidate ``index`` as (bool mask, x0, y0) in image pixels: the result's own crop when
    it offers one (a tiled result on a large image, whose full-size mask would be hundreds
    of MB), else the full-size mask at (0, 0). Duck-typed: ``interaction`` cannot import
    the predictors that make such results."""
    crop = getattr(result, "crop", None)
    if callable(crop):
        mask, x0, y0 = crop(index)
        return np.asarray(mask, dtype=bool), int(x0), int(y0)
    return result.mask(index), 0, 0


@dataclass
class _Step:
    """One prompt change, remembered so Backspace can undo it."""

    point: Point | None = None
    previous_box: Box | None = None
    is_box: bool = False


class PromptTool:
    """Collects points and a box; owns the current candidates and the chosen one."""

    def __init__(self) -> None:
        self.points: list[Point] = []
        self.box: Box | None = None
        self.result: MaskResult | None = None
        self.chosen: int = 0
        self._steps: list[_Step] = []
        self._press: PointerEvent | None = None
        self._dragging = False
        self._logits: np.ndarray | None = None  # chosen candidate's logits, for refinement
        self.bounds: tuple[float, float] | None = None  # (width, height): clicks outside ignored

    # -- pointer ---------------------------------------------------------------------------
    def _inside(self, x: float, y: float) -> bool:
        return self.bounds is None or (0 <= x < self.bounds[0] and 0 <= y < self.bounds[1])

    def _clamp(self, box: Box) -> Box:
        if self.bounds is None:
            return box
        w, h = self.bounds
        return Box(max(0.0, min(w, box.x0)), max(0.0, min(h, box.y0)),
                   max(0.0, min(w, box.x1)), max(0.0, min(h, box.y1)))

    def press(self, ev: PointerEvent) -> None:
        """Start a click or a drag (ignored outside the image)."""
        if ev.button in (Button.LEFT, Button.RIGHT) and self._inside(ev.x, ev.y):
            self._press = ev
            self._dragging = False

    def move(self, ev: PointerEvent) -> Box | None:
        """Returns the rubber-band box while a left drag is in progress, else None."""
        p = self._press
        if p is None or p.button != Button.LEFT or p.shift:
            return None
        if not self._dragging and ev.distance_to(p.x, p.y) > p.radius:
            self._dragging = True
        return self._clamp(Box(p.x, p.y, ev.x, ev.y).normalized()) if self._dragging else None

    def release(self, ev: PointerEvent) -> bool:
        """Finish a click or drag; True when the prompt changed (ask for a new prediction)."""
        p = self._press
        self._press = None
        if p is None:
            return False
        if self._dragging:
            self._dragging = False
            box = self._clamp(Box(p.x, p.y, ev.x, ev.y).normalized())
            if box.width < MIN_BOX_SIDE or box.height < MIN_BOX_SIDE:
                return False
            self._steps.append(_Step(previous_box=self.box, is_box=True))
            self.box = box
            return True
        positive = p.button == Button.LEFT and not p.shift
        point = Point(p.x, p.y, positive)
        self.points.append(point)
        self._steps.append(_Step(point=point))
        return True

    def cancel_drag(self) -> None:
        self._press = None
        self._dragging = False

    # -- keyboard --------------------------------------------------------------------------
    def undo_last(self) -> bool:
        """Remove the last click (or box); True when something was removed."""
        if not self._steps:
            return False
        step = self._steps.pop()
        if step.is_box:
            self.box = step.previous_box
        elif step.point is not None and self.points:
            self.points.pop()
        self._logits = None  # the refinement chain no longer matches the prompt
        if self.is_empty():
            self.result = None
        return True

    def clear(self) -> None:
        self.points.clear()
        self.box = None
        self.result = None
        self.chosen = 0
        self._steps.clear()
        self._logits = None
        self.cancel_drag()

    def cycle(self) -> int | None:
        """Choose the next candidate; returns its index, or None without candidates."""
        if self.result is None or len(self.result) == 0:
            return None
        self.chosen = (self.chosen + 1) % len(self.result)
        self._logits = self.result.logits_for(self.chosen)
        return self.chosen

    # -- prediction ------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.points and self.box is None

    def prompt(self) -> Prompt:
        """The prompt to send now: current points, box, and the chosen candidate's logits."""
        return Prompt(points=tuple(self.points), box=self.box, mask_input=self._logits,
                      multimask=True)

    def set_result(self, result: MaskResult) -> None:
        """A prediction arrived: choose its best candidate and remember its logits."""
        self.result = result
        self.chosen = result.best
        self._logits = result.logits_for(self.chosen) if len(result) else None

    def has_candidate(self) -> bool:
        """A prediction with at least one candidate is at hand."""
        return self.result is not None and len(self.result) > 0

    def chosen_mask(self) -> np.ndarray | None:
        """The chosen candidate's full-size mask (``chosen_crop`` spares making it)."""
        if self.result is None or len(self.result) == 0:
            return None
        return self.result.mask(self.chosen)

    def chosen_crop(self) -> tuple[np.ndarray, int, int] | None:
        """The chosen candidate as (mask, x0, y0) (``candidate_crop``), None without one."""
        if self.result is None or len(self.result) == 0:
            return None
        return candidate_crop(self.result, self.chosen)

    def chosen_score(self) -> float | None:
        if self.result is None or len(self.result) == 0:
            return None
        return float(self.result.scores[self.chosen])
