"""Issue 13: a scripted keyboard-first session. Five images, two objects each; the mouse only
clicks on objects, everything else is keys typed to whichever widget has the keyboard (as a
person's keystrokes go): Enter opens the label popup, a name or its first letters pick or
create the label, Enter stores it, Ctrl+Shift+D marks the image done and opens the next one.
The keys per image are counted and printed (run with -s to see them)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, click, open_window, scene_image, wait_mask, write_png

from app.core.types import ImageStatus

IMAGES = 5
# (where to click, the label, what to type in the popup)
FIRST = [((70, 55), "flower", "flower"), ((135, 100), "pot", "pot")]
LATER = [((70, 55), "flower", "f"), ((135, 100), "pot", "p")]


class Keyboard:
    """Types keys to the focused widget and counts them."""

    def __init__(self, qtbot: QtBot) -> None:
        self.qtbot = qtbot
        self.count = 0

    def press(self, k: Qt.Key, mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
              ) -> None:
        target = QApplication.focusWidget()
        assert target is not None, f"nothing has the keyboard after {self.count} keys"
        self.qtbot.keyClick(target, k, mods)
        self.count += 1

    def type(self, text: str) -> None:
        for ch in text:
            target = QApplication.focusWidget()
            assert target is not None
            self.qtbot.keyClicks(target, ch)
            self.count += 1


def test_five_images_keyboard_first(qtbot: QtBot, tmp_path: Path, classical_bridge: object,
                                    capsys: object) -> None:
    folder = tmp_path / "garden"
    folder.mkdir()
    for i in range(IMAGES):
        write_png(folder / f"shot{i}.png", scene_image(seed=10 + i))
    w = open_window(qtbot, folder, classical_bridge, label_popup=True)
    if w.guide is not None:
        w.guide.dismiss()
    w.show()
    w.activateWindow()
    qtbot.waitExposed(w)
    w.canvas.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is w.canvas, timeout=TIMEOUT)
    keys = Keyboard(qtbot)
    per_image: list[int] = []
    for n in range(IMAGES):
        record = w.session.image
        assert record is not None and record.path == f"shot{n}.png"
        qtbot.waitUntil(lambda: w.canvas.image_size is not None, timeout=TIMEOUT)
        start = keys.count
        for (x, y), label, typed in (FIRST if n == 0 else LATER):
            click(qtbot, w, x, y)  # the mouse: only on the object
            wait_mask(qtbot, w)
            keys.press(Qt.Key.Key_Return)  # accept: the label popup opens at the object
            qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
            keys.type(typed)
            assert w.labelling.popup.names()[0] == label
            keys.press(Qt.Key.Key_Return)
            qtbot.waitUntil(lambda: w.labelling.popup is None, timeout=TIMEOUT)
        qtbot.waitUntil(lambda: len(w.session.instances()) == 2, timeout=TIMEOUT)
        assert [i.label for i in w.session.instances()] == ["flower", "pot"]
        keys.press(Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)  # done, next image to label
        per_image.append(keys.count - start)
        assert w.project.image(int(record.id or 0)).status == ImageStatus.DONE
        if n < IMAGES - 1:
            qtbot.waitUntil(lambda n=n: w.session.image.path == f"shot{n + 1}.png",
                            timeout=TIMEOUT)
    assert all(r.status == ImageStatus.DONE for r in w.project.images())
    assert w.project.instance_count() == 2 * IMAGES
    assert "5 done" in w.status.counter.text()
    with capsys.disabled():  # type: ignore[attr-defined]
        print(f"\nkeyboard-first session: keys per image {per_image}, "
              f"{sum(per_image)} keys for {IMAGES} images, 2 clicks each")
    # the first image creates both labels by name; then two keys per object and one to move on
    assert per_image[0] == 2 * 2 + len("flower") + len("pot") + 1
    assert per_image[1:] == [7] * (IMAGES - 1)
    w.close()
