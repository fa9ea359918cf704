"""When the person's next click is due (resumable encodes only): the prediction service holds
a prefetch step back rather than let a click wait for speculative work.

``ClickRhythm`` learns as it goes the person's usual pause between an answer and the next
click, the usual pause between an image being shown and its first click (people look at a
new image before they click, longer than between two clicks), and each encoder step's usual
length. It has no lock of its own: the service calls it under its lock.
"""

from __future__ import annotations

CLICK_GAP_MAX_S = 10.0  # a longer pause between an answer and the next click is not clicking
STEP_SPREAD = 2.0  # a step is expected to last its usual length plus this many usual deviations


def _average(old: float | None, new: float) -> float:
    """The running average: a new measure weighs 0.3."""
    return new if old is None else 0.7 * old + 0.3 * new


class ClickRhythm:
    """The click rhythm: the last answer, when the image was shown (until its first click), the
    usual pause after an answer and after an image is shown, the usual length of each encoder
    step (by its index)."""

    def __init__(self) -> None:
        self._answered_at: float | None = None
        self._gap: float | None = None
        self._shown_at: float | None = None
        self._first_gap: float | None = None
        self._step_s: dict[int, float] = {}
        self._step_dev: dict[int, float] = {}

    def clicked(self, now: float) -> None:
        """A click came at ``now``: its pause after the last answer, or after the image was
        shown for its first click (unless the person had stopped clicking), joins the usual
        pause of its kind."""
        if self._answered_at is not None:
            if now - self._answered_at < CLICK_GAP_MAX_S:
                self._gap = _average(self._gap, now - self._answered_at)
        elif self._shown_at is not None and now - self._shown_at < CLICK_GAP_MAX_S:
            self._first_gap = _average(self._first_gap, now - self._shown_at)
        self._shown_at = None

    def answered(self, now: float) -> None:
        """A click was answered at ``now``."""
        self._answered_at = now

    def new_image(self, now: float) -> None:
        """Another image was shown at ``now``: its first click is expected after the usual
        pause before a first click, not after the last answer on the previous image."""
        self._answered_at = None
        self._shown_at = now

    def step_took(self, index: int, seconds: float) -> None:
        """Encoder step ``index`` ran for ``seconds``: its usual length and how far from it
        a run strays (the way TCP estimates a round trip: a step that runs long on a busy
        machine must not make a click wait, so a step is expected to last its mean plus
        ``STEP_SPREAD`` mean deviations; the deviation starts at half the first length)."""
        mean = self._step_s.get(index)
        if mean is None:
            self._step_dev[index] = seconds / 2.0
        else:
            self._step_dev[index] = _average(self._step_dev[index], abs(seconds - mean))
        self._step_s[index] = _average(mean, seconds)

    def _step_bound(self, index: int) -> float:
        """How long step ``index`` is expected to last at most (an unknown step: as long as
        the longest known)."""
        bounds = {i: m + STEP_SPREAD * self._step_dev[i] for i, m in self._step_s.items()}
        return bounds.get(index, max(bounds.values(), default=0.0))

    def hold_until(self, step_index: int, now: float) -> float | None:
        """If encoder step ``step_index`` started ``now`` would likely still run when the next
        click comes (the usual pause after an answer, less the step's usual length): the end
        of the window in which that click is expected (twice the usual pause), until which
        the step should wait. None when it may run: no rhythm known yet, too early, or the
        person stopped clicking (the window is over). Before an image's first click the
        window follows the usual pause after an image is shown."""
        gap: float | None = self._gap
        answered: float | None = self._answered_at
        if answered is None:
            gap, answered = self._first_gap, self._shown_at
        if gap is None or answered is None:
            return None
        start, end = answered + gap - self._step_bound(step_index), answered + 2.0 * gap
        if now < start or now >= end:
            return None
        return end
