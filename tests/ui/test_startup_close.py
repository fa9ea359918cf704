"""Start-up before the predictor exists (it is built after the window is shown) and closing
the window while the worker is busy: a scripted predictor whose encode waits on an event
forces every ordering (nothing is timed)."""

from __future__ import annotations

import argparse
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, click, drag, key, open_window, wait_mask

from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.types import EmbeddingKey, MaskResult, Prompt, Source
from app.predict.base import Capabilities, Predictor, SourceKind
from app.predict.classical.predictor import ClassicalPredictor
from app.ui.app import Launcher
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings
from app.ui.startup import LoadingPredictor, StartupBuild, load_in_background
from app.ui.workers import PredictorBridge

WAIT = 10.0  # s a test waits for an event before giving up (never reached when passing)


class GatedPredictor:
    """``embed`` blocks on ``gate`` without looking at its cancel token, like a SAM2
    forward pass; ``predict`` answers the pixels with the clicked pixel's red value."""

    model_id = "gated"
    description = "gated test predictor"
    capabilities = Capabilities(SourceKind.SAM2, "test")

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.embedding = threading.Event()  # set when an encode started
        self.tokens: list[CancelToken | None] = []
        self.image: np.ndarray | None = None
        self.closed = threading.Event()

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        self.tokens.append(cancel)
        self.embedding.set()
        self.gate.wait(WAIT)
        self.image = image
        return EmbeddingKey(image_hash or "", self.model_id)

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        assert self.image is not None
        p = prompt.points[-1]
        red = self.image[..., 0]
        mask = red == red[int(p.y), int(p.x)]
        return MaskResult(mask[None], np.array([0.9], np.float32),
                          np.zeros((1, 256, 256), np.float32))

    def segment_everything(self, *args: object, **kwargs: object) -> list[object]:
        return []

    def close(self) -> None:
        self.closed.set()


def start_loading(qtbot: QtBot, folder: Path, build: Callable[[], Predictor],
                  ) -> tuple[Launcher, LoadingPredictor]:
    """What ``run`` does with a StartupBuild: the window opens on a stand-in predictor."""
    loading = LoadingPredictor("SAM2 test")
    launcher = Launcher(PredictorBridge(loading), GuiSettings(label_popup=False),
                        interactive=False)
    load_in_background(launcher, loading, StartupBuild("SAM2 test", build, ClassicalPredictor))
    launcher.open(folder)
    qtbot.waitUntil(lambda: launcher.window is not None, timeout=TIMEOUT)
    return launcher, loading


def window_of(launcher: Launcher) -> MainWindow:
    assert launcher.window is not None
    return launcher.window


def test_the_window_works_before_the_predictor_is_built_and_queued_clicks_are_answered(
        qtbot: QtBot, image_folder: Path) -> None:
    built = threading.Event()

    def slow_build() -> Predictor:
        built.wait(WAIT)
        return ClassicalPredictor()

    launcher, loading = start_loading(qtbot, image_folder, slow_build)
    w = window_of(launcher)
    try:
        assert "Loading SAM2 test" in w.backend_label.text()
        qtbot.waitUntil(lambda: w.canvas.image_size == (160, 120), timeout=TIMEOUT)
        w.canvas.fit()
        key(qtbot, w, Qt.Key.Key_R)  # manual drawing while the model loads
        drag(qtbot, w, (100, 20), (140, 60))
        assert [i.source for i in w.session.instances()] == [Source.MANUAL]
        key(qtbot, w, Qt.Key.Key_S)
        click(qtbot, w, 70, 55)  # a SAM click before the predictor exists: queued
        assert w.sam_tool.state.result is None and loading.loaded is None
        built.set()
        wait_mask(qtbot, w)  # answered once the predictor is in
        assert w.mask_layer.pixels > 1000
        assert "Classical" in w.backend_label.text()
        key(qtbot, w, Qt.Key.Key_Return)
        assert [i.source for i in w.session.instances()] == [Source.MANUAL, Source.CLASSICAL]
    finally:
        built.set()
        w.close()
        launcher.bridge.close()


