"""AppState is the application's state: panels, tools and dialogs follow its signals (one
source of truth each for the label, the selection, the tool, the backend and the settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, open_window

from app.core.types import Source
from app.ui import dialogs
from app.ui.app_state import AppState


def _selected_rows(w: object) -> list[int]:
    panel = w.instances_panel  # type: ignore[attr-defined]
    return [i.data(Qt.ItemDataRole.UserRole) for i in panel.list.selectedItems()]


def _current_label_row(w: object) -> str:
    item = w.labels_panel.list.currentItem()  # type: ignore[attr-defined]
    return str(item.data(Qt.ItemDataRole.UserRole))


def test_label_changed_through_app_state_updates_the_label_panel(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    w.session.add_label("car")
    seen: list[str] = []
    state.label_changed.connect(seen.append)
    state.set_label("car")
    assert seen == ["car"] and state.label == "car" == w.session.current_label
    assert _current_label_row(w) == "car"
    assert "Label: car" in w.statusBar().currentMessage()
    # a click in the panel sets AppState's label (the one new instances get)
    panel = w.labels_panel
    item = panel.list.findItems("object", Qt.MatchFlag.MatchStartsWith)[0]
    panel.list.itemClicked.emit(item)
    assert state.label == "object" and seen[-1] == "object"
    w.close()


def test_label_hotkey_goes_through_app_state(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    w.session.add_label("car")  # hotkey 2
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    iid = w.session.instances()[0].id
    state.set_selection([iid])
    w.ops.label_hotkey("2")
    assert state.label == "car" and _current_label_row(w) == "car"
    assert w.project.instance(iid).label == "car"  # the selected instance was relabelled
    w.close()


def test_selecting_through_app_state_updates_the_panels_and_the_tool(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    w.session.add_instance(box(70, 70, 110, 110), Source.MANUAL)
    a, b = (i.id for i in w.session.instances())
    seen: list[list[int]] = []
    state.selection_changed.connect(seen.append)
    state.set_selection([a, b])
    assert seen == [[a, b]]
    assert sorted(_selected_rows(w)) == sorted([a, b])  # the instance list follows
    assert w.edit_tool.selected_ids() == [a, b]  # the edit tool edits the first
    assert w.instance_layer.selected == {a, b}  # and the canvas layer
    # the list sets the selection...
    w.instances_panel.list.clearSelection()
    assert state.selection == [] and w.edit_tool.selected_ids() == []
    w.instances_panel.list.item(1).setSelected(True)
    assert state.selection == [b] and w.edit_tool.selected_ids() == [b]
    # ... and so does the canvas tool (the list follows)
    w.edit_tool.select(a)
    assert state.selection == [a] and _selected_rows(w) == [a]
    # merge works on AppState's selection
    state.set_selection([a, b])
    w.ops.merge_selected()
    assert len(w.session.instances()) == 1 and state.selection == []
    w.close()


def test_a_deleted_instance_leaves_the_selection(qtbot: QtBot, image_folder: Path,
                                                 classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    iid = w.session.instances()[0].id
    w.app_state.set_selection([iid])
    w.ops.delete([iid])
    assert w.app_state.selection == [] and w.edit_tool.selected_ids() == []
    assert w.session.instances() == []
    w.close()


def test_tool_changed_sets_the_canvas_tool(qtbot: QtBot, image_folder: Path,
                                           classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    seen: list[str] = []
    state.tool_changed.connect(seen.append)
    state.set_tool("polygon")
    assert seen == ["polygon"] and w.canvas.tool is w.polygon_tool
    assert w.actions_by_name["tool_polygon"].isChecked()
    w.actions_by_name["tool_edit"].trigger()  # the V key
    assert state.tool == "edit" == w.active_tool_name and w.canvas.tool is w.edit_tool
    with pytest.raises(ValueError):
        state.set_tool("lasso")
    w.close()


def test_image_changed_follows_the_session(qtbot: QtBot, image_folder: Path,
                                           classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    seen: list[object] = []
    state.image_changed.connect(seen.append)
    second = w.project.images()[1]
    w.show_image(second)
    assert seen == [second] and state.image is second
    assert state.image_path == w.project.image_root / second.path
    assert state.project is w.project
    assert [r.id for r in w.images_panel.selected_records()] == [second.id]
    w.close()


def test_opacity_through_app_state_moves_the_slider_and_the_layer(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    state.set_opacity(0.7)
    assert w.instances_panel.opacity.value() == 70
    assert w.instance_layer.opacity == pytest.approx(0.7) and w.settings.opacity == 0.7
    w.instances_panel.opacity.setValue(25)  # the slider sets AppState's value
    assert state.opacity == pytest.approx(0.25)
    w.close()


def test_backend_changed_moves_the_tools_and_the_find_all_box(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.workers import PredictorBridge

    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    other = PredictorBridge(ClassicalPredictor())
    try:
        seen: list[object] = []
        state.backend_changed.connect(seen.append)
        w.set_bridge(other)
        assert seen == [other] and state.bridge is other is w.bridge
        assert w.sam_tool.bridge is other and w.proposals._bridge is other
        assert w.hover._bridge is other
        assert state.description == other.description
        assert state.capabilities == other.capabilities
        qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
    finally:
        w.close()
        other.close()


def test_dialogs_read_and_apply_settings_through_app_state(
        qtbot: QtBot, image_folder: Path, classical_bridge: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui.dialogs.settings_dialog import SettingsDialog

    w = open_window(qtbot, image_folder, classical_bridge)
    state: AppState = w.app_state
    state.set_tolerance(2.5)
    shown: dict[str, object] = {}

    def fake_exec(self: SettingsDialog) -> int:
        shown["tolerance"] = self.tolerance.value()
        shown["backend"] = self.windowTitle()
        self.tolerance.setValue(1.25)  # the person edits the field and presses OK
        self.hover_preview.setChecked(False)
        self.accept()
        return 1

    monkeypatch.setattr(SettingsDialog, "exec", fake_exec)
    hover: list[bool] = []
    state.hover_preview_changed.connect(hover.append)
    dialogs.settings(w, state, w.tasks, None)
    assert shown["tolerance"] == 2.5  # the dialog read AppState's value
    assert state.tolerance == 1.25 and w.instances_panel.tolerance.value() == 25
    assert hover == [False] and not w.hover.enabled
    assert "Settings saved" in w.statusBar().currentMessage()
    w.close()


def test_messages_go_to_the_status_bar(qtbot: QtBot, image_folder: Path,
                                       classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.app_state.say("hello from a tool")
    assert w.statusBar().currentMessage() == "hello from a tool"
    w.close()
