"""Issue 13, item 1: the label popup on accept (labelme / X-AnyLabeling style): at the object,
type to filter, arrows + Enter, a new name creates the label, the current and recent labels
first, Esc goes back; the setting off keeps "the current label, no popup"."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, click, key, open_window, wait_mask

from app.core.types import Label, Source
from app.ui.label_popup import RECENT_KEY, LabelPopup, ranked


def open_popup(qtbot: QtBot, w: object, x: float = 70, y: float = 55) -> LabelPopup:
    click(qtbot, w, x, y)  # type: ignore[arg-type]
    wait_mask(qtbot, w)  # type: ignore[arg-type]
    key(qtbot, w, Qt.Key.Key_Return)  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)  # type: ignore[attr-defined]
    popup = w.labelling.popup  # type: ignore[attr-defined]
    assert popup is not None and popup.isVisible()
    return popup


def test_ranked_puts_hotkey_prefix_then_substring() -> None:
    labels = [Label("cat", hotkey="1"), Label("bobcat", hotkey="2"), Label("car", hotkey="3")]
    assert [lab.name for lab in ranked(labels, ["car"], "")] == ["car", "cat", "bobcat"]
    assert [lab.name for lab in ranked(labels, [], "ca")] == ["cat", "car", "bobcat"]
    assert [lab.name for lab in ranked(labels, [], "2")] == ["bobcat"]
    assert [lab.name for lab in ranked(labels, [], "dog")] == []


def test_popup_on_accept_filters_creates_and_remembers(qtbot: QtBot, image_folder: Path,
                                                       classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge, label_popup=True)
    w.session.add_label("cat")
    w.session.add_label("car")
    popup = open_popup(qtbot, w)
    # at the object: the popup's corner is beside the mask, inside the window's screen
    mask = w.mask_layer.outline().boundingRect()
    corner = w.canvas.viewport().mapToGlobal(w.canvas.mapFromScene(mask.topRight()))
    assert abs(popup.x() - corner.x()) < 80
    # the keyboard is in the filter box; nothing is stored while it is open
    assert QApplication.focusWidget() is popup.edit
    assert popup.names() == ["object", "cat", "car"]  # the current label first
    assert w.session.instances() == []
    qtbot.keyClicks(popup.edit, "ca")
    assert popup.names() == ["cat", "car", "ca"]  # the last row creates "ca"
    qtbot.keyClick(popup.edit, Qt.Key.Key_Down)
    qtbot.keyClick(popup.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.session.instances()) == 1, timeout=TIMEOUT)
    inst = w.session.instances()[0]
    assert inst.label == "car" and inst.source == Source.CLASSICAL
    assert w.session.current_label == "car" and w.labelling.popup is None
    assert w.project.get_setting(RECENT_KEY)[0] == "car"
    qtbot.waitUntil(lambda: QApplication.focusWidget() is w.canvas, timeout=TIMEOUT)

    # a new name: Enter creates the label (with the next free hotkey) and uses it
    popup = open_popup(qtbot, w, 135, 100)
    assert popup.names()[0] == "car"  # the last used first: Enter, Enter repeats it
    qtbot.keyClicks(popup.edit, "Flower pot")
    assert popup.names() == ["Flower pot"]
    qtbot.keyClick(popup.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.session.instances()) == 2, timeout=TIMEOUT)
    created = w.project.label("Flower pot")
    assert created is not None and created.hotkey == "4"
    assert w.session.instances()[1].label == "Flower pot"
    assert w.labels_panel.list.currentItem().data(Qt.ItemDataRole.UserRole) == "Flower pot"
    # a hotkey digit finds its label
    popup = open_popup(qtbot, w, 70, 40)
    qtbot.keyClicks(popup.edit, "2")
    assert popup.names()[0] == "cat"
    qtbot.keyClick(popup.edit, Qt.Key.Key_Escape)  # back: nothing stored, the mask stays
    qtbot.waitUntil(lambda: w.labelling.popup is None, timeout=TIMEOUT)
    assert len(w.session.instances()) == 2
    assert w.sam_tool.state.result is not None and w.mask_layer.pixels > 0
    w.close()


def test_without_the_popup_enter_stores_the_current_label(qtbot: QtBot, image_folder: Path,
                                                          classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge, label_popup=False)
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    assert w.labelling.popup is None
    assert [i.label for i in w.session.instances()] == ["object"]
    w.close()


def test_manual_polygon_asks_and_esc_gives_it_back(qtbot: QtBot, image_folder: Path,
                                                    classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge, label_popup=True)
    key(qtbot, w, Qt.Key.Key_P)
    for x, y in [(10, 10), (50, 10), (50, 40)]:
        click(qtbot, w, x, y)
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
    qtbot.keyClick(w.labelling.popup.edit, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: w.labelling.popup is None, timeout=TIMEOUT)
    assert w.session.instances() == []
    assert len(w.polygon_tool.state.vertices) == 3  # drawn again: Enter finishes it
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
    qtbot.keyClicks(w.labelling.popup.edit, "roof")
    qtbot.keyClick(w.labelling.popup.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.session.instances()) == 1, timeout=TIMEOUT)
    inst = w.session.instances()[0]
    assert inst.label == "roof" and inst.source == Source.MANUAL
    assert abs(inst.geometry.area - 600) < 60
    w.close()


def test_a_label_added_in_the_panel_becomes_current(qtbot: QtBot, image_folder: Path,
                                                    classical_bridge: object,
                                                    monkeypatch: object) -> None:
    from PySide6.QtWidgets import QInputDialog

    w = open_window(qtbot, image_folder, classical_bridge)
    monkeypatch.setattr(QInputDialog, "getText",  # type: ignore[attr-defined]
                        staticmethod(lambda *a, **k: ("bird", True)))
    w.labels_panel.add_label()
    assert w.session.current_label == "bird"
    w.close()
