"""When a prefetch step waits for the person's next click (``ClickRhythm``): after an answer,
and before the first click on a newly shown image, each with its own usual pause."""

from __future__ import annotations

import pytest

from app.predict.service.rhythm import CLICK_GAP_MAX_S, STEP_SPREAD, ClickRhythm


def clicking(rhythm: ClickRhythm, start: float, gap: float, clicks: int) -> float:
    """``clicks`` clicks, each ``gap`` s after the previous answer (answered at once);
    returns the last answer's time."""
    t = start
    for _ in range(clicks):
        t += gap
        rhythm.clicked(t)
        rhythm.answered(t)
    return t


def test_nothing_is_held_before_a_rhythm_is_known() -> None:
    rhythm = ClickRhythm()
    assert rhythm.hold_until(0, 1.0) is None
    rhythm.new_image(0.0)
    rhythm.step_took(0, 0.4)
    assert rhythm.hold_until(0, 1.0) is None  # no first click seen yet
    rhythm.answered(2.0)
    assert rhythm.hold_until(0, 2.5) is None  # one answer: no pause known


def test_a_step_that_would_still_run_at_the_next_click_waits_for_it() -> None:
    rhythm = ClickRhythm()
    rhythm.new_image(0.0)
    last = clicking(rhythm, 0.0, 1.5, 4)
    rhythm.step_took(3, 0.4)
    # the next click is due 1.5 s after the answer; one 0.4 s step seen: it may last
    # 0.4 + 2 x 0.2 s (the deviation starts at half the length), so it may start until 0.7 s
    assert STEP_SPREAD == 2.0
    assert rhythm.hold_until(3, last + 0.6) is None
    assert rhythm.hold_until(3, last + 0.8) == pytest.approx(last + 3.0)
    # the window is over: the person stopped clicking, the prefetch goes on
    assert rhythm.hold_until(3, last + 3.0) is None
    # a step as long every time: its bound comes down to its length (may start until 1.1 s)
    for _ in range(30):
        rhythm.step_took(3, 0.4)
    assert rhythm.hold_until(3, last + 1.09) is None
    assert rhythm.hold_until(3, last + 1.11) == pytest.approx(last + 3.0)
    # a step whose length strays is given room: 0.3 or 0.5 s, alternately
    for k in range(30):
        rhythm.step_took(4, 0.3 if k % 2 else 0.5)
    # (bound about 0.62 s: it may start until about 0.88 s, not 1.1 s)
    assert rhythm.hold_until(4, last + 0.85) is None
    assert rhythm.hold_until(4, last + 0.92) == pytest.approx(last + 3.0)
    # an unknown step is taken to be as long as the longest known
    rhythm.step_took(5, 0.6)  # bound 1.2 s: may start until 0.3 s
    assert rhythm.hold_until(7, last + 0.25) is None
    assert rhythm.hold_until(7, last + 0.35) == pytest.approx(last + 3.0)


def test_the_first_click_on_a_new_image_has_its_own_pause() -> None:
    rhythm = ClickRhythm()
    rhythm.step_took(0, 0.4)
    rhythm.new_image(0.0)
    rhythm.clicked(4.0)  # the person looked at the image for 4 s
    rhythm.answered(4.0)
    last = clicking(rhythm, 4.0, 1.0, 3)  # then clicked every second
    rhythm.new_image(last)
    # not the pause after an answer (1 s) but the one after an image is shown (4 s); the
    # step may last 0.8 s (one seen, 0.4 s)
    assert rhythm.hold_until(0, last + 0.3) is None
    assert rhythm.hold_until(0, last + 3.1) is None
    assert rhythm.hold_until(0, last + 3.3) == pytest.approx(last + 8.0)
    rhythm.clicked(last + 3.0)  # the first click: the pauses after an answer are unchanged
    rhythm.answered(last + 3.0)
    assert rhythm.hold_until(0, last + 3.3) == pytest.approx(last + 5.0)


def test_a_long_pause_is_no_rhythm() -> None:
    rhythm = ClickRhythm()
    rhythm.step_took(0, 0.2)
    rhythm.new_image(0.0)
    rhythm.clicked(CLICK_GAP_MAX_S + 5.0)  # came back from a coffee
    rhythm.answered(CLICK_GAP_MAX_S + 5.0)
    rhythm.new_image(100.0)
    assert rhythm.hold_until(0, 101.0) is None
    last = clicking(rhythm, 100.0, 2.0, 2)
    rhythm.clicked(last + CLICK_GAP_MAX_S + 1.0)  # not a click pause either
    rhythm.answered(last + CLICK_GAP_MAX_S + 1.0)
    later = last + CLICK_GAP_MAX_S + 1.0
    assert rhythm.hold_until(0, later + 1.9) == pytest.approx(later + 4.0)
