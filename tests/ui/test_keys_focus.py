"""Issue 13, item 2: the keyboard. Esc always gives the keyboard back to the canvas, the
navigation keys work whatever panel was used last, next / previous image without instances,
skip, done-and-next, hide / show all, zoom to the selection, the "image 3 / 15" counter, and
F1's table of every key."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, open_window, scene_image, write_png

from app.core.types import ImageStatus, Instance, Source


def typed(qtbot: QtBot, k: Qt.Key, mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
          ) -> None:
    """A key as a person types it: to whichever widget has the keyboard."""
    target = QApplication.focusWidget()
    assert target is not None
    qtbot.keyClick(target, k, mods)


def shown(w: object) -> str:
    return w.session.image.path  # type: ignore[attr-defined]


@pytest.fixture
def five(tmp_path: Path) -> Path:
    folder = tmp_path / "five"
    folder.mkdir()
    for i in range(5):
        write_png(folder / f"img{i}.png", scene_image(seed=i))
    return folder


def test_esc_and_enter_give_the_keyboard_back(qtbot: QtBot, five: Path,
                                              classical_bridge: object) -> None:
    w = open_window(qtbot, five, classical_bridge)
    w.show()
    qtbot.waitExposed(w)
    box_ = w.images_panel.filter_text
    box_.setFocus()
    qtbot.keyClicks(box_, "imgd")  # letters typed in the box are text, not "next image"
    assert box_.text() == "imgd" and shown(w) == "img0.png"
    qtbot.keyClick(box_, Qt.Key.Key_Backspace)
    typed(qtbot, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is w.canvas
    typed(qtbot, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: shown(w) == "img1.png", timeout=TIMEOUT)
    # Enter in the filter: the first image it lets through opens, the canvas has the keys
    box_.setFocus()
    box_.setText("img3")
    typed(qtbot, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: shown(w) == "img3.png", timeout=TIMEOUT)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is w.canvas, timeout=TIMEOUT)
    box_.setText("")
    # from every list and box of the panels, Esc returns to the canvas and the keys work
    for widget in (w.images_panel.list, w.labels_panel.list, w.instances_panel.list,
                   w.images_panel.filter_status):  # (the find-all box: test_find_all)
        widget.setFocus()
        assert QApplication.focusWidget() is widget
        typed(qtbot, Qt.Key.Key_Escape)
        assert QApplication.focusWidget() is w.canvas, widget
    # the navigation keys work from the lists without Esc
    for widget in (w.images_panel.list, w.labels_panel.list, w.instances_panel.list):
        widget.setFocus()
        before = shown(w)
        typed(qtbot, Qt.Key.Key_A)
        qtbot.waitUntil(lambda before=before: shown(w) != before, timeout=TIMEOUT)
    # buttons and sliders never keep the keyboard
    for widget in w.instances_panel.findChildren(QWidget):
        if widget.metaObject().className() in ("QPushButton", "QSlider"):
            assert widget.focusPolicy() == Qt.FocusPolicy.NoFocus
    w.close()


def test_image_navigation_keys_and_counter(qtbot: QtBot, five: Path,
                                           classical_bridge: object) -> None:
    w = open_window(qtbot, five, classical_bridge)
    assert w.status.counter.text() == "image 1 / 5 · 0 done"
    ids = {r.path: r.id for r in w.project.images()}
    for path in ("img1.png", "img2.png"):  # these have instances (in progress)
        w.project.add_instance(Instance(ids[path], "object", box(5, 5, 20, 20), None,
                                        Source.MANUAL))
    w.refresh_images()
    typed_at = w.canvas
    typed_at.setFocus()
    typed(qtbot, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)  # next without instances
    qtbot.waitUntil(lambda: shown(w) == "img3.png", timeout=TIMEOUT)
    assert w.status.counter.text().startswith("image 4 / 5")
    assert "(4 / 5)" in w.findChild(QWidget, "dock_images").windowTitle()
    typed(qtbot, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)  # previous without
    qtbot.waitUntil(lambda: shown(w) == "img0.png", timeout=TIMEOUT)
    typed(qtbot, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)  # wraps around
    qtbot.waitUntil(lambda: shown(w) == "img4.png", timeout=TIMEOUT)
    # skip: marked skipped, on to the next image to label
    typed(qtbot, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: shown(w) == "img0.png", timeout=TIMEOUT)
    assert w.project.image(ids["img4.png"]).status == ImageStatus.SKIPPED
    # done and next
    ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    typed(qtbot, Qt.Key.Key_D, ctrl_shift)
    qtbot.waitUntil(lambda: shown(w) == "img1.png", timeout=TIMEOUT)
    assert w.project.image(ids["img0.png"]).status == ImageStatus.DONE
    assert w.status.counter.text() == "image 2 / 5 · 1 done"
    typed(qtbot, Qt.Key.Key_A)
    typed(qtbot, Qt.Key.Key_A)  # the first image: it stays, and says so
    qtbot.waitUntil(lambda: shown(w) == "img0.png", timeout=TIMEOUT)
    assert "First image" in w.statusBar().currentMessage()
    w.close()


def test_hide_all_and_zoom_to_selection(qtbot: QtBot, five: Path,
                                        classical_bridge: object) -> None:
    w = open_window(qtbot, five, classical_bridge)
    w.session.add_instance(box(40, 30, 100, 80), Source.MANUAL)
    w.session.add_instance(box(120, 90, 150, 110), Source.MANUAL)
    qtbot.waitUntil(lambda: len(w.instance_layer.items) == 2, timeout=TIMEOUT)
    w.canvas.setFocus()
    typed(qtbot, Qt.Key.Key_H)
    assert not any(i.isVisible() for i in w.instance_layer.items.values())
    assert w.edit_tool.editor.instances == {}  # hidden ones are not edited by accident
    typed(qtbot, Qt.Key.Key_H)
    assert all(i.isVisible() for i in w.instance_layer.items.values())
    fit = w.canvas.scale_factor()
    second = sorted(w.instance_layer.items)[1]
    w.set_tool("edit")
    w.edit_tool.select(second)
    typed(qtbot, Qt.Key.Key_Z)
    assert w.canvas.scale_factor() > 1.5 * fit
    centre = w.canvas.mapToScene(w.canvas.viewport().rect().center())
    assert abs(centre.x() - 135) < 3 and abs(centre.y() - 100) < 3
    typed(qtbot, Qt.Key.Key_F)
    assert w.canvas.scale_factor() == pytest.approx(fit, rel=0.01)
    w.close()


def test_f1_lists_every_key_in_a_table(qtbot: QtBot, five: Path,
                                       classical_bridge: object) -> None:
    w = open_window(qtbot, five, classical_bridge)
    w.canvas.setFocus()
    typed(qtbot, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: getattr(w, "help_dialog", None) is not None
                    and w.help_dialog.isVisible(), timeout=TIMEOUT)
    dlg = w.help_dialog
    rows = dlg.rows()
    texts = {what for _, what in rows}
    for action in w.actions_by_name.values():
        if action.shortcuts() and action.isVisible():
            assert action.text().replace("&", "") in texts
    keys = {k for k, _ in rows}
    assert {"Shift+D", "Ctrl+K", "H", "Z", "Y", "N", "F1"} <= keys
    assert any("Right click" in k for k in keys)  # the mouse too
    dlg.filter.setText("zoom")
    assert rows != dlg.rows() and all("zoom" in (k + w_).lower() for k, w_ in dlg.rows())
    assert dlg.height() <= 768
    dlg.close()
    w.close()
