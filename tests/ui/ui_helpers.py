"""Driving the real window with real mouse and key events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from pytestqt.qtbot import QtBot

from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey, MaskResult, Prompt
from app.predict.base import Capabilities, SourceKind
from app.ui.app import Launcher
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings
from app.ui.workers import PredictorBridge

TIMEOUT = 15000


def open_window(qtbot: QtBot, target: Path | None, bridge: PredictorBridge,
                timeout: int = TIMEOUT, *, label_popup: bool = False) -> MainWindow:
    """Open ``target`` like the app does and wait until its first image is on the canvas.
    Enter stores the current label at once unless ``label_popup`` (the app's default)."""
    launcher = Launcher(bridge, GuiSettings(label_popup=label_popup), interactive=False)
    launcher.open(target)
    qtbot.waitUntil(lambda: launcher.window is not None, timeout=timeout)
    window = launcher.window
    assert window is not None
    window._launcher = launcher  # type: ignore[attr-defined]  # keep it alive
    window.resize(900, 700)
    qtbot.waitUntil(lambda: window.canvas.image_size is not None
                    or bool(window.canvas.message()) and "Loading" not in
                    window.canvas.message(), timeout=timeout)
    qtbot.wait(20)  # the layout after the resize (panels collapse below 1200 px) settles
    window.canvas.fit()
    return window


def view_pos(window: MainWindow, x: float, y: float) -> QPoint:
    return window.canvas.mapFromScene(QPointF(x, y))


def click(qtbot: QtBot, window: MainWindow, x: float, y: float,
          button: Qt.MouseButton = Qt.MouseButton.LeftButton,
          modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.mouseClick(window.canvas.viewport(), button, modifier, view_pos(window, x, y))


def drag(qtbot: QtBot, window: MainWindow, start: tuple[float, float],
         end: tuple[float, float], steps: int = 4) -> None:
    vp = window.canvas.viewport()
    left = Qt.MouseButton.LeftButton
    qtbot.mousePress(vp, left, pos=view_pos(window, *start))
    for i in range(1, steps + 1):
        t = i / steps
        x = start[0] + (end[0] - start[0]) * t
        y = start[1] + (end[1] - start[1]) * t
        qtbot.mouseMove(vp, view_pos(window, x, y))
    qtbot.mouseRelease(vp, left, pos=view_pos(window, *end))


def key(qtbot: QtBot, window: MainWindow, k: Qt.Key,
        modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window.canvas.viewport(), k, modifier)


def wait_mask(qtbot: QtBot, window: MainWindow, timeout: int = TIMEOUT) -> None:
    qtbot.waitUntil(lambda: window.sam_tool.state.result is not None, timeout=timeout)


def scene_image(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """Dark noisy background with a bright rectangle at x 40..100, y 30..80 (+ a hole-free
    second object), RGB uint8."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    img[30:80, 40:100] = (230, 200, 40)
    img[90:110, 120:150] = (40, 160, 230)
    return img


def write_png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


WAIT = 10.0
STEPS = 4


class SteppedPredictor:
    """An encoder of ``STEPS`` blocks, each waiting for ``step`` (like SAM2's Hiera blocks
    through ``encode_progress``); ``predict`` answers the bright pixels, after ``answer``."""

    model_id = "stepped"
    description = "stepped test predictor"
    capabilities = Capabilities(SourceKind.SAM2, "test")

    def __init__(self, stepped: bool = True) -> None:
        self.encode_progress: Callable[[int, int], None] | None = None
        self.step = threading.Semaphore(0 if stepped else 10**6)
        self.answer = threading.Event()
        self.answer.set()
        self.image: np.ndarray | None = None
        self.predicts = 0

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        for i in range(STEPS):
            if self.encode_progress is not None:
                self.encode_progress(i, STEPS)
            self.step.acquire(timeout=WAIT)
        self.image = image
        return EmbeddingKey(image_hash or "", self.model_id)

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        self.predicts += 1
        self.answer.wait(WAIT)
        assert self.image is not None
        mask = self.image[..., 0] > 150
        return MaskResult(mask[None], np.array([0.9], np.float32),
                          np.zeros((1, 256, 256), np.float32))

    def segment_everything(self, *args: object, **kwargs: object) -> list[object]:
        return []

    def close(self) -> None:
        self.step.release(10**6)
        self.answer.set()


def bridged(predictor: SteppedPredictor) -> Iterator[tuple[SteppedPredictor, PredictorBridge]]:
    """A fixture's body: ``predictor`` behind a real PredictorBridge, both closed after."""
    bridge = PredictorBridge(predictor)  # type: ignore[arg-type]
    yield predictor, bridge
    predictor.close()
    bridge.close()
