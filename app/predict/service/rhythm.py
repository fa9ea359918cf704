"""When the person's next click is due (resumable encodes only): the prediction service holds
a prefetch step back rather than let a click wait for speculative work.

``ClickRhythm`` learns as it goes the person's usual pause between an answer and the next
click, and each encoder step's usual length. It has no lock of its own: the service calls
it under its lock.
"""

from __future__ import annotations

CLICK_GAP_MAX_S = 10.0  # a longer pause between an answer and the next click is not clicking


def _average(old: float | None, new: float) -> float:
    """The running average: a new measure weighs 0.3."""
    return new if old is None else 0.7 * old + 0.3 * new


class ClickRhythm:
    """The click rhythm: the last answer, the usual pause after an answer, the usual length of
    each encoder step (by its index)."""

    def __init__(self) -> None:
        self._answered_at: float | None = None
        self._gap: float | None = None
        self._step_s: dict[int, float] = {}

    def clicked(self, now: float) -> None:
        """A click came at ``now``: its pause after the last answer (unless the person had
        stopped clicking) joins the usual pause."""
        if self._answered_at is not None and now - self._answered_at < CLICK_GAP_MAX_S:
            self._gap = _average(self._gap, now - self._answered_at)

    def answered(self, now: float) -> None:
        """A click was answered at ``now``."""
        self._answered_at = now

    def new_image(self) -> None:
        """Another image: the pause before its first click is no click rhythm."""
        self._answered_at = None

    def step_took(self, index: int, seconds: float) -> None:
        """Encoder step ``index`` ran for ``seconds``."""
        self._step_s[index] = _average(self._step_s.get(index), seconds)

    def hold_until(self, step_index: int, now: float) -> float | None:
        """If encoder step ``step_index`` started ``now`` would likely still run when the next
        click comes (the usual pause after an answer, less the step's usual length): the end
        of the window in which that click is expected (twice the usual pause), until which
        the step should wait. None when it may run: no rhythm known yet, too early, or the
        person stopped clicking (the window is over)."""
        gap, answered = self._gap, self._answered_at
        if gap is None or answered is None:
            return None
        known = list(self._step_s.values())
        step = self._step_s.get(step_index, max(known) if known else 0.0)
        start, end = answered + gap - step, answered + 2.0 * gap
        if now < start or now >= end:
            return None
        return end
