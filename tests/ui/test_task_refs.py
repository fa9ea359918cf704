"""A finished background task lets go of its function and arguments, and the tasks
themselves do not pile up; results, errors and progress still reach the GUI thread.

PySide6 (6.11.3 and 6.12.0 alike) keeps a Python reference to every ``QRunnable`` given to
``QThreadPool.start`` while the runnable's autoDelete is off, for as long as the pool lives.
``app.ui.tasks.Task`` turns autoDelete off (its signals must outlive the run), so before the
fix every task ever started stayed alive with its ``fn`` and ``args``: an image switch leaked
~17 small objects (found by tests/ui/test_soak.py), and every ``run_sized`` job on a large
image leaked its mask (64 MiB per click or accept on an 8000 x 8000 image).
"""

from __future__ import annotations

import gc
import weakref

from pytestqt.qtbot import QtBot

from app.ui.tasks import Task, TaskRunner


class Payload:
    """Stands for a task's heavy argument (a full-resolution mask)."""


def test_a_finished_task_releases_its_arguments(qtbot: QtBot, qapp: object) -> None:
    runner = TaskRunner(2)
    done: list[int] = []
    refs = []
    for i in range(10):
        payload = Payload()
        refs.append(weakref.ref(payload))
        runner.start(lambda p, i=i: i, payload, on_result=done.append)
        del payload
    qtbot.waitUntil(lambda: len(done) == 10 and not runner.busy(), timeout=10000)
    assert runner.pool.waitForDone(10000)
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    assert alive == 0, f"{alive} of 10 finished tasks still hold their arguments"
    assert sorted(done) == list(range(10))


def test_finished_tasks_do_not_pile_up(qtbot: QtBot, qapp: object) -> None:
    runner = TaskRunner(2)
    done: list[int] = []
    errors: list[BaseException] = []
    tasks: list[weakref.ref[Task]] = []
    for i in range(100):
        tasks.append(weakref.ref(runner.start(
            (lambda i=i: i) if i % 7 else (lambda: 1 / 0),
            on_result=done.append, on_error=errors.append)))
        if i % 10 == 9:
            qtbot.waitUntil(lambda: not runner.busy(), timeout=10000)
    qtbot.waitUntil(lambda: not runner.busy(), timeout=10000)
    assert runner.pool.waitForDone(10000)
    gc.collect()
    alive = sum(ref() is not None for ref in tasks)
    assert len(done) + len(errors) == 100 and len(errors) == 15
    assert alive == 0, f"{alive} of 100 finished tasks are still alive"


def test_progress_and_results_reach_the_gui_thread(qtbot: QtBot, qapp: object) -> None:
    import threading

    runner = TaskRunner(2)
    gui = threading.get_ident()
    seen: list[tuple[str, object, bool]] = []

    def work(n: int, progress: object, cancel: object) -> int:
        for i in range(n):
            progress(i, n, "step")  # type: ignore[operator]
        return n * 2

    runner.start(work, 3, with_progress=True,
                 on_progress=lambda d, t, m: seen.append(("p", d, threading.get_ident() == gui)),
                 on_result=lambda v: seen.append(("r", v, threading.get_ident() == gui)))
    qtbot.waitUntil(lambda: not runner.busy(), timeout=10000)
    assert seen == [("p", 0, True), ("p", 1, True), ("p", 2, True), ("r", 6, True)]
