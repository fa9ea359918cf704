"""Every prompt the window sends carries the part of the image on screen (``Prompt.view``):
the classical backend on a large image takes it as the scale of a click alone
(``app/predict/tiles/region.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, SteppedPredictor, bridged, click, open_window, wait_mask

from app.core.types import Box, EmbeddingKey, MaskResult, Prompt
from app.ui.workers import PredictorBridge


class RecordingPredictor(SteppedPredictor):
    """Answers the bright pixels at once and keeps every prompt it was given."""

    def __init__(self) -> None:
        super().__init__(stepped=False)
        self.prompts: list[Prompt] = []

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        self.prompts.append(prompt)
        return super().predict(key, prompt)


@pytest.fixture
def recording(qapp: object) -> Iterator[tuple[SteppedPredictor, PredictorBridge]]:
    yield from bridged(RecordingPredictor())


def area(box: Box) -> float:
    return box.width * box.height


def test_a_click_sends_what_is_on_screen(
        qtbot: QtBot, image_folder: Path,
        recording: tuple[SteppedPredictor, PredictorBridge]) -> None:
    predictor, bridge = recording
    assert isinstance(predictor, RecordingPredictor)
    w = open_window(qtbot, image_folder, bridge)
    w.hover.enabled = False  # only the clicks' prompts
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    fitted = predictor.prompts[-1].view
    assert fitted is not None  # the whole 160 x 120 image is fitted in the window
    assert (fitted.x0, fitted.y0, fitted.x1, fitted.y1) == pytest.approx((0, 0, 160, 120),
                                                                         abs=1.0)
    w.canvas.zoom_by(4.0)
    w.canvas.centerOn(70, 55)
    qtbot.waitUntil(lambda: w.canvas.visible_image_rect() != fitted, timeout=TIMEOUT)
    seen = w.canvas.visible_image_rect()
    assert seen is not None and area(seen) < area(fitted) / 4
    sent = len(predictor.prompts)
    click(qtbot, w, 72, 57)
    qtbot.waitUntil(lambda: len(predictor.prompts) > sent, timeout=TIMEOUT)
    zoomed = predictor.prompts[-1].view
    assert zoomed == seen
    assert zoomed is not None and zoomed.x0 <= 72 <= zoomed.x1 and zoomed.y0 <= 57 <= zoomed.y1
    # the view is not part of what was asked: the same clicks seen otherwise are equal
    assert predictor.prompts[-1] == Prompt(points=predictor.prompts[-1].points,
                                           multimask=predictor.prompts[-1].multimask)
    w.close()
