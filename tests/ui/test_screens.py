"""Issue 13, item 6: small and large screens. The side panels collapse to icons on a narrow
window (and come back), the image is refitted after a resize unless the person zoomed, and
the dialogs fit a 1366 x 768 screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from ui_helpers import open_window

from app.ui.dialogs.export_dialog import ExportDialog
from app.ui.dialogs.settings_dialog import SettingsDialog
from app.ui.help_dialog import HelpDialog

SMALL = (1366, 768 - 40)  # a laptop's screen without its title bar


def settle(qtbot: QtBot) -> None:
    qtbot.wait(60)


def test_panels_collapse_and_come_back(qtbot: QtBot, image_folder: Path,
                                       classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.resize(1366, 740)
    settle(qtbot)
    assert w.panels.mode == "wide" and w.panels.collapsed() == []
    wide_canvas = w.canvas.width()
    w.resize(1024, 700)  # the window: the canvas was 490 px wide
    settle(qtbot)
    assert w.panels.mode == "compact"
    assert w.panels.collapsed() == ["dock_instances", "dock_labels"]
    assert w.canvas.width() >= 700
    # each panel has its icon; the icon brings a collapsed panel back
    icons = {a.toolTip() for a in w.panels.panel_bar.actions()}
    assert icons == {"Images panel (shown / hidden)", "Labels panel (shown / hidden)",
                     "Instances panel (shown / hidden)", "Video panel (shown / hidden)"}
    labels_action = next(a for a in w.panels.panel_bar.actions() if "Labels" in a.toolTip())
    assert not labels_action.isChecked()
    labels_action.trigger()
    settle(qtbot)
    assert "dock_labels" not in w.panels.collapsed()
    labels_action.trigger()
    w.resize(860, 640)
    settle(qtbot)
    assert w.panels.mode == "narrow" and len(w.panels.collapsed()) == 4
    assert w.canvas.width() >= 780
    w.resize(1366, 740)
    settle(qtbot)
    assert w.panels.collapsed() == [] and w.canvas.width() == pytest.approx(wide_canvas, abs=40)
    w.close()


def test_the_view_refits_unless_zoomed(qtbot: QtBot, image_folder: Path,
                                       classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.resize(1366, 740)
    settle(qtbot)
    big = w.canvas.scale_factor()
    w.resize(1024, 700)
    settle(qtbot)
    small = w.canvas.scale_factor()
    assert small < big  # refitted: the whole image still shows
    w.canvas.zoom_by(2.0)
    zoomed = w.canvas.scale_factor()
    w.resize(1100, 720)
    settle(qtbot)
    assert w.canvas.scale_factor() == pytest.approx(zoomed)  # the person's zoom is kept
    w.canvas.fit()  # F: refits again from now on
    w.resize(1366, 740)
    settle(qtbot)
    assert w.canvas.scale_factor() == pytest.approx(big, rel=0.05)
    w.close()


def test_dialogs_fit_a_1366_by_768_screen(qtbot: QtBot, image_folder: Path,
                                          classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    settings = SettingsDialog(w.settings, w.tasks, "classical", w)
    export = ExportDialog(w.project, w.tasks, w)
    keys = HelpDialog(w.menuBar(), w)
    for dlg in (settings, export, keys):
        qtbot.addWidget(dlg)
        for choice in range(getattr(dlg, "backend", None) and dlg.backend.count() or 1):
            if isinstance(dlg, SettingsDialog):  # the tallest backend's rows
                dlg.backend.setCurrentIndex(choice)
            hint = dlg.sizeHint()
            assert hint.height() <= SMALL[1] and hint.width() <= SMALL[0], (dlg, hint)
        assert dlg.height() <= SMALL[1]
    # the settings no longer list every key (F1 does): it was 802 px tall
    assert settings.sizeHint().height() < 560
    w.close()
