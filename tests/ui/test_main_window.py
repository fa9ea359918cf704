"""The real window, driven with real mouse and key events (classical backend)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, click, drag, key, open_window, wait_mask

from app.core.geometry_edit import to_shape
from app.core.project import Project
from app.core.types import ImageStatus, Source
from app.ui.dialogs.export_dialog import ExportDialog


def test_label_an_image_end_to_end(qtbot: QtBot, image_folder: Path,
                                   classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    assert (image_folder / "photos.maskloop").is_file()
    assert w.images_panel.list.count() == 3
    qtbot.waitUntil(lambda: all(not w.images_panel.list.item(i).icon().isNull()
                                for i in range(3)), timeout=TIMEOUT)  # thumbnails
    first = w.session.image
    assert first is not None and first.path == "img0.png"

    # click: a translucent mask appears
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    assert w.mask_layer.pixels > 0
    assert "ms" in w.latency_label.text()
    # Tab cycles the candidates
    before = w.sam_tool.state.chosen
    key(qtbot, w, Qt.Key.Key_Tab)
    assert w.sam_tool.state.chosen == (before + 1) % len(w.sam_tool.state.result)
    assert "Candidate" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_Tab)
    key(qtbot, w, Qt.Key.Key_Tab)
    assert w.sam_tool.state.chosen == before
    # Enter accepts: the instance is in the project file at once
    key(qtbot, w, Qt.Key.Key_Return)
    insts = w.project.instances(first.id)
    assert len(insts) == 1 and insts[0].source == Source.CLASSICAL
    assert insts[0].label == "object"
    assert 0.7 * 3000 < insts[0].geometry.area < 1.3 * 3000  # the 60 x 50 rectangle
    assert w.mask_layer.pixels == 0 and not w.sam_tool.has_prompt()
    assert w.project.image(first.id).status == ImageStatus.IN_PROGRESS
    with Project.open(w.project.path) as other:  # as a restart after a kill would see it
        assert len(other.instances(first.id)) == 1

    # relabel with a hotkey: edit tool, select, press 2
    w.session.add_label("cat")
    key(qtbot, w, Qt.Key.Key_V)
    assert w.active_tool_name == "edit"
    click(qtbot, w, 70, 55)
    assert w.edit_tool.selected_ids() == [insts[0].id]
    key(qtbot, w, Qt.Key.Key_2)
    assert w.project.instance(insts[0].id).label == "cat"

    # drag a vertex: the geometry changes in the project
    geom0 = w.project.instance(insts[0].id).geometry
    x0, y0, x1, y1 = geom0.bounds
    vx, vy = max(to_shape(geom0)[0][0], key=lambda p: p[0] + p[1])  # bottom-right corner
    drag(qtbot, w, (vx, vy), (vx + 15, vy + 15))
    geom1 = w.project.instance(insts[0].id).geometry
    assert geom1.area > geom0.area + 50
    assert geom1.bounds[2] > x1 + 10

    # undo / redo
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.project.instance(insts[0].id).geometry.equals(geom0)
    key(qtbot, w, Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.project.instance(insts[0].id).geometry.equals(geom1)

    # next image (D), mark done, back (A)
    key(qtbot, w, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: w.session.image.path == "img1.png", timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert w.project.image(w.session.image.id).status == ImageStatus.DONE
    w.images_panel.filter_status.setCurrentText("done")
    assert [r.path for r in w.images_panel.visible_records()] == ["img1.png"]
    w.images_panel.filter_status.setCurrentText("all")
    w.images_panel.filter_text.setText("img2")
    assert [r.path for r in w.images_panel.visible_records()] == ["img2.png"]
    w.images_panel.filter_text.setText("")
    key(qtbot, w, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: w.session.image.path == "img0.png", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: len(w.instance_layer.items) == 1, timeout=TIMEOUT)

    # export COCO through the dialog, off the GUI thread
    out = image_folder.parent / "export"
    dlg = ExportDialog(w.project, w.tasks, w)
    dlg.folder.setText(str(out))
    dlg.export_button.click()
    qtbot.waitUntil(lambda: dlg.report is not None, timeout=TIMEOUT)
    coco = json.loads((out / "annotations.json").read_text())  # beside maskloop-export.json
    assert len(coco["annotations"]) == 1
    assert {c["name"] for c in coco["categories"]} >= {"cat"}
    dlg.close()

    # close, reopen: the work and the last image are back
    w.close()
    w2 = open_window(qtbot, image_folder, classical_bridge)
    assert w2.session.image.path == "img0.png"
    again = w2.project.instances(first.id)
    assert len(again) == 1 and again[0].label == "cat" and again[0].geometry.equals(geom1)
    qtbot.waitUntil(lambda: len(w2.instance_layer.items) == 1, timeout=TIMEOUT)
    key(qtbot, w2, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo across restarts
    assert w2.project.instance(insts[0].id).geometry.equals(geom0)
    w2.close()


def test_prompt_keys_and_negative_clicks(qtbot: QtBot, image_folder: Path,
                                         classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    click(qtbot, w, 70, 55)
    click(qtbot, w, 130, 100, Qt.MouseButton.RightButton)
    click(qtbot, w, 10, 10, modifier=Qt.KeyboardModifier.ShiftModifier)
    assert [p.positive for p in w.sam_tool.state.points] == [True, False, False]
    wait_mask(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Backspace)
    assert len(w.sam_tool.state.points) == 2
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.sam_tool.state.is_empty() and w.mask_layer.pixels == 0
    # a box drag is a prompt too
    drag(qtbot, w, (35, 25), (105, 85))
    assert w.sam_tool.state.box is not None
    wait_mask(qtbot, w)
    assert w.mask_layer.pixels > 1000
    key(qtbot, w, Qt.Key.Key_Enter)
    assert len(w.session.instances()) == 1
    w.close()


def test_manual_polygon_and_box(qtbot: QtBot, image_folder: Path,
                                classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    key(qtbot, w, Qt.Key.Key_P)
    for x, y in [(10, 10), (50, 10), (50, 40)]:
        click(qtbot, w, x, y)
    key(qtbot, w, Qt.Key.Key_Return)
    key(qtbot, w, Qt.Key.Key_R)
    drag(qtbot, w, (100, 20), (140, 60))
    insts = w.session.instances()
    assert len(insts) == 2
    assert abs(insts[0].geometry.area - 600) < 60
    assert abs(insts[1].geometry.area - 1600) < 100
    assert all(i.source == Source.MANUAL for i in insts)
    w.close()


def test_corrupt_image_shows_a_message_and_the_rest_works(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    w = open_window(qtbot, image_folder, classical_bridge)
    assert w.images_panel.list.count() == 4
    broken = [w.images_panel.list.item(i) for i in range(4)
              if "broken" in w.images_panel.list.item(i).text()]
    assert broken
    w.images_panel.list.itemClicked.emit(broken[0])
    assert "broken.png" in w.canvas.message()
    assert w.canvas.image_size is None
    key(qtbot, w, Qt.Key.Key_D)  # the next readable image opens
    qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    w.close()
