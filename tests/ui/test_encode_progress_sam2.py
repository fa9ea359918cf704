"""Issue 13, item 3: the encode's progress comes from the SAM2 encoder's own steps (the stem,
its Hiera blocks, then the head), for the image shown; a real tiny SAM2.1 with random weights on the
CPU (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot
from ui_helpers import scene_image, write_png

from app.predict.service.types import Phase, ProgressEvent

pytestmark = pytest.mark.slow

SLOW = 240000  # ms: a CPU encode on a busy 2-core machine


class Progress(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[ProgressEvent] = []

    @Slot(object)
    def progress(self, event: ProgressEvent) -> None:
        self.seen.append(event)


def test_the_bridge_tells_each_encoder_step(qtbot: QtBot, tmp_path: Path,
                                            sam2_tiny_checkpoint: tuple[Path, str]) -> None:
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor
    from app.ui.workers import PredictorBridge

    path, config = sam2_tiny_checkpoint
    predictor = SAM2Predictor(path, config, "random-tiny", "cpu",
                              EmbeddingCache(disk_dir=tmp_path / "emb"))
    steps = len(predictor.model.image_encoder.trunk.blocks) + 2
    assert steps == 14  # Hiera tiny: the stem, 12 blocks and the head
    told: list[tuple[int, int]] = []
    predictor.encode_progress = lambda d, t: told.append((d, t))
    predictor.embed(np.zeros((64, 80, 3), np.uint8), image_hash="direct")
    assert told == [(i, steps) for i in range(steps)]
    predictor.encode_progress = None
    bridge = PredictorBridge(predictor)
    seen = Progress()
    bridge.progress.connect(seen.progress)
    try:
        image = write_png(tmp_path / "a.png", scene_image())
        bridge.set_image("a", image)
        qtbot.waitUntil(lambda: ProgressEvent(Phase.ENCODED, 1, 1, "a") in seen.seen,
                        timeout=SLOW)
        encoding = [(e.done, e.total) for e in seen.seen
                    if e.phase is Phase.ENCODING and e.image_hash == "a" and e.total > 1]
        assert encoding == [(i, steps) for i in range(steps)]
        assert predictor.encode_progress is None  # unhooked after the encode
    finally:
        bridge.close()
