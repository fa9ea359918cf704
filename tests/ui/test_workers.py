"""The predictor bridge and the background tasks deliver on the GUI thread."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot
from pytestqt.qtbot import QtBot
from ui_helpers import scene_image, write_png

from app.core.errors import ImageError
from app.core.types import Point, Prompt
from app.ui.tasks import TaskRunner
from app.ui.workers import ImageStore, PredictorBridge


class Receiver(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []
        self.results: list[object] = []

    @Slot(int, object, float)
    def predicted(self, request_id: int, result: object, latency: float) -> None:
        self.threads.append(threading.get_ident())
        self.results.append((request_id, result, latency))


def test_bridge_answers_on_the_gui_thread(qtbot: QtBot, tmp_path: Path,
                                          classical_bridge: PredictorBridge) -> None:
    path = write_png(tmp_path / "a.png", scene_image())
    rec = Receiver()
    classical_bridge.predicted.connect(rec.predicted)
    classical_bridge.set_image("hash-a", path)
    first = classical_bridge.predict(Prompt((Point(70.5, 55.5),)))  # before the encode ends
    qtbot.waitUntil(lambda: bool(rec.results), timeout=15000)
    assert rec.threads == [threading.get_ident()]
    request_id, result, latency = rec.results[0]
    assert request_id == first and result.masks.shape[1:] == (120, 160) and latency > 0
    assert classical_bridge.service.stats.masks == 1


def test_tasks_report_results_errors_and_progress_on_the_gui_thread(qtbot: QtBot) -> None:
    runner = TaskRunner(2)
    seen: list[tuple[str, object, int]] = []

    def job(n: int, progress: object = None, cancel: object = None) -> int:
        for i in range(n):
            progress(i + 1, n, "step")  # type: ignore[operator]
        return n * 2

    def boom() -> None:
        raise ImageError("x.png: broken")

    runner.start(job, 3, with_progress=True,
                 on_result=lambda v: seen.append(("result", v, threading.get_ident())),
                 on_progress=lambda d, t, m: seen.append(("progress", d, threading.get_ident())))
    runner.start(boom, on_error=lambda e: seen.append(("error", str(e), threading.get_ident())))
    qtbot.waitUntil(lambda: sum(k in ("result", "error") for k, _, _ in seen) == 2,
                    timeout=10000)
    assert {t for _, _, t in seen} == {threading.get_ident()}
    assert ("result", 6) in [(k, v) for k, v, _ in seen]
    assert ("error", "x.png: broken") in [(k, v) for k, v, _ in seen]
    assert [v for k, v, _ in seen if k == "progress"] == [1, 2, 3]
    assert runner.wait(5000)


def test_image_store_decodes_once_and_raises_image_errors(tmp_path: Path) -> None:
    calls: list[Path] = []

    def loader(p: Path) -> np.ndarray:
        calls.append(p)
        return np.zeros((2, 2, 3), np.uint8)

    store = ImageStore(budget=12, loader=loader)  # one 2 x 2 RGB image
    threads = [threading.Thread(target=store.get, args=("h", tmp_path / "a.png"))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    store.get("h2", tmp_path / "b.png")
    store.get("h", tmp_path / "a.png")  # evicted (room for one): decoded again
    assert len(calls) == 3
    with pytest.raises(ImageError):
        ImageStore().get("bad", write_bytes(tmp_path / "bad.png", b"nope"))


def test_image_store_holds_its_budget_in_bytes_besides_the_current_image(
        tmp_path: Path) -> None:
    """Issue 16: bounded by bytes, not by count; the current image (the last asked for)
    is always kept, alone when it is larger than the whole budget."""
    sides = {"s1": 10, "s2": 12, "s3": 9, "m": 20, "big": 40, "huge": 60}
    decoded: list[str] = []

    def loader(p: Path) -> np.ndarray:
        decoded.append(p.stem)
        side = sides[p.stem]
        return np.full((side, side, 3), len(p.stem), np.uint8)

    budget = 3 * 20 * 20  # one "m", or a few small ones; "big" and "huge" are over it
    store = ImageStore(budget=budget, loader=loader)
    rng = np.random.default_rng(0)
    for name in rng.choice(list(sides), 200):
        image = store.get(name, tmp_path / f"{name}.png")
        assert image.shape == (sides[name], sides[name], 3)
        assert store.get(name, tmp_path / f"{name}.png") is image  # the current: kept
        if image.nbytes > budget:
            assert store.count == 1 and store.nbytes == image.nbytes
        else:
            assert store.nbytes <= budget
    assert len(decoded) < 200  # the small ones were found again, not decoded each time
    store.get("s1", tmp_path / "s1.png")
    store.get("s2", tmp_path / "s2.png")
    count = len(decoded)
    store.get("s1", tmp_path / "s1.png")  # both small ones fit: no decode
    assert len(decoded) == count and store.count >= 2
    store.get("huge", tmp_path / "huge.png")
    assert store.count == 1 and store.nbytes == 60 * 60 * 3  # over budget: alone
    store.get("s1", tmp_path / "s1.png")  # no longer current: "huge" is let go
    assert len(decoded) == count + 2 and store.nbytes == 10 * 10 * 3
    assert ImageStore().budget == 512 * 2**20


def test_the_worker_keeps_the_priority_of_the_process(qtbot: QtBot, tmp_path: Path,
                                                    qapp: object) -> None:
    """Issue 14: the worker (and torch's threads) are no longer lowered to nice 10, which
    made an encode lose to every other program on a busy laptop."""
    import os

    from app.predict.classical.predictor import ClassicalPredictor

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("per-thread priorities are a Linux feature")
    seen: list[tuple[int, int]] = []  # (thread id, nice) as the worker loads the image

    def loader(path: Path) -> np.ndarray:
        seen.append((threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0)))
        return scene_image()

    bridge = PredictorBridge(ClassicalPredictor(), ImageStore(loader=loader))
    try:
        rec = Receiver()
        bridge.predicted.connect(rec.predicted)
        bridge.set_image("hash-a", tmp_path / "a.png")
        bridge.predict(Prompt((Point(70.5, 55.5),)))
        qtbot.waitUntil(lambda: bool(rec.results), timeout=15000)
        assert bridge.service.wait_idle(10)
        # one more click: the worker's priority is read again after a full round
        bridge.set_image("hash-b", tmp_path / "b.png")
        qtbot.waitUntil(lambda: len(seen) == 2, timeout=15000)
    finally:
        bridge.close()
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert [tid != threading.get_native_id() for tid, _ in seen] == [True, True]
    assert [nice for _, nice in seen] == [own, own]


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
