"""Status bar messages belong to the image and the moment they were shown for: nothing of
the previous image or of an accepted candidate stays."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_unreadable_images import corrupt_middle
from ui_helpers import TIMEOUT, click, key, open_window, wait_mask


def test_candidate_text_goes_on_enter_and_escape(qtbot: QtBot, image_folder: Path,
                                                 classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    bar = w.statusBar()
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    assert bar.currentMessage().startswith("Candidate 1/")
    key(qtbot, w, Qt.Key.Key_Return)
    assert len(w.session.instances()) == 1
    assert "Candidate" not in bar.currentMessage()
    click(qtbot, w, 130, 100)
    qtbot.waitUntil(lambda: "Candidate" in bar.currentMessage(), timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert "Candidate" not in bar.currentMessage()
    click(qtbot, w, 130, 100)
    qtbot.waitUntil(lambda: "Candidate" in bar.currentMessage(), timeout=TIMEOUT)
    key(qtbot, w, Qt.Key.Key_Backspace)  # the only click taken back
    assert not w.sam_tool.has_prompt() and "Candidate" not in bar.currentMessage()
    w.close()


def test_nothing_of_the_previous_image_stays(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: object) -> None:
    corrupt_middle(image_folder / "img1.png")
    w = open_window(qtbot, image_folder, classical_bridge)
    bar = w.statusBar()
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    assert w.latency_label.text().startswith("click ")
    key(qtbot, w, Qt.Key.Key_D)  # img1 cannot be read: its error is shown
    qtbot.waitUntil(lambda: "img1.png" in bar.currentMessage(), timeout=TIMEOUT)
    assert w.latency_label.text() == ""  # the click was on another image
    key(qtbot, w, Qt.Key.Key_D)
    qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
    assert w.session.image.path == "img2.png"
    assert "img1.png" not in bar.currentMessage()
    assert "Candidate" not in bar.currentMessage()
    w.close()
