"""The opt-in tiled predictor in the window: the setting "Full-resolution tiles on large
images" makes the composition root wrap the classical backend in ``TiledPredictor`` (for the
classical backend, a window fitted to the click, at least 512 px, its working size, grown while
the mask goes on past it); a click on a disc larger than the first window becomes ONE instance
of the disc's area, traced from the result's crop (no full-size mask made). Off, the ordinary path
is used, and switching the setting on in a running window moves it to the tiled backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import Polygon
from ui_helpers import TIMEOUT, click, key, wait_mask, write_png

from app.cli.gui_cmd import predictor_for_settings
from app.core.geometry import geometry_to_mask
from app.core.types import MaskResult
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.tiles.predictor import TiledMaskResult, TiledPredictor
from app.ui import dialogs
from app.ui.app import Launcher
from app.ui.dialogs.settings_dialog import SettingsDialog
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings
from app.ui.tasks import TaskRunner
from app.ui.workers import PredictorBridge

H, W = 1100, 1400  # over 2 x 512 px: tiled by the classical backend's TiledPredictor
CENTRE, RADIUS = (700, 550), 220  # a disc across several 512 px tiles (overlap 128)


def disc_scene() -> tuple[np.ndarray, np.ndarray]:
    """A noisy blue-grey background with a noisy orange disc: (RGB image, disc mask)."""
    rng = np.random.default_rng(0)
    disc = np.zeros((H, W), np.uint8)
    cv2.circle(disc, CENTRE, RADIUS, 1, -1)
    image = np.where(disc[..., None] > 0, (210, 120, 40), (60, 90, 140)).astype(np.int16)
    image += rng.integers(-25, 26, image.shape).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8), disc > 0


@pytest.fixture
def disc_folder(tmp_path: Path) -> tuple[Path, np.ndarray]:
    folder = tmp_path / "large"
    folder.mkdir()
    image, disc = disc_scene()
    write_png(folder / "disc.png", image)
    return folder, disc


@pytest.fixture
def launchers() -> Iterator[list[Launcher]]:
    """The launchers a test opens; their bridges are closed at the end."""
    made: list[Launcher] = []
    yield made
    for launcher in made:
        launcher.bridge.close()


def open_with(qtbot: QtBot, folder: Path, settings: GuiSettings,
              made: list[Launcher]) -> MainWindow:
    """Open ``folder`` like ``maskloop`` does: the predictor built from ``settings`` by the
    composition root, which also switches it when the settings change."""
    bridge = PredictorBridge(predictor_for_settings(settings))
    launcher = Launcher(bridge, settings, interactive=False,
                        predictor_factory=predictor_for_settings)
    made.append(launcher)
    launcher.open(folder)
    qtbot.waitUntil(lambda: launcher.window is not None, timeout=TIMEOUT)
    window = launcher.window
    assert window is not None
    window.resize(900, 700)
    qtbot.waitUntil(lambda: window.canvas.image_size is not None, timeout=TIMEOUT)
    qtbot.wait(20)
    window.canvas.fit()
    return window


def click_and_accept(qtbot: QtBot, window: MainWindow, x: float, y: float) -> MaskResult:
    """Click at (x, y), wait for the mask, Enter; returns the result that was accepted."""
    click(qtbot, window, x, y)
    wait_mask(qtbot, window)
    result = window.sam_tool.state.result
    assert result is not None
    before = len(window.project.instances(window.session.image.id))
    key(qtbot, window, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(window.project.instances(window.session.image.id)) > before,
                    timeout=TIMEOUT)
    return result


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.slow
def test_with_the_setting_a_disc_across_tiles_is_one_instance(
        qtbot: QtBot, disc_folder: tuple[Path, np.ndarray], launchers: list[Launcher]) -> None:
    folder, disc = disc_folder
    w = open_with(qtbot, folder, GuiSettings(backend="classical", tiled=True,
                                             label_popup=False, hover_preview=False),
                  launchers)
    predictor = w.app_state.bridge.predictor
    assert isinstance(predictor, TiledPredictor) and predictor.is_tiled(H, W)
    assert isinstance(predictor.inner, ClassicalPredictor)

    click(qtbot, w, 640, 500)
    wait_mask(qtbot, w)
    result = w.sam_tool.state.result
    assert isinstance(result, TiledMaskResult)
    # the classical backend's window: the disc did not fit the first one, which grew
    (window,) = result.tiles
    assert window.width > predictor.side
    # the live outline is the crop's, placed at its offset: around the disc in the image
    box = w.mask_layer.outline().boundingRect()
    x0, y0 = CENTRE[0] - RADIUS, CENTRE[1] - RADIUS
    assert abs(box.left() - x0) < 12 and abs(box.top() - y0) < 12
    assert abs(box.width() - 2 * RADIUS) < 24 and abs(box.height() - 2 * RADIUS) < 24

    key(qtbot, w, Qt.Key.Key_Return)
    image_id = w.session.image.id
    qtbot.waitUntil(lambda: len(w.project.instances(image_id)) == 1, timeout=TIMEOUT)
    geom = w.project.instances(image_id)[0].geometry
    assert isinstance(geom, Polygon)  # one object, one part
    area = float(disc.sum())
    assert abs(geom.area - area) < 0.05 * area
    assert iou(geometry_to_mask(geom, H, W), disc) > 0.9
    # traced from the crop: the best candidate's full-size mask was never made
    assert result.best not in result._made


@pytest.mark.slow
def test_without_it_the_ordinary_path_and_switching_it_on_tiles(
        qtbot: QtBot, disc_folder: tuple[Path, np.ndarray], launchers: list[Launcher]) -> None:
    folder, disc = disc_folder
    settings = GuiSettings(backend="classical", label_popup=False, hover_preview=False)
    w = open_with(qtbot, folder, settings, launchers)
    assert isinstance(w.app_state.bridge.predictor, ClassicalPredictor)
    plain = click_and_accept(qtbot, w, 640, 500)
    assert not isinstance(plain, TiledMaskResult)
    assert plain.size == (H, W)

    before = dialogs.backend_choice(settings)
    settings.tiled = True
    old = w.app_state.bridge
    dialogs.apply_settings(w.app_state, before, launchers[0].switch_backend)
    qtbot.waitUntil(lambda: w.app_state.bridge is not old, timeout=TIMEOUT)
    predictor = w.app_state.bridge.predictor
    assert isinstance(predictor, TiledPredictor)
    assert predictor.capabilities.kind == ClassicalPredictor().capabilities.kind
    assert GuiSettings.load().tiled  # saved for the next start

    tiled = click_and_accept(qtbot, w, 760, 600)
    assert isinstance(tiled, TiledMaskResult) and tiled.tiles[0].width > predictor.side
    newest = max(w.project.instances(w.session.image.id), key=lambda i: i.id)
    assert isinstance(newest.geometry, Polygon)
    assert iou(geometry_to_mask(newest.geometry, H, W), disc) > 0.9


def test_the_setting_in_the_dialog(qtbot: QtBot) -> None:
    settings = GuiSettings(backend="classical")
    dlg = SettingsDialog(settings, TaskRunner(1), "Classical")
    qtbot.addWidget(dlg)
    assert not dlg.tiled.isChecked()  # off by default
    assert "encode" in dlg.tiled.toolTip() and "photos" in dlg.tiled.toolTip()
    assert dlg.form.isRowVisible(dlg.tiled)
    dlg.backend.setCurrentIndex(dlg.backend.findData("server"))
    assert not dlg.form.isRowVisible(dlg.tiled)  # local backends only
    dlg.backend.setCurrentIndex(dlg.backend.findData("sam2"))
    assert dlg.form.isRowVisible(dlg.tiled)
    dlg.backend.setCurrentIndex(dlg.backend.findData("classical"))
    dlg.tiled.setChecked(True)
    dlg.accept()
    assert settings.tiled
    settings.save()
    assert GuiSettings.load().tiled
    assert dialogs.backend_choice(settings) != dialogs.backend_choice(GuiSettings(
        backend="classical"))  # toggling it switches the backend
