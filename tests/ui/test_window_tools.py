"""Segment everything, brush/eraser, merge/subtract, delete, samples and the CLI entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, click, drag, key, open_window, view_pos

from app.core.types import Source
from app.ui.opening import resolve, samples_dir


def test_segment_everything_suggestions(qtbot: QtBot, image_folder: Path,
                                        classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    key(qtbot, w, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier
        | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: w.proposals.active, timeout=60000)
    n = len(w.proposals.items)
    assert w.canvas.tool is w.proposals
    # click inside the smallest proposal covering the yellow rectangle: it becomes an instance
    click(qtbot, w, 70, 55)
    assert len(w.session.instances()) == 1
    assert len(w.proposals.items) == n - 1
    key(qtbot, w, Qt.Key.Key_Escape)  # discard the rest
    assert not w.proposals.active and w.canvas.tool is w.sam_tool
    assert len(w.session.instances()) == 1
    w.close()


def test_brush_eraser_merge_subtract_delete(qtbot: QtBot, image_folder: Path,
                                            classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    w.session.add_instance(box(50, 50, 90, 90), Source.MANUAL)
    a, b = (i.id for i in w.session.instances())
    key(qtbot, w, Qt.Key.Key_V)
    click(qtbot, w, 30, 30)
    assert w.edit_tool.selected_ids() == [a]
    # double click on an edge inserts a vertex, right click on it deletes it again
    corners = len(w.project.instance(a).geometry.exterior.coords)
    qtbot.mouseDClick(w.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_pos(w, 40, 20))
    assert len(w.project.instance(a).geometry.exterior.coords) == corners + 1
    click(qtbot, w, 40, 20, Qt.MouseButton.RightButton)
    assert len(w.project.instance(a).geometry.exterior.coords) == corners
    # brush outside the square adds area; eraser inside cuts a hole
    key(qtbot, w, Qt.Key.Key_B)
    drag(qtbot, w, (8, 40), (18, 40))
    grown = w.project.instance(a).geometry
    assert grown.area > 1600 + 50
    key(qtbot, w, Qt.Key.Key_E)
    drag(qtbot, w, (35, 35), (40, 35))
    cut = w.project.instance(a).geometry
    assert cut.area < grown.area - 50 and len(cut.interiors) == 1
    # merge: select a, Ctrl+click b, M
    key(qtbot, w, Qt.Key.Key_V)
    click(qtbot, w, 25, 25)
    click(qtbot, w, 80, 80, modifier=Qt.KeyboardModifier.ControlModifier)
    assert w.edit_tool.selected_ids() == [a, b]
    key(qtbot, w, Qt.Key.Key_M)
    insts = w.session.instances()
    assert len(insts) == 1 and insts[0].geometry.area > 2 * 1600 - 100 - 150
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(w.session.instances()) == 2
    # subtract: b cut out of a
    click(qtbot, w, 25, 25)
    click(qtbot, w, 80, 80, modifier=Qt.KeyboardModifier.ControlModifier)
    key(qtbot, w, Qt.Key.Key_M, Qt.KeyboardModifier.ShiftModifier)
    assert not w.project.instance(a).geometry.intersects(box(51, 51, 59, 59))
    # Delete removes the selected instance
    click(qtbot, w, 80, 80)
    assert w.edit_tool.selected_ids() == [b]
    key(qtbot, w, Qt.Key.Key_Delete)
    assert [i.id for i in w.session.instances()] == [a]
    w.close()


def test_instance_panel_visibility_opacity_simplify(qtbot: QtBot, image_folder: Path,
                                                    classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    circle_ish = box(30, 30, 90, 90).buffer(10)  # many vertices
    w.session.add_instance(circle_ish, Source.MANUAL)
    iid = w.session.instances()[0].id
    item = w.instances_panel.list.item(0)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert not w.instance_layer.items[iid].isVisible()
    item = w.instances_panel.list.item(0)
    item.setCheckState(Qt.CheckState.Checked)
    assert w.instance_layer.items[iid].isVisible()
    w.instances_panel.opacity.setValue(80)
    assert w.instance_layer.opacity == pytest.approx(0.8)
    w.instances_panel.list.item(0).setSelected(True)
    assert w.edit_tool.selected_ids() == [iid]
    before = len(w.project.instance(iid).geometry.exterior.coords)
    w.instances_panel.tolerance.setValue(80)  # 4 px
    w.instances_panel.tolerance_changed.emit(4.0)
    after = len(w.project.instance(iid).geometry.exterior.coords)
    assert after < before
    # one source of truth: the slider's value is the settings' and the SAM tool's
    assert w.settings.tolerance == w.app_state.tolerance == 4.0
    from app.ui import dialogs

    before_choice = dialogs.backend_choice(w.settings)
    w.settings.tolerance = 1.5  # the settings dialog's field
    dialogs.apply_settings(w.app_state, before_choice, w.switch_backend)
    assert w.instances_panel.tolerance.value() == 30 and w.app_state.tolerance == 1.5
    w.close()


def test_samples_open_with_their_project_in_the_user_data_dir(
        qtbot: QtBot, classical_bridge: object, tmp_path: Path) -> None:
    target = resolve(None)
    assert target.image_root == samples_dir()
    assert str(target.project_path).startswith(str(tmp_path))  # XDG_DATA_HOME of this test
    w = open_window(qtbot, None, classical_bridge)
    assert w.images_panel.list.count() >= 3
    assert not list(samples_dir().glob("*.maskloop"))
    assert (samples_dir() / "LICENSE.txt").is_file()
    qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
    w.close()


def test_gui_cmd_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli.gui_cmd import build_parser, main, make_predictor

    args = build_parser().parse_args([str(tmp_path), "--backend", "classical"])
    assert args.target == tmp_path
    assert "classical" in make_predictor(args).model_id.lower()
    # a model that is not installed: a clear error and exit code 2, no window
    assert main([str(tmp_path), "--model", "large"]) == 2
    # a server that is not there: the reason, exit code 2
    assert main([str(tmp_path), "--server", "http://127.0.0.1:9"]) == 2
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_segment_everything_uses_a_smaller_grid_on_a_cpu(qtbot: QtBot) -> None:
    from app.predict.base import Capabilities, SourceKind
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.workers import PredictorBridge

    class OnCpu(ClassicalPredictor):  # declares itself a SAM2 on a CPU
        capabilities = Capabilities(SourceKind.SAM2, "cpu")

    class OnGpu(ClassicalPredictor):
        capabilities = Capabilities(SourceKind.SAM2, "cuda")

    for predictor, grid in ((OnCpu(), 16), (OnGpu(), 32), (ClassicalPredictor(), 32)):
        bridge = PredictorBridge(predictor)
        try:
            assert bridge.everything_grid == grid
        finally:
            bridge.close()
