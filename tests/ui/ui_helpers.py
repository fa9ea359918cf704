"""Driving the real window with real mouse and key events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QPointF, Qt
from pytestqt.qtbot import QtBot

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
