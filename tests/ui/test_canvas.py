"""Canvas behaviour: zoom to cursor, pan, fit; failures shown; large images; settings."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, click, key, open_window, view_pos, write_png

from app.ui.dialogs.settings_dialog import SettingsDialog
from app.ui.settings import GuiSettings


def wheel(window: object, pos: QPoint, delta: int) -> None:
    vp = window.canvas.viewport()  # type: ignore[attr-defined]
    ev = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0),
                     QPoint(0, delta), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                     Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)


def test_zoom_to_cursor_pan_and_fit(qtbot: QtBot, image_folder: Path,
                                    classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    fit_scale = w.canvas.scale_factor()
    pos = view_pos(w, 100, 40)
    wheel(w, pos, 240)
    assert w.canvas.scale_factor() > fit_scale * 1.3
    under = w.canvas.mapToScene(pos)
    assert abs(under.x() - 100) < 2 and abs(under.y() - 40) < 2  # the point stayed put
    wheel(w, pos, 2400)
    before = w.canvas.mapToScene(w.canvas.viewport().rect().center())
    vp = w.canvas.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.MiddleButton, pos=QPoint(200, 200))
    qtbot.mouseMove(vp, QPoint(260, 230))
    qtbot.mouseRelease(vp, Qt.MouseButton.MiddleButton, pos=QPoint(260, 230))
    after = w.canvas.mapToScene(w.canvas.viewport().rect().center())
    assert after.x() < before.x() and after.y() < before.y()
    assert w.sam_tool.state.is_empty()  # panning is not a click
    key(qtbot, w, Qt.Key.Key_F)
    assert w.canvas.scale_factor() == pytest.approx(fit_scale, rel=0.01)
    w.close()


def test_failed_prediction_is_reported_and_changes_nothing(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    click(qtbot, w, 70, 55)
    qtbot.waitUntil(lambda: w.sam_tool.state.result is not None, timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_Return)
    saved = [(i.id, i.geometry.wkt) for i in w.session.instances()]
    # the file vanished before the predictor could encode it: encoding fails, clicks fail
    w.bridge.set_image("gone", image_folder / "gone.png")
    qtbot.waitUntil(lambda: "Encoding failed" in w.statusBar().currentMessage(),
                    timeout=TIMEOUT)
    click(qtbot, w, 130, 100)
    qtbot.waitUntil(lambda: "Prediction failed" in w.statusBar().currentMessage(),
                    timeout=TIMEOUT)
    assert [(i.id, i.geometry.wkt) for i in w.session.instances()] == saved
    w.close()


@pytest.mark.slow
def test_large_image_opens_and_zooms(qtbot: QtBot, tmp_path: Path,
                                     classical_bridge: object) -> None:
    folder = tmp_path / "large"
    folder.mkdir()
    img = np.zeros((8000, 8000, 3), np.uint8)
    img[2000:6000, 3000:5000] = (200, 180, 40)
    write_png(folder / "large.png", img)
    w = open_window(qtbot, folder, classical_bridge, timeout=120000)
    assert w.canvas.image_size == (8000, 8000)
    t0 = time.perf_counter()
    for _ in range(10):
        wheel(w, view_pos(w, 4000, 4000), 120)
        w.canvas.viewport().repaint()
    per_step = (time.perf_counter() - t0) / 10 * 1000
    print(f"\n8000x8000: zoom step + repaint {per_step:.0f} ms")
    assert w.canvas.scale_factor() > 0.1
    w.close()


def test_settings_dialog_updates_settings(qtbot: QtBot, classical_bridge: object) -> None:
    from app.ui.tasks import TaskRunner

    settings = GuiSettings()
    dlg = SettingsDialog(settings, TaskRunner(1), "classical")
    qtbot.addWidget(dlg)
    dlg.backend.setCurrentIndex(3)
    dlg.server_url.setText("http://127.0.0.1:9")
    dlg.tolerance.setValue(2.5)
    assert dlg.model_state.text() == "not installed"
    assert dlg.download_button.isEnabled()
    dlg.accept()
    assert settings.backend == "server" and settings.server_url == "http://127.0.0.1:9"
    assert settings.tolerance == 2.5
    settings.save()
    assert GuiSettings.load().server_url == "http://127.0.0.1:9"


def test_switching_backend_from_the_settings(qtbot: QtBot, image_folder: Path) -> None:
    from app.cli.gui_cmd import predictor_for_settings
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui import dialogs
    from app.ui.app import Launcher
    from app.ui.workers import PredictorBridge

    first = PredictorBridge(ClassicalPredictor())
    launcher = Launcher(first, GuiSettings(), interactive=False,
                        predictor_factory=predictor_for_settings)
    launcher.open(image_folder)
    qtbot.waitUntil(lambda: launcher.window is not None, timeout=TIMEOUT)
    w = launcher.window
    qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
    before = dialogs.backend_choice(w.settings)
    w.settings.backend = "classical"
    dialogs.apply_settings(w.app_state, before, w.switch_backend)
    qtbot.waitUntil(lambda: w.bridge is not first, timeout=TIMEOUT)
    assert launcher.bridge is w.bridge and w.sam_tool.bridge is w.bridge
    qtbot.waitUntil(lambda: not first.service.alive, timeout=TIMEOUT)  # the old one closed
    assert w.canvas.image_size is not None  # the picture stays while the new backend encodes
    click(qtbot, w, 70, 55)
    qtbot.waitUntil(lambda: w.sam_tool.state.result is not None, timeout=TIMEOUT)
    # a choice that cannot work is reported and the current backend stays
    before = dialogs.backend_choice(w.settings)
    w.settings.backend, w.settings.server_url = "server", ""
    dialogs.apply_settings(w.app_state, before, w.switch_backend)
    qtbot.waitUntil(lambda: "Could not switch" in w.statusBar().currentMessage(),
                    timeout=TIMEOUT)
    w.close()
    launcher.bridge.close()
