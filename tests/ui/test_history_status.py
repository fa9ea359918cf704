"""Undo and redo in the real window: labels renamed meanwhile, the image's status."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import key, open_window

from app.core.types import ImageStatus, Source

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


def labels_shown(w: object) -> list[str]:
    panel = w.labels_panel.list  # type: ignore[attr-defined]
    return [panel.item(i).data(Qt.ItemDataRole.UserRole) for i in range(panel.count())]


def test_rename_then_undo_all_and_redo_all_keeps_the_renamed_label(
        qtbot: QtBot, image_folder: Path, classical_bridge: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    (inst,) = w.session.instances()
    assert inst.label == "object"
    # rename "object" to "car" in the Labels panel
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("car", True))
    w.labels_panel.rename_label()
    assert labels_shown(w) == ["car"]
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert w.session.instances() == []
    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)
    (back,) = w.session.instances()
    assert back.id == inst.id and back.label == "car"
    assert [lab.name for lab in w.project.labels()] == ["car"] == labels_shown(w)
    w.close()


def test_undoing_every_instance_makes_the_image_new_again(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    image_id = w.session.image.id

    def mark() -> str:
        return w.images_panel.list.item(0).text().split()[0]

    assert mark() == "○"
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    w.session.add_instance(box(70, 70, 90, 90), Source.MANUAL)
    assert w.project.image(image_id).status == ImageStatus.IN_PROGRESS and mark() == "◐"
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert w.session.image.status == ImageStatus.IN_PROGRESS and mark() == "◐"
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert w.project.image(image_id).status == ImageStatus.NEW
    assert w.session.image.status == ImageStatus.NEW and mark() == "○"
    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert w.session.image.status == ImageStatus.IN_PROGRESS and mark() == "◐"
    # deleting the last instance by hand: new again, and it stays new
    w.session.delete([i.id for i in w.session.instances()])
    assert w.project.image(image_id).status == ImageStatus.NEW and mark() == "○"
    # marked done: undoing the instances leaves it done
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    w.mark_done()
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert w.project.image(image_id).status == ImageStatus.DONE and mark() == "●"
    w.close()