def test_a_checkpoint_that_fails_to_load_falls_back_to_classical(
        qtbot: QtBot, image_folder: Path, tmp_path: Path) -> None:
    from app.cli.backend import predictor_from_args

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a checkpoint")
    args = argparse.Namespace(checkpoint=bad, config="tiny", model=None, device="cpu")
    launcher, loading = start_loading(qtbot, image_folder,
                                      lambda: predictor_from_args(args, backend="sam2"))
    w = window_of(launcher)
    try:
        qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
        w.canvas.fit()
        key(qtbot, w, Qt.Key.Key_R)
        drag(qtbot, w, (100, 20), (140, 60))
        qtbot.waitUntil(lambda: "Could not load" in w.statusBar().currentMessage(),
                        timeout=60000)  # importing torch takes a while on a busy machine
        message = w.statusBar().currentMessage()
        assert "SAM2 test" in message and "Classical" in message
        assert "Classical" in w.backend_label.text() and w.get_model_button.isVisibleTo(w)
        assert len(w.session.instances()) == 1  # the annotations are left alone
        key(qtbot, w, Qt.Key.Key_S)
        click(qtbot, w, 70, 55)
        wait_mask(qtbot, w)
    finally:
        w.close()
        launcher.bridge.close()


def test_gui_cmd_loads_sam2_after_the_window_and_reports_bad_options_before(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli.gui_cmd import build_parser, main, startup_predictor

    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"only its existence is checked before the window")
    plan = startup_predictor(build_parser().parse_args(
        [str(tmp_path), "--checkpoint", str(checkpoint)]))
    assert isinstance(plan, StartupBuild) and plan.name == "SAM2 mine.pt"
    classical = startup_predictor(build_parser().parse_args(["--backend", "classical"]))
    assert isinstance(classical, ClassicalPredictor)
    assert main([str(tmp_path), "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err


def intact(path: Path) -> list[Source]:
    """The sources of the project's instances, after SQLite's integrity check passed."""
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with Project.open(path) as project:
        return [i.source for i in project.all_instances()]


def draw_box_then_sam(qtbot: QtBot, w: MainWindow) -> None:
    key(qtbot, w, Qt.Key.Key_R)
    drag(qtbot, w, (100, 20), (140, 60))
    assert len(w.session.instances()) == 1
    key(qtbot, w, Qt.Key.Key_S)


def test_closing_with_a_mask_result_queued(qtbot: QtBot, image_folder: Path) -> None:
    predictor = GatedPredictor()
    predictor.gate.set()
    bridge = PredictorBridge(predictor)
    w = open_window(qtbot, image_folder, bridge)
    path = w.project.path
    try:
        draw_box_then_sam(qtbot, w)
        click(qtbot, w, 70, 55)
        deadline = time.monotonic() + WAIT  # no Qt events meanwhile: the answer stays queued
        while bridge.service.stats.masks < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.service.stats.masks == 1 and w.sam_tool.state.result is None
        w.close()  # the project is closed; then the queued answer arrives
        qtbot.wait(100)
        assert w.sam_tool.state.result is None  # dropped, without touching the project
        w.session.add_instance(box(2, 2, 8, 8), Source.MANUAL)  # a late polygon: ignored
    finally:
        bridge.close()
    assert intact(path) == [Source.MANUAL]


def test_closing_while_encoding_does_not_wait_for_the_encode(
        qtbot: QtBot, image_folder: Path) -> None:
    predictor = GatedPredictor()
    bridge = PredictorBridge(predictor)
    w = open_window(qtbot, image_folder, bridge)
    path = w.project.path
    try:
        draw_box_then_sam(qtbot, w)
        assert predictor.embedding.wait(WAIT)  # the encode is running (and blocked)
        click(qtbot, w, 70, 55)  # queued until the embedding is ready
        w.close()
        qtbot.wait(100)
        token = predictor.tokens[-1]
        assert token is not None and token.cancelled  # the window's jobs were cancelled
        assert not bridge.close(0.1)  # the encode cannot be interrupted: not waited for
        assert w.sam_tool.state.result is None
    finally:
        predictor.gate.set()
    qtbot.waitUntil(predictor.closed.is_set, timeout=TIMEOUT)  # the worker ended by itself
    assert intact(path) == [Source.MANUAL]
