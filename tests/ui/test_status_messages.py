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


class _FirstEncodeFailsLate:
    """The classical backend, except that the first encode waits for ``release`` and then
    fails (as a server that times out, or a model that runs out of memory, would)."""

    def __init__(self) -> None:
        import threading

        from app.predict.classical.predictor import ClassicalPredictor

        self._inner = ClassicalPredictor()
        self.release = threading.Event()
        self.started = threading.Event()
        self._first = True

    def embed(self, image: object, image_hash: str | None = None,
              cancel: object = None) -> object:
        if self._first:
            self._first = False
            self.started.set()
            self.release.wait(10)
            raise RuntimeError("out of memory while encoding")
        return self._inner.embed(image, image_hash, cancel)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_a_late_encode_failure_of_the_previous_image_is_not_shown(
        qtbot: QtBot, image_folder: Path) -> None:
    """img0's encode fails while its failure is on its way to the GUI thread, and the person
    presses D before the GUI thread gets it: the failure must not land on img1."""
    import time

    from app.ui.workers import PredictorBridge

    predictor = _FirstEncodeFailsLate()
    bridge = PredictorBridge(predictor)  # type: ignore[arg-type]
    try:
        w = open_window(qtbot, image_folder, bridge)
        bar = w.statusBar()
        qtbot.waitUntil(predictor.started.is_set, timeout=TIMEOUT)
        predictor.release.set()
        deadline = time.monotonic() + 10
        while bridge.service.stats.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the GUI thread does not run: the failure waits in its queue
        assert bridge.service.stats.errors == 1
        key(qtbot, w, Qt.Key.Key_D)
        qtbot.waitUntil(lambda: w.session.image.path == "img1.png", timeout=TIMEOUT)
        qtbot.wait(300)  # the queued failure is delivered
        assert "failed" not in bar.currentMessage()
        w.close()
    finally:
        bridge.close()
