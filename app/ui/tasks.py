"""Background tasks for the GUI: run a function on a thread pool and get its result (or
its error) back on the GUI thread as a Qt signal.

The shape of superqt's ``thread_worker``, written here because that one leaks on PySide6: it
makes a ``QRunnable`` and a signals ``QObject`` per call, and PySide6 (6.11.3) keeps a Python
reference to about half of the finished runnables: 200 ``create_worker`` calls left 93-105
workers alive with their arguments after all had finished and ``gc.collect()`` (the
script is in the closing note of issue 11; 20 calls left 7). A mask passed to a worker would
stay in memory for the life of the pool. Here one signals object serves a runner and a task is
a plain Python callable (tests/ui/test_task_refs.py: 0 of 100 finished tasks alive)."""

from __future__ import annotations

import contextlib
import itertools
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

from app.core.jobs import CancelToken


class TaskSignals(QObject):
    """Emitted from a worker thread; Qt queues them to the receiver's (GUI) thread. Each
    carries the number of the task it is about."""

    returned = Signal(int, object)
    errored = Signal(int, object)  # the exception
    progress = Signal(int, int, int, str)
    finished = Signal(int)


class Task:
    """One call of ``fn(*args, **kwargs)`` on a worker thread. When ``with_progress`` is
    set, ``fn`` also receives ``progress=`` and ``cancel=`` keywords wired to the signals.
    A plain Python object: no Qt object is made per task, so none is ever destroyed on a
    worker thread."""

    def __init__(self, number: int, signals: TaskSignals, fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any], with_progress: bool) -> None:
        self.number = number
        self.signals = signals
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.cancel_token = CancelToken()
        self.with_progress = with_progress

    def _emit(self, signal: Any, *args: Any) -> None:
        # RuntimeError: the receiver's side is gone (the window closed): nothing to tell
        with contextlib.suppress(RuntimeError):
            signal.emit(self.number, *args)

    def run(self) -> None:
        fn, args, kwargs = self.fn, self.args, dict(self.kwargs)
        self.fn, self.args, self.kwargs = _ran, (), {}  # hold nothing once it has run
        if self.with_progress:
            kwargs["progress"] = lambda d, t, m="": self._emit(self.signals.progress, int(d),
                                                               int(t), str(m))
            kwargs["cancel"] = self.cancel_token
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
            exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            # the text is kept; the frames would keep every local of the failed call alive
            self._emit(self.signals.errored, exc.with_traceback(None))
        else:
            self._emit(self.signals.returned, result)
            del result
        finally:
            del fn, args, kwargs
            self._emit(self.signals.finished)

    def cancel(self) -> None:
        self.cancel_token.cancel()


def _ran(*_args: Any, **_kwargs: Any) -> None:
    """What a task holds once it has run."""


@dataclass
class _Callbacks:
    on_result: Callable[[Any], None] | None
    on_error: Callable[[BaseException], None] | None
    on_progress: Callable[[int, int, str], None] | None


class _Receiver(QObject):
    """Lives on the GUI thread, so the signals reach its slots queued there (plain Python
    callables connected directly could run on the worker thread), and hands each to the
    callbacks of its task."""

    def __init__(self, signals: TaskSignals, parent: QObject) -> None:
        super().__init__(parent)
        self.callbacks: dict[int, _Callbacks] = {}
        self.on_finished: Callable[[int], None] = lambda _n: None
        signals.returned.connect(self.returned)
        signals.errored.connect(self.errored)
        signals.progress.connect(self.progress)
        signals.finished.connect(self.finished)

    @Slot(int, object)
    def returned(self, number: int, value: Any) -> None:
        cb = self.callbacks.get(number)
        if cb is not None and cb.on_result is not None:
            cb.on_result(value)

    @Slot(int, object)
    def errored(self, number: int, exc: BaseException) -> None:
        cb = self.callbacks.get(number)
        if cb is not None and cb.on_error is not None:
            cb.on_error(exc)

    @Slot(int, int, int, str)
    def progress(self, number: int, done: int, total: int, message: str) -> None:
        cb = self.callbacks.get(number)
        if cb is not None and cb.on_progress is not None:
            cb.on_progress(done, total, message)

    @Slot(int)
    def finished(self, number: int) -> None:
        self.callbacks.pop(number, None)
        self.on_finished(number)


class TaskRunner(QObject):
    """Starts tasks on its own pool; callbacks run on the GUI thread.

    The pool runs each task as a plain callable: PySide6 keeps every ``QRunnable`` started
    with autoDelete off for as long as its pool lives (with its function and arguments),
    and one with autoDelete on may be destroyed, with its Qt objects, on the worker thread.
    All tasks of a runner share one ``TaskSignals``, which lives as long as the runner."""

    def __init__(self, threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.signals = TaskSignals(self)
        self._receiver = _Receiver(self.signals, self)
        self._receiver.on_finished = self._finished
        self._numbers = itertools.count(1)
        self._running: dict[int, Task] = {}
        self._detached: dict[int, Task] = {}

    def _task(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
              with_progress: bool, callbacks: _Callbacks, signals: TaskSignals) -> Task:
        task = Task(next(self._numbers), signals, fn, args, kwargs, with_progress)
        self._receiver.callbacks[task.number] = callbacks
        return task

    def _finished(self, number: int) -> None:
        self._running.pop(number, None)
        self._detached.pop(number, None)

    def start(self, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[int, int, str], None] | None = None,
              with_progress: bool = False, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` on the pool; ``on_*`` are called on the GUI thread."""
        task = self._task(fn, args, kwargs, with_progress,
                          _Callbacks(on_result, on_error, on_progress), self.signals)
        self._running[task.number] = task
        self.pool.start(task.run)
        return task

    def start_detached(self, fn: Callable[..., Any], *args: Any,
                       on_result: Callable[[Any], None] | None = None,
                       on_error: Callable[[BaseException], None] | None = None,
                       **kwargs: Any) -> Task:
        """Like ``start``, but on a daemon thread of its own that nobody waits for: for slow
        jobs (building a predictor: importing torch, loading a checkpoint) that must neither
        hold a pool thread nor keep the app from closing. A result that arrives after the
        receiver is gone is never delivered."""
        task = self._task(fn, args, kwargs, False, _Callbacks(on_result, on_error, None),
                          self.signals)
        self._detached[task.number] = task
        threading.Thread(target=task.run, name="maskloop-detached", daemon=True).start()
        return task

    def busy(self) -> bool:
        return bool(self._running)

    def wait(self, msecs: int = 30000) -> bool:
        """Cancel and wait for every task (on close)."""
        for task in list(self._running.values()):
            task.cancel()
        return self.pool.waitForDone(msecs)


HEAVY_PIXELS = 2048 * 2048  # above this, mask <-> polygon work leaves the GUI thread


def run_sized(runner: TaskRunner, pixels: int, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None],
              on_error: Callable[[BaseException], None] | None = None) -> None:
    """Run ``fn`` inline when the image is small (tens of ms, and the result is there at
    once), on the pool when it is large (seconds on 8000 x 8000 masks)."""
    if pixels <= HEAVY_PIXELS:
        try:
            result = fn(*args)
        except Exception as exc:  # noqa: BLE001 - same contract as the pool path
            if on_error is None:
                raise
            on_error(exc)
            return
        on_result(result)
    else:
        runner.start(fn, *args, on_result=on_result, on_error=on_error)
