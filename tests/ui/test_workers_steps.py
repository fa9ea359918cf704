"""The predictor bridge's stepped jobs (``run_steps``, issue 15): each step and the end come
back as signals on the GUI thread, with the real classical backend doing the work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot
from ui_helpers import scene_image

from app.core.project import Project
from app.core.record_pixels import RecordPixels
from app.core.types import EmbeddingKey, Point, Prompt
from app.predict.base import Predictor
from app.ui.workers import PredictorBridge

pytest.importorskip("av")
from video_helpers import SPEED, H, W, write_video  # noqa: E402


class Receiver(QObject):
    """Records the bridge's step signals and the thread they arrive on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()
        self.steps: list[tuple[int, object]] = []
        self.finished: list[tuple[int, object, bool]] = []

    @Slot(int, object)
    def step_done(self, request_id: int, item: object) -> None:
        self.threads.add(threading.get_ident())
        self.steps.append((request_id, item))

    @Slot(int, object, bool)
    def steps_finished(self, request_id: int, message: object, cancelled: bool) -> None:
        self.threads.add(threading.get_ident())
        self.finished.append((request_id, message, cancelled))


def connect(bridge: PredictorBridge) -> Receiver:
    rec = Receiver()
    bridge.step_done.connect(rec.step_done)
    bridge.steps_finished.connect(rec.steps_finished)
    return rec


def frames(n: int, *, fail_at: int | None = None, gate: threading.Event | None = None,
           entered: threading.Event | None = None,
           closed: list[str] | None = None,
           made_with: list[Predictor] | None = None):  # noqa: ANN201
    """A job encoding ``n`` generated frames with the predictor, one per step; step 1 sets
    ``entered`` and waits for ``gate``; ``closed`` gets the thread that closed it."""

    def make(predictor: Predictor) -> Iterator[EmbeddingKey]:
        if made_with is not None:
            made_with.append(predictor)
        try:
            for i in range(n):
                if i == fail_at:
                    raise ValueError(f"frame {i}: cannot be decoded")
                if i == 1 and gate is not None and entered is not None:
                    entered.set()
                    assert gate.wait(10)
                yield predictor.embed(scene_image(seed=i), image_hash=f"frame-{i}")
        finally:
            if closed is not None:
                closed.append(threading.current_thread().name)

    return make


def test_steps_and_the_end_arrive_on_the_gui_thread(qtbot: QtBot,
                                                    classical_bridge: PredictorBridge) -> None:
    rec = connect(classical_bridge)
    made_with: list[Predictor] = []
    request_id, _token = classical_bridge.run_steps(frames(3, made_with=made_with))
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=15000)
    assert made_with == [classical_bridge.predictor]  # the backend, not the service's wrapper
    assert rec.threads == {threading.get_ident()}
    assert [(r, k.image_hash) for r, k in rec.steps] == [  # type: ignore[attr-defined]
        (request_id, "frame-0"), (request_id, "frame-1"), (request_id, "frame-2")]
    assert rec.finished == [(request_id, None, False)]


def test_a_failed_step_is_told_with_its_message(qtbot: QtBot,
                                                classical_bridge: PredictorBridge) -> None:
    rec = connect(classical_bridge)
    request_id, _token = classical_bridge.run_steps(frames(4, fail_at=2))
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=15000)
    assert len(rec.steps) == 2
    assert rec.finished == [(request_id, "frame 2: cannot be decoded", False)]


def test_cancel_keeps_the_steps_done(qtbot: QtBot, classical_bridge: PredictorBridge) -> None:
    rec = connect(classical_bridge)
    gate, entered, closed = threading.Event(), threading.Event(), []
    request_id, token = classical_bridge.run_steps(
        frames(5, gate=gate, entered=entered, closed=closed))
    assert entered.wait(15)
    token.cancel()  # step 1 is waiting on the gate: it finishes, no step 2
    gate.set()
    qtbot.waitUntil(lambda: bool(rec.finished), timeout=15000)
    assert [k.image_hash for _, k in rec.steps] == ["frame-0", "frame-1"]  # type: ignore[attr-defined]
    assert rec.finished == [(request_id, None, True)] and closed == ["maskloop-predictor"]


class Masks(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.results: list[tuple[int, object]] = []

    @Slot(int, object, float)
    def predicted(self, request_id: int, result: object, latency: float) -> None:
        self.results.append((request_id, result))


def test_a_video_frame_is_the_current_image(qtbot: QtBot, tmp_path: Path,
                                            classical_bridge: PredictorBridge) -> None:
    """A frame is not a file: the bridge encodes it through ``set_image_loader`` with the
    project's ``RecordPixels``, and a click on the moving object segments it there."""
    root = tmp_path / "images"
    root.mkdir()
    write_video(root / "clip.mp4", frames=12)
    project = Project.create(tmp_path / "p.maskloop", root)
    try:
        seq = project.sequences.add(root / "clip.mp4")
        assert seq.id is not None
        record = project.sequences.frame_image(seq.id, 10)
        with RecordPixels(project) as pixels:
            masks = Masks()
            classical_bridge.predicted.connect(masks.predicted)
            classical_bridge.set_image_loader(record.content_hash,
                                              lambda: pixels.load(record))
            x = 40 + SPEED * 10 + 58  # inside the object on frame 10, outside on frame 0
            request_id = classical_bridge.predict(Prompt((Point(x + 0.5, 55.5),)))
            qtbot.waitUntil(lambda: bool(masks.results), timeout=15000)
        [(rid, result)] = masks.results
        mask = result.masks[0]  # type: ignore[attr-defined]
        assert rid == request_id and mask.shape == (H, W)
        assert mask[55, x] and not mask[55, 20]
        cached = classical_bridge.images.get_with(record.content_hash, not_loaded_again)
        assert np.array_equal(cached, pixels_reference(root / "clip.mp4", 10))
    finally:
        project.close()


def not_loaded_again() -> np.ndarray:
    raise AssertionError("the frame should be in the bridge's image store")


def pixels_reference(path: Path, index: int) -> np.ndarray:
    from app.core.sequences import open_sequence

    with open_sequence(path) as seq:
        return np.array(seq.frame(index))
