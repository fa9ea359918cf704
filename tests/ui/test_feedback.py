"""Issue 13, item 3 and the hover preview: a click being answered spins a ring where it was
made, with the encoder's progress (block by block) while it waits for the encode; the status
bar shows that progress and that the work is saved; resting the pointer previews the mask
where decoding is fast, and a click there takes the preview's answer at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from ui_helpers import (
    STEPS,
    TIMEOUT,
    SteppedPredictor,
    bridged,
    click,
    key,
    open_window,
    view_pos,
    wait_mask,
)

from app.ui.encode_progress import EncodeProgress
from app.ui.workers import PredictorBridge


@pytest.fixture
def stepped(qapp: object) -> Iterator[tuple[SteppedPredictor, PredictorBridge]]:
    yield from bridged(SteppedPredictor())


def test_a_click_waiting_for_the_encoder_shows_its_progress(
        qtbot: QtBot, image_folder: Path,
        stepped: tuple[SteppedPredictor, PredictorBridge]) -> None:
    predictor, bridge = stepped
    w = open_window(qtbot, image_folder, bridge)
    qtbot.waitUntil(lambda: w.status.encode.text() == "encoding 0%", timeout=TIMEOUT)
    assert w.status.encode_bar.isVisible() or not w.isVisible()
    click(qtbot, w, 70, 55)  # queued behind the encode
    ring = w.feedback.ring
    qtbot.waitUntil(lambda: ring.isVisible(), timeout=TIMEOUT)  # after a short delay
    assert (ring.pos().x(), ring.pos().y()) == pytest.approx(
        (w.sam_tool.state.points[-1].x, w.sam_tool.state.points[-1].y))
    assert ring.text == "encoding 0%"
    predictor.step.release(2)
    qtbot.waitUntil(lambda: ring.text == "encoding 50%", timeout=TIMEOUT)
    assert w.status.encode.text() == "encoding 50%" and w.status.encode_bar.value() == 50
    predictor.step.release(10**6)  # the rest, and the prefetches of the next images
    wait_mask(qtbot, w)
    assert not ring.isVisible() and not w.status.encode_bar.isVisible()
    assert "encoding" not in w.status.encode.text()
    # an answer slower than the ring's delay, with the embedding ready: the ring, no text
    predictor.answer.clear()
    click(qtbot, w, 60, 50)
    qtbot.waitUntil(lambda: ring.isVisible(), timeout=TIMEOUT)
    assert ring.text == ""
    predictor.answer.set()
    qtbot.waitUntil(lambda: not w.sam_tool.pending, timeout=TIMEOUT)
    assert not ring.isVisible()
    # Esc while waiting stops the ring at once
    predictor.answer.clear()
    click(qtbot, w, 60, 40)
    qtbot.waitUntil(lambda: ring.isVisible(), timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert not ring.isVisible()
    predictor.answer.set()
    w.close()


def test_the_status_bar_says_saved(qtbot: QtBot, image_folder: Path,
                                   classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    assert w.status.saved.text() == ""
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.status.saved.text().startswith("✓ saved"), timeout=TIMEOUT)
    assert w.project.path.name in w.status.saved.toolTip()
    w.close()


def test_encode_progress_is_told_for_the_shown_image_only() -> None:
    told: list[tuple[int, int]] = []
    predictor = SteppedPredictor(stepped=False)
    current = {"hash": "a"}
    proxy = EncodeProgress(predictor, lambda d, t: told.append((d, t)),
                           lambda h: h == current["hash"])
    image = np.zeros((4, 4, 3), np.uint8)
    proxy.embed(image, image_hash="b")  # a prefetch: quiet
    assert told == [] and predictor.encode_progress is None
    proxy.embed(image, image_hash="a")
    assert told == [(i, STEPS) for i in range(STEPS)]
    assert predictor.encode_progress is None  # unhooked after the encode
    assert proxy.model_id == "stepped"  # everything else is the predictor's


def test_hover_preview_and_a_click_there(qtbot: QtBot, image_folder: Path,
                                         qapp: object) -> None:
    predictor = SteppedPredictor(stepped=False)
    bridge = PredictorBridge(predictor)  # type: ignore[arg-type]
    try:
        w = open_window(qtbot, image_folder, bridge)
        qtbot.waitUntil(lambda: not w.feedback.waiting_for_encoder, timeout=TIMEOUT)
        hover = w.hover
        assert w.bridge.source.value == "sam2" and not hover.latencies
        assert hover.fast_enough()  # a local decoder, not measured yet: one probe tells
        vp = w.canvas.viewport()
        qtbot.mouseMove(vp, view_pos(w, 70, 55))
        there = w.canvas.mapToScene(view_pos(w, 70, 55))
        qtbot.waitUntil(lambda: hover.outline.isVisible()
                        and hover.previewed_at() == (there.x(), there.y()), timeout=TIMEOUT)
        assert not w.sam_tool.has_prompt() and w.sam_tool.state.result is None
        asked = predictor.predicts
        # a click exactly there: the preview's answer, no second decode
        click(qtbot, w, 70, 55)
        assert w.sam_tool.state.result is not None and w.mask_layer.pixels > 0
        assert predictor.predicts == asked and w.latency_label.text() == "click 0 ms"
        assert not hover.outline.isVisible()
        # with a prompt, resting the pointer asks nothing
        qtbot.mouseMove(vp, view_pos(w, 120, 100))
        qtbot.wait(300)
        assert predictor.predicts == asked and not hover.outline.isVisible()
        key(qtbot, w, Qt.Key.Key_Escape)
        # slow decodes turn the preview off
        hover.latencies.extend([400.0] * 5)
        assert not hover.fast_enough()
        qtbot.mouseMove(vp, view_pos(w, 70, 50))
        qtbot.wait(300)
        assert predictor.predicts == asked
        w.close()
    finally:
        predictor.close()
        bridge.close()


def test_no_preview_on_the_classical_backend(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.hover.latencies.extend([1.0] * 5)
    assert not w.hover.fast_enough()  # GrabCut: 0.2-0.8 s a click
    w.close()
