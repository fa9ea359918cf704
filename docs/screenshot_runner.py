"""What the screenshot scripts (make_screenshots.py, make_video_screenshot.py) share: run a
window script, a generator that yields a condition to wait for or milliseconds to wait, on
the Qt event loop of a real window, then close everything."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import QPoint, QTimer
from PySide6.QtWidgets import QApplication

from app.ui.app import Launcher
from app.ui.main_window import MainWindow
from app.ui.workers import PredictorBridge

Step = Iterator[Callable[[], bool] | int]  # a condition to wait for, or milliseconds


def run(app: QApplication, launcher: Launcher, bridge: PredictorBridge,
        script: Callable[[MainWindow, QApplication], Step], scratch: Path,
        size: tuple[int, int] | None = None) -> int:
    """Once the launcher has a window: move it to the corner (and ``size`` it), run
    ``script`` to its end (it quits the app), never more than two minutes; then close the
    window and the bridge and remove ``scratch``."""
    state: dict[str, Step | None] = {"steps": None}

    def tick() -> None:
        if state["steps"] is None:
            if launcher.window is None:
                QTimer.singleShot(100, tick)
                return
            launcher.window.move(QPoint(0, 0))
            if size is not None:
                launcher.window.resize(*size)
            state["steps"] = script(launcher.window, app)
        steps = state["steps"]
        assert steps is not None
        try:
            item = next(steps)
        except StopIteration:
            return
        if isinstance(item, int):
            QTimer.singleShot(item, tick)
            return

        def wait() -> None:
            if item():
                QTimer.singleShot(0, tick)
            else:
                QTimer.singleShot(50, wait)

        wait()

    QTimer.singleShot(0, tick)
    QTimer.singleShot(120000, app.quit)  # never hang
    code = app.exec()
    if launcher.window is not None:
        launcher.window.close()
    bridge.close()
    shutil.rmtree(scratch, ignore_errors=True)
    return int(code)
