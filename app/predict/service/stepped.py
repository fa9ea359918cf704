"""Stepped jobs (``PredictionService.run_steps``): long work on the predictor, such as
propagating tracks through a sequence, given as an iterator that the worker thread advances
one step per scheduling round, so that the person's clicks and the current image's encode
get in between two steps.

A job makes its iterator on the worker (``make(predictor)``: the predictor is only used
there), tells ``on_step(generation, item)`` after each step and ``on_done(generation, error,
cancelled)`` once at the end. A cancel stops it before its next step and closes the iterator
(``close()``: a generator's ``finally`` runs), so the steps it finished stay done. ``SteppedJobs``
is the queue, one job at a time in the order asked; it has no lock of its own: the service
calls it under its lock.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.predict.base import Predictor

log = logging.getLogger(__name__)

T = TypeVar("T")

Notify = Callable[..., None]  # the service's ``_notify(callback, *args)``: never raises


@dataclass(eq=False)
class SteppedJob(Generic[T]):
    """One ``run_steps`` request and, once started, its iterator."""

    generation: int
    make: Callable[[Predictor], Iterator[T]]
    on_step: Callable[[int, T], None]
    on_done: Callable[[int, BaseException | None, bool], None]
    token: CancelToken = field(default_factory=CancelToken)
    iterator: Iterator[T] | None = None
    steps: int = 0  # steps finished
    over: bool = False  # on_done told

    def run_step(self, predictor: Predictor, notify: Notify) -> bool:
        """(worker) Make the iterator the first time, then advance it once and tell
        ``on_step``; at its end, an error or a cancel close it and tell ``on_done``.
        True once the job is over."""
        if self.token.cancelled:
            self.finish(notify, None, cancelled=True)
            return True
        try:
            if self.iterator is None:
                self.iterator = iter(self.make(predictor))
                if self.token.cancelled:  # cancelled while it was being made
                    self.finish(notify, None, cancelled=True)
                    return True
            item = next(self.iterator)
        except StopIteration:
            self.finish(notify, None, cancelled=False)
            return True
        except Cancelled:  # the step itself saw a cancel (a token the job checks)
            self.finish(notify, None, cancelled=True)
            return True
        except Exception as exc:  # the job ends; the service goes on
            log.warning("stepped job %d failed after %d steps: %s",
                        self.generation, self.steps, exc)
            self.finish(notify, exc, cancelled=False)
            return True
        self.steps += 1
        notify(self.on_step, self.generation, item)  # a finished step is kept, even if
        return False  # cancelled meanwhile: the next round ends the job before another

    def finish(self, notify: Notify, error: BaseException | None, *, cancelled: bool) -> None:
        """(worker) Close the iterator (what it finished stays) and tell ``on_done`` once."""
        if self.over:
            return
        self.over = True
        close: Any = getattr(self.iterator, "close", None)
        self.iterator = None
        if callable(close):
            try:
                close()
            except Exception as exc:
                log.exception("closing stepped job %d failed", self.generation)
                if error is None:
                    error = exc
        notify(self.on_done, self.generation, error, cancelled)


class SteppedJobs:
    """The stepped jobs asked for, in order; the first runs, the others wait."""

    def __init__(self) -> None:
        self._jobs: deque[SteppedJob[Any]] = deque()

    def add(self, job: SteppedJob[Any]) -> None:
        self._jobs.append(job)

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def next(self) -> SteppedJob[Any] | None:
        """The job to run a step of: a cancelled one first (it only closes and tells
        ``on_done``, so a cancelled job waiting behind a long one is answered at the next
        round),
        else the oldest."""
        for job in self._jobs:
            if job.token.cancelled:
                return job
        return self._jobs[0] if self._jobs else None

    def remove(self, job: SteppedJob[Any]) -> None:
        """Forget ``job`` (it is over)."""
        if job in self._jobs:
            self._jobs.remove(job)

    def cancel_all(self) -> None:
        """Cancel every job; the worker closes each and tells its ``on_done``."""
        for job in self._jobs:
            job.token.cancel()
