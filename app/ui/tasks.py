"""Background tasks for the GUI: run a function on a thread pool and get its result (or
its error) back on the GUI thread as a Qt signal. The shape of superqt's thread workers."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from app.core.jobs import CancelToken


class TaskSignals(QObject):
    """Emitted from the pool thread; Qt queues them to the receiver's (GUI) thread."""

    returned = Signal(object)
    errored = Signal(object)  # the exception
    progress = Signal(int, int, str)
    finished = Signal()


class Task(QRunnable):
    """One call of ``fn(*args, **kwargs)`` on a pool thread. When ``with_progress`` is set,
    ``fn`` also receives ``progress=`` and ``cancel=`` keywords wired to the signals."""

    def __init__(self, fn: Callable[..., Any], *args: Any, with_progress: bool = False,
                 **kwargs: Any) -> None:
        super().__init__()
        self.setAutoDelete(False)  # the Python object keeps the signals alive
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = TaskSignals()
        self.cancel_token = CancelToken()
        self.with_progress = with_progress

    def run(self) -> None:
        kwargs = dict(self.kwargs)
        if self.with_progress:
            kwargs["progress"] = lambda d, t, m="": self.signals.progress.emit(int(d), int(t),
                                                                               str(m))
            kwargs["cancel"] = self.cancel_token
        try:
            result = self.fn(*self.args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported on the GUI thread
            exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            self.signals.errored.emit(exc)
        else:
            self.signals.returned.emit(result)
        finally:
            self.signals.finished.emit()

    def cancel(self) -> None:
        self.cancel_token.cancel()


class _Relay(QObject):
    """Lives on the GUI thread, so the task's signals reach these slots queued there; plain
    Python callables connected directly could run on the pool thread."""

    def __init__(self, parent: QObject, on_result: Callable[[Any], None] | None,
                 on_error: Callable[[BaseException], None] | None,
                 on_progress: Callable[[int, int, str], None] | None) -> None:
        super().__init__(parent)
        self._on_result, self._on_error, self._on_progress = on_result, on_error, on_progress

    @Slot(object)
    def returned(self, value: Any) -> None:
        if self._on_result is not None:
            self._on_result(value)

    @Slot(object)
    def errored(self, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(exc)

    @Slot(int, int, str)
    def progress(self, done: int, total: int, message: str) -> None:
        if self._on_progress is not None:
            self._on_progress(done, total, message)


class TaskRunner(QObject):
    """Starts tasks on its own pool; callbacks run on the GUI thread."""

    def __init__(self, threads: int = 2, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._running: dict[Task, _Relay] = {}
        self._detached: dict[Task, _Relay] = {}

    def start(self, fn: Callable[..., Any], *args: Any,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[BaseException], None] | None = None,
              on_progress: Callable[[int, int, str], None] | None = None,
              with_progress: bool = False, **kwargs: Any) -> Task:
        """Run ``fn(*args, **kwargs)`` on the pool; ``on_*`` are called on the GUI thread."""
        task = Task(fn, *args, with_progress=with_progress, **kwargs)
        relay = _Relay(self, on_result, on_error, on_progress)
        task.signals.returned.connect(relay.returned)
        task.signals.errored.connect(relay.errored)
        task.signals.progress.connect(relay.progress)
        task.signals.finished.connect(relay.deleteLater)
        self._running[task] = relay
        relay.destroyed.connect(lambda *_: self._running.pop(task, None))
        self.pool.start(task)
        return task

    def start_detached(self, fn: Callable[..., Any], *args: Any,
                       on_result: Callable[[Any], None] | None = None,
                       on_error: Callable[[BaseException], None] | None = None,
                       **kwargs: Any) -> Task:
        """Like ``start``, but on a daemon thread of its own that nobody waits for: for slow
        jobs (building a predictor: importing torch, loading a checkpoint) that must neither
        hold a pool thread nor keep the app from closing. A result that arrives after the
        receiver is gone is never delivered."""
        task = Task(fn, *args, **kwargs)
        relay = _Relay(self, on_result, on_error, None)
        task.signals.returned.connect(relay.returned)
        task.signals.errored.connect(relay.errored)
        task.signals.finished.connect(relay.deleteLater)
        self._detached[task] = relay
        relay.destroyed.connect(lambda *_: self._detached.pop(task, None))
        threading.Thread(target=task.run, name="maskloop-detached", daemon=True).start()
        return task

    def busy(self) -> bool:
        return bool(self._running)

    def wait(self, msecs: int = 30000) -> bool:
        """Cancel and wait for every task (on close)."""
        for task in list(self._running):
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
