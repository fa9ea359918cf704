"""Images that cannot be read: a neighbour whose prefetch fails, a truncated JPEG."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Qt, Slot
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, key, open_window, scene_image, write_png

from app.ui.workers import PredictorBridge


def corrupt_middle(path: Path) -> None:
    """Garble the pixel data, keeping the header and the end: the file's size and header
    look right (it is listed and registered), decoding fails."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 200):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


class Failures(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.kinds: list[str] = []

    @Slot(str, int, str)
    def failed(self, kind: str, request_id: int, message: str) -> None:
        self.kinds.append(kind)


def settle(qtbot: QtBot, bridge: PredictorBridge) -> None:
    assert bridge.service.wait_idle(TIMEOUT / 1000)
    qtbot.wait(50)  # deliver the queued signals


def test_a_failed_prefetch_is_not_retried_until_the_file_changes(
        qtbot: QtBot, tmp_path: Path, classical_bridge: PredictorBridge) -> None:
    a, b, c = (write_png(tmp_path / f"{n}.png", scene_image(seed=i))
               for i, n in enumerate("abc"))
    corrupt_middle(b)
    seen = Failures()
    classical_bridge.failed.connect(seen.failed)
    classical_bridge.set_image("ha", a, [("hb", b), ("hc", c)])
    settle(qtbot, classical_bridge)
    assert seen.kinds == ["prefetch"]
    stats = classical_bridge.service.stats
    classical_bridge.set_image("hc", c, [("hb", b)])
    classical_bridge.set_image("ha", a, [("hb", b), ("hc", c)])
    settle(qtbot, classical_bridge)
    assert seen.kinds == ["prefetch"]  # not tried again
    assert classical_bridge.service.stats.errors == stats.errors
    # the file is repaired: it is prefetched again
    write_png(b, scene_image(seed=5))
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    classical_bridge.set_image("hc", c, [("hb", b)])
    settle(qtbot, classical_bridge)
    assert seen.kinds == ["prefetch"]
    assert classical_bridge.service.stats.prefetched == stats.prefetched + 1


def test_an_unreadable_neighbour_does_not_leave_prefetching_in_the_status_bar(
        qtbot: QtBot, image_folder: Path, classical_bridge: PredictorBridge,
        caplog: pytest.LogCaptureFixture) -> None:
    corrupt_middle(image_folder / "img1.png")
    caplog.set_level(logging.WARNING, logger="app.predict.service.service")
    w = open_window(qtbot, image_folder, classical_bridge)
    settle(qtbot, classical_bridge)
    assert "prefetching" not in w.encode_label.text()
    bad = w.project.image_by_path("img1.png")
    for k in (Qt.Key.Key_D, Qt.Key.Key_D, Qt.Key.Key_A, Qt.Key.Key_A):  # there and back
        key(qtbot, w, k)
        settle(qtbot, classical_bridge)
        assert "prefetching" not in w.encode_label.text()
    prefetch_logs = [r for r in caplog.records
                     if "prefetch" in r.getMessage() and bad.content_hash in r.getMessage()]
    assert len(prefetch_logs) == 1
    w.close()


def test_a_truncated_jpeg_is_found_in_the_background_and_marked(
        qtbot: QtBot, image_folder: Path, classical_bridge: PredictorBridge,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its header reads, so it is registered like the others; the check that decodes it
    runs after the window is open, off the GUI thread, and marks it like the files that
    could not be registered."""
    from PIL import Image

    from app.core import image_checks

    cut = image_folder / "zcut.jpg"
    Image.fromarray(scene_image(seed=4)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:2000])
    gate = threading.Event()
    check_complete = image_checks.check_complete

    def gated(path: Path) -> None:
        assert gate.wait(TIMEOUT / 1000)
        check_complete(path)

    monkeypatch.setattr(image_checks, "check_complete", gated)
    w = open_window(qtbot, image_folder, classical_bridge)  # open while the check waits
    panel = w.images_panel

    def item_of(name: str) -> object:
        (found,) = [panel.list.item(i) for i in range(panel.list.count())
                    if panel.list.item(i).text().endswith(name)]
        return found

    assert w.project.image_by_path("zcut.jpg") is not None
    assert not item_of("zcut.jpg").text().startswith("⚠")
    gate.set()
    qtbot.waitUntil(lambda: item_of("zcut.jpg").text() == "⚠ zcut.jpg", timeout=TIMEOUT)
    assert "file is truncated" in item_of("zcut.jpg").toolTip()
    assert item_of("img0.png").text() == "○ img0.png"
    # not prefetched: img2's neighbour is left out
    w.show_image(w.project.image_by_path("img2.png"))
    settle(qtbot, classical_bridge)
    assert classical_bridge.service.stats.errors == 0
    w.close()
    # the next session marks it at once
    w2 = open_window(qtbot, image_folder, classical_bridge)
    assert w2.images_panel.list.item(3).text() == "⚠ zcut.jpg"
    w2.close()
