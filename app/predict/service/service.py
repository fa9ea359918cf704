"""The prediction service: ONE worker thread owns the predictor and answers the UI's requests
(and a click lane beside it, below).

sam2's state is not thread-safe and the GUI thread must never run torch, network or disk-heavy
work, so every call into the predictor (and every image load it needs) happens on the
service's worker thread. Work is taken in this order:

1. a click (``request_mask``): only the newest prompt of the current image is answered, older
   queued ones are stale and dropped (counted in ``stats.stale_dropped``);
2. encoding the current image (started as soon as ``set_current_image`` is called), then,
   where the predictor is ``Preparing``, the work its first click would do first (20 ms or
   so for SAM2 on a CPU), so that the first click is as fast as the next ones;
3. segment everything or find all (``find_all``: a ``FindQuery``); the person asked and waits
   for it, and a click made meanwhile waits for it too, so the UI offers ``cancel_everything``;
   then find all in other images (``find_all_in``: "the same exemplars in the next images"),
   one image per job so that clicks get in between (``cancel_find_in`` drops the rest);
4. prefetching the embeddings of the next images (speculative, so last).

A stepped job (``run_steps``: propagation through a sequence) runs one step per round
between 3's current-image requests and 3's find all in other images; see ``_next_locked``.

A predictor with ``resumable_encode`` (local SAM2) encodes in steps (``start_embed``): the
worker runs ONE step of one encode per scheduling round, so a click waits at most one
encoder step, is decoded between two steps, and the encode then goes on where it stopped.
Encodes are kept by image: switching images keeps a half-done encode that is still wanted
(the new current image, or one still in the prefetch list) and resumes it; one no longer
wanted is kept paused (the ``encodes.KEEP_PAUSED`` most recent; older ones are released and their
steps counted in ``stats.encode_steps_discarded``) in case the person comes back. A click
and the current image's encode get every worker thread, a prefetch one less, so that a core
stays with the GUI (where the predictor has ``thread_control``).

The click lane: where the predictor can decode beside an encode (``decode_beside_encode``:
local SAM2 on a CPU) and there are two cores or more, a click that comes while the worker runs
a prefetch step is decoded at once on the lane's thread, on the core the prefetch leaves
free, instead of waiting for the step to end (up to half a second on a laptop: the person's
first clicks on an image, before ``ClickRhythm`` knows when they come). Only one decode runs
at a time: while the lane decodes, the worker only goes on with prefetch steps.

Other backends (classical, remote, hosted) encode in one call: a click cancels a running
prefetch (it stops at its next cancel check) and it is queued again first; so that frequent
clicks cannot starve it forever, a prefetch preempted ``MAX_PREEMPTIONS`` times runs to the
end the next time. Changing image cancels the stale encode (its ``CancelToken``); if the new
image is the one being prefetched, that encode simply becomes the current one.

Either way, changing image drops stale clicks and replaces the prefetch list.

Callbacks run ON THE WORKER THREAD: a Qt UI must marshal them to the GUI thread (emit a
signal from the callback; a queued connection delivers it in the GUI thread). A callback
that raises is logged and ignored; an exception in a job is reported through ``on_error`` and
never kills the worker (a failed prediction leaves the annotations alone). Progress is told
as typed ``ProgressEvent``s (``Phase``).

``PredictionService`` schedules (what runs next, under its lock: this module) and runs the
job bodies on its worker thread and click lane (load, encode, decode, propose), which report
their outcome through the callbacks (``bodies.py``, inherited). The records of queued work
are in ``records.py``, the resumable encodes under way or paused in ``encodes.py``, and when a
click is due (so that a prefetch step waits) in ``rhythm.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TypeVar

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.core.lru import BoundedCache
from app.core.threads import worker_threads
from app.core.types import EmbeddingKey, Prompt
from app.predict.base import EverythingOptions, FindQuery, Predictor, PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.service.bodies import JobBodies
from app.predict.service.encodes import ResumableEncodes
from app.predict.service.records import _Click, _Everything, _FindIn, _Image, _Status, _Task
from app.predict.service.rhythm import ClickRhythm
from app.predict.service.stepped import SteppedJob, SteppedJobs
from app.predict.service.types import (
    ImageLoader,
    Job,
    JobKind,
    ServiceCallbacks,
    ServiceStats,
)

__all__ = ["MAX_PREEMPTIONS", "PredictionService"]

log = logging.getLogger(__name__)

MAX_PREEMPTIONS = 2  # (one-call encodes) clicks that may cancel one prefetch before it must finish
PREFETCHED_KEPT = 256  # recently prefetched image hashes remembered (predictors with no cache)
T = TypeVar("T")


class PredictionService(JobBodies):
    """Runs a Predictor on one daemon worker thread; see the module docstring."""

    def __init__(
        self,
        predictor: Predictor,
        callbacks: ServiceCallbacks | None = None,
        *,
        name: str = "maskloop-predictor",
    ) -> None:
        self.predictor = predictor
        self.callbacks = callbacks or ServiceCallbacks()
        self._model_id = predictor.model_id
        cache = getattr(predictor, "cache", None)
        self._cache: EmbeddingCache | None = cache if isinstance(cache, EmbeddingCache) else None
        self._cond = threading.Condition()
        self._current: _Image | None = None
        self._click: _Click | None = None
        self._everything: _Everything | None = None
        self._finds: deque[_FindIn] = deque()  # find all in other images, in order
        self._finding: _FindIn | None = None  # the one running
        self._prefetch: deque[_Image] = deque()
        self._steps = SteppedJobs()  # run_steps: one step per round (stepped.py)
        self._prefetch_total = 0
        self._prefetch_done = 0
        # recently embedded hashes
        self._prefetched: BoundedCache[str, bool] = BoundedCache(PREFETCHED_KEPT)
        self._preemptions: dict[str, int] = {}  # image hash -> prefetches cancelled by clicks
        self._encodes = ResumableEncodes()  # resumable encodes under way or paused
        self._threads: int | None = None  # the thread count last set (worker thread only)
        self._rhythm = ClickRhythm()  # when a click is expected (resumable encodes)
        self._hold_until: float | None = None  # prefetch held back until then (or a click)
        self._running: _Task | None = None
        self._lane: _Task | None = None  # the click the lane is decoding
        self._stopping = False
        self._close_predictor = False
        self._stats = ServiceStats()
        self._last_embedded: str | None = None  # worker thread only
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        self._lane_thread = threading.Thread(target=self._lane_loop, name=f"{name}-clicks",
                                             daemon=True)
        self._lane_thread.start()

    # -- requests (any thread; they return at once) -----------------------------------------

    def set_current_image(
        self,
        image_hash: str,
        loader: ImageLoader,
        prefetch: Iterable[tuple[str, ImageLoader]] = (),
    ) -> None:
        """Make ``image_hash`` the current image: encode it at once (``loader`` runs on the
        worker), then prefetch ``prefetch`` in order. Stale work for other images is
        cancelled; setting the same image again only replaces the prefetch list (or retries
        the encode if it failed)."""
        with self._cond:
            if self._stopping:
                return
            cur = self._current
            if cur is None or cur.hash != image_hash or cur.status == _Status.FAILED:
                self._switch_to_locked(_Image(image_hash, loader))
            wanted = [_Image(h, ld) for h, ld in prefetch if h != image_hash]
            running = self._running
            if (
                running is not None
                and running.job.kind is JobKind.PREFETCH
                and running.token is not None
                and not running.token.cancelled
            ):  # still wanted (or now current): let it finish
                wanted = [img for img in wanted if img.hash != running.job.image_hash]
            self._prefetch = deque(wanted)
            self._prefetch_total = len(wanted)
            self._prefetch_done = 0
            self._cond.notify_all()

    def request_mask(
        self, prompt: Prompt, generation: int, image_hash: str | None = None
    ) -> None:
        """Ask for the masks of ``prompt`` on the current image (or on ``image_hash``, which
        must be current when the request is served). Supersedes any queued click."""
        with self._cond:
            if self._stopping:
                return
            if self._click is not None:
                self._stats.stale_dropped += 1
            cur = self._current
            target = image_hash or (cur.hash if cur else None)
            now = time.perf_counter()
            self._click = _Click(prompt, generation, target, now)
            self._rhythm.clicked(now)
            if cur is not None and cur.status == _Status.READY and target == cur.hash:
                self._preempt_prefetch_locked()
            self._cond.notify_all()

    def segment_everything(
        self, generation: int, options: EverythingOptions = EverythingOptions()
    ) -> None:
        """Propose every object of the current image once it is encoded
        (``Predictor.segment_everything`` with ``options``). A newer request replaces (and
        cancels) an older one."""
        with self._cond:
            if self._stopping:
                return
            self._cancel_everything_locked()
            target = self._current.hash if self._current else None
            self._everything = _Everything(generation, target, options)
            self._cond.notify_all()

    def find_all(self, generation: int, query: FindQuery) -> None:
        """What ``query`` asks for in the current image once it is encoded
        (``Predictor.find_all``), answered like segment everything (``on_everything``); it
        takes the place of (and cancels) an older segment-everything or find-all request."""
        with self._cond:
            if self._stopping:
                return
            self._cancel_everything_locked()
            target = self._current.hash if self._current else None
            self._everything = _Everything(generation, target, EverythingOptions(), query=query)
            self._cond.notify_all()

    def find_all_in(self, generation: int, image_hash: str, loader: ImageLoader,
                    query: FindQuery) -> None:
        """What ``query`` asks for in another image (loaded and encoded on the worker),
        queued after the current image's requests and answered like ``find_all`` (with
        ``generation``); several are run in the order asked."""
        with self._cond:
            if self._stopping:
                return
            self._finds.append(_FindIn(generation, image_hash, loader, query))
            self._cond.notify_all()

    def cancel_find_in(self) -> None:
        """Drop the queued ``find_all_in`` requests and cancel the running one."""
        with self._cond:
            self._cancel_finds_locked()

    def _cancel_finds_locked(self) -> None:
        for find in self._finds:
            find.token.cancel()
        self._finds.clear()
        if self._finding is not None:
            self._finding.token.cancel()

    def run_steps(self, generation: int, make: Callable[[Predictor], Iterator[T]], *,
                  on_step: Callable[[int, T], None],
                  on_done: Callable[[int, BaseException | None, bool], None]) -> CancelToken:
        """Run a long job on the worker, one step at a time: ``make(predictor)`` once, then
        one item of its iterator per scheduling round (clicks and the current image's
        encode go first between two steps), ``on_step(generation, item)`` after each,
        ``on_done(generation, error, cancelled)`` at the end (both on the worker thread).
        Cancelling the returned token (or ``cancel_all``) stops it before its next step and
        closes the iterator, keeping the steps done. Jobs run one at a time, in order.
        After ``shutdown`` the job never starts: ``on_done(generation, None, True)`` at once
        (on the caller's thread)."""
        job = SteppedJob(generation, make, on_step, on_done)
        with self._cond:
            if not self._stopping:
                self._steps.add(job)
                self._cond.notify_all()
                return job.token
        job.token.cancel()
        job.finish(self._notify, None, cancelled=True)
        return job.token

    def cancel_everything(self) -> None:
        """Cancel the pending or running segment-everything or find-all request."""
        with self._cond:
            self._cancel_everything_locked()

    def cancel_all(self) -> None:
        """Drop every queued request, cancel the running job and forget the current image
        (call ``set_current_image`` to start again)."""
        with self._cond:
            self._cancel_everything_locked()
            self._cancel_finds_locked()
            self._steps.cancel_all()  # the worker closes them and tells on_done
            if self._click is not None:
                self._stats.stale_dropped += 1
                self._click = None
            if self._current is not None:
                self._current.token.cancel()
                self._current = None
            self._prefetch.clear()
            if self._running is not None and self._running.token is not None:
                self._running.token.cancel()
            self._cond.notify_all()

    def shutdown(self, timeout: float | None = 10.0, *, close_predictor: bool = False) -> bool:
        """Cancel everything, stop the worker and join it; True if it stopped in time.
        With ``close_predictor`` the worker calls ``predictor.close()`` before it exits."""
        self.cancel_all()
        with self._cond:
            self._stopping = True
            self._close_predictor = close_predictor
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        if threading.current_thread() is not self._lane_thread:
            self._lane_thread.join(timeout)
        return not self._thread.is_alive() and not self._lane_thread.is_alive()

    def __enter__(self) -> PredictionService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- state (any thread) ----------------------------------------------------------------

    @property
    def current_key(self) -> EmbeddingKey | None:
        """The key of the current image once it is encoded, else None."""
        with self._cond:
            cur = self._current
            return cur.key if cur is not None and cur.status == _Status.READY else None

    @property
    def stats(self) -> ServiceStats:
        with self._cond:
            return replace(self._stats)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no work is queued or running (for scripts and tests, not the GUI)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._stopping or (self._running is None and self._lane is None
                                           and not self._has_work_locked()),
                timeout,
            )

    # -- scheduling (lock held) --------------------------------------------------------------

    def _switch_to_locked(self, new: _Image) -> None:
        old = self._current
        if old is not None:
            old.token.cancel()
        running = self._running
        if (
            running is not None
            and running.job.kind is JobKind.PREFETCH
            and running.job.image_hash == new.hash
            and running.token is not None
            and not running.token.cancelled
        ):
            new.token = running.token  # the prefetch in flight becomes the current encode
            new.status = _Status.RUNNING
        elif running is not None and running.token is not None and running.job.kind in (
            JobKind.EMBED, JobKind.PREFETCH
        ):
            running.token.cancel()  # a stale encode: the current image goes first
        self._current = new
        self._rhythm.new_image(time.perf_counter())
        if self._click is not None and self._click.image_hash != new.hash:
            self._stats.stale_dropped += 1
            self._click = None
        self._cancel_everything_locked()  # proposals of another image are stale

    def _preempt_prefetch_locked(self) -> None:
        """A click never waits for speculative work: cancel a running prefetch (of another
        image than the current one) and queue it again first."""
        running = self._running
        if (
            running is not None
            and running.job.kind is JobKind.PREFETCH
            and running.item is not None
            and running.token is not None
            and not running.token.cancelled
            and self._preemptions.get(running.item.hash, 0) < MAX_PREEMPTIONS
        ):
            self._preemptions[running.item.hash] = self._preemptions.get(running.item.hash, 0) + 1
            running.token.cancel()
            self._prefetch.appendleft(_Image(running.item.hash, running.item.loader))

    def _cancel_everything_locked(self) -> None:
        if self._everything is not None:
            self._everything.token.cancel()
            self._everything = None
            self._stats.stale_dropped += 1
        running = self._running
        proposing = (JobKind.EVERYTHING, JobKind.FIND_ALL)
        other = self._finding.token if self._finding is not None else None
        if running is not None and running.job.kind in proposing and running.token \
                and running.token is not other:
            running.token.cancel()

    def _has_work_locked(self) -> bool:
        cur = self._current
        return bool(
            self._click is not None
            or self._everything is not None
            or self._finds
            or self._steps
            or (cur is not None and cur.status == _Status.PENDING)
            or self._prepare_due_locked()
            or self._prefetch
        )

    def _next_locked(self) -> _Task | None:
        """Pick the next job by priority, dropping stale requests on the way (worker thread)."""
        stepping = self._stepping()
        if stepping:
            self._encodes.trim(self._wanted_locked(), self._stats)
        if self._lane is not None:  # a click is being decoded: only a prefetch step beside it
            return self._prefetch_step_locked() if stepping else None
        cur = self._current
        click = self._click
        if click is not None:
            if cur is None or click.image_hash != cur.hash:
                self._click = None
                job = Job(JobKind.PREDICT, click.image_hash, click.generation)
                if cur is None and click.image_hash is None:
                    no_image = PredictorError("no image to segment: open an image first")
                    return _Task(job, None, lambda: self._fail(job, no_image))
                self._stats.stale_dropped += 1
            elif cur.status in (_Status.READY, _Status.FAILED):
                self._click = None
                job = Job(JobKind.PREDICT, cur.hash, click.generation)
                return _Task(job, None, lambda: self._run_click(cur, click, job))
        if cur is not None and cur.status == _Status.PENDING:
            job = Job(JobKind.EMBED, cur.hash)
            if stepping:  # one step, then look again (status stays PENDING until encoded)
                return _Task(job, None, lambda: self._step_current(cur, job))
            cur.status = _Status.RUNNING
            return _Task(job, cur.token, lambda: self._run_embed(cur, job))
        if self._prepare_due_locked() and cur is not None and cur.key is not None:
            cur.prepared = True
            key = cur.key
            job = Job(JobKind.PREPARE, cur.hash)
            return _Task(job, None, lambda: self._run_prepare(key))
        ev = self._everything
        if ev is not None:
            if cur is None or ev.image_hash != cur.hash:
                self._everything = None
                self._stats.stale_dropped += 1
            elif cur.status in (_Status.READY, _Status.FAILED):
                self._everything = None
                job = Job(ev.kind, cur.hash, ev.generation)
                return _Task(job, ev.token, lambda: self._run_everything(cur, ev, job))
        # A stepped job (run_steps, e.g. propagation) after the current image's requests:
        # a click waits at most one step and the current encode goes first, as the module
        # says; segment everything / find all on the current image too (one request the
        # person is looking at, the job resumes after it). But before find all in other
        # images and prefetch: the person asked for this job and watches its frames arrive,
        # while those are for images not shown yet (prefetch is speculative); a find all
        # in other images queued meanwhile runs when the job ends or is cancelled.
        steps = self._steps.next()
        if steps is not None and (cur is None or cur.status != _Status.PENDING):
            job = Job(JobKind.STEPS, None, steps.generation)
            return _Task(job, steps.token, lambda: self._run_step(steps))
        if self._finds and (cur is None or cur.status != _Status.PENDING):
            find = self._finds.popleft()
            self._finding = find
            job = Job(JobKind.FIND_ALL, find.image_hash, find.generation)
            return _Task(job, find.token, lambda: self._run_find_in(find, job))
        self._hold_until = None
        if stepping:
            return self._prefetch_step_locked()
        if self._prefetch:
            item = self._prefetch.popleft()
            job = Job(JobKind.PREFETCH, item.hash)
            return _Task(job, item.token, lambda: self._run_prefetch(item), item)
        return None

    def _prefetch_step_locked(self) -> _Task | None:
        """One step of the first next image's encode, unless a click is due (``_hold_until``)."""
        self._hold_until = None
        if not self._prefetch or self._click_expected_locked():
            return None
        head = self._prefetch[0]  # stays queued until encoded, skipped or failed
        job = Job(JobKind.PREFETCH, head.hash)
        return _Task(job, None, lambda: self._step_prefetch(head, job))

    def _prepare_due_locked(self) -> bool:
        """Whether the current image is encoded but not yet made ready for its first click
        by a ``Preparing`` predictor."""
        cur = self._current
        if cur is None or cur.status != _Status.READY or cur.prepared or cur.key is None:
            return False
        if not callable(getattr(self.predictor, "prepare", None)):
            cur.prepared = True  # nothing to do, ever
            return False
        return True

    def _lane_next_locked(self) -> _Task | None:
        """(click lane) The click to decode now beside the worker's prefetch step, if any
        (see the module docstring); None when the worker will answer it."""
        running, click, cur = self._running, self._click, self._current
        if (self._lane is not None or click is None or cur is None or running is None
                or running.job.kind is not JobKind.PREFETCH or running.token is not None
                or cur.status != _Status.READY or click.image_hash != cur.hash
                or not self._beside_encode()):
            return None
        self._click = None
        self._stats.masks_beside_encode += 1
        job = Job(JobKind.PREDICT, cur.hash, click.generation)
        return _Task(job, None, lambda: self._run_click(cur, click, job, lane=True))

    def _beside_encode(self) -> bool:
        """Whether a click may be decoded while a prefetch step runs: the predictor says
        so and there is a core besides the step's (``worker_threads() - 1`` of them)."""
        try:
            caps = self.predictor.capabilities
        except Exception:
            return False
        return caps.decode_beside_encode and caps.thread_control and worker_threads() >= 2

    def _stepping(self) -> bool:
        """Whether the predictor encodes in resumable steps (read each time: a stand-in
        predictor becomes the real one once loaded)."""
        try:
            resumable = self.predictor.capabilities.resumable_encode
        except Exception:
            return False
        return bool(resumable) and callable(getattr(self.predictor, "start_embed", None))

    def _click_expected_locked(self) -> bool:
        """Whether a prefetch step now would likely still run when the person's next click
        comes (the usual pause after an answer, less the step's usual length): then it
        waits (``_hold_until``) until that click or the end of the window, so that a click
        does not wait for speculative work. A person who stopped clicking (twice the usual
        pause) does not hold the prefetch back. See ``rhythm.py``."""
        if self._current is None or self._current.status != _Status.READY:
            return False
        head = self._encodes.get(self._prefetch[0].hash)
        hold = self._rhythm.hold_until(head.job.done if head is not None else 0,
                                       time.perf_counter())
        if hold is None:
            return False
        self._hold_until = hold
        return True

    def _wanted_locked(self) -> set[str]:
        cur = self._current
        wanted = {img.hash for img in self._prefetch}
        if cur is not None and cur.status == _Status.PENDING:
            wanted.add(cur.hash)
        return wanted

    # -- the worker -------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                task = self._next_locked()
                while task is None and not self._stopping:
                    self._cond.notify_all()  # wake wait_idle
                    hold = self._hold_until
                    self._cond.wait(None if hold is None
                                    else max(0.001, hold - time.perf_counter()))
                    task = self._next_locked()
                if task is None:
                    break
                self._running = task
            self._run_task(task, lane=False)
        with self._cond:  # the lane's last click is decoded before the predictor closes
            self._cond.wait_for(lambda: self._lane is None)
        if self._close_predictor:
            try:
                self.predictor.close()
            except Exception:
                log.exception("closing the predictor failed")

    def _lane_loop(self) -> None:
        """The click lane: decodes a click while the worker runs a prefetch step."""
        while True:
            with self._cond:
                task = self._lane_next_locked()
                while task is None and not self._stopping:
                    self._cond.wait()
                    task = self._lane_next_locked()
                if task is None:
                    return
                self._lane = task
            self._run_task(task, lane=True)

    def _run_task(self, task: _Task, *, lane: bool) -> None:
        """Run ``task`` (the worker's, or the lane's click); a job never kills its thread.
        Then the thread is free again (``_running`` or ``_lane``), and whoever waits is told."""
        started = time.perf_counter()
        try:
            task.run()
        except Cancelled:
            with self._cond:
                self._stats.cancelled += 1
                if task.job.kind in (JobKind.EMBED, JobKind.PREFETCH):
                    self._stats.encode_seconds_discarded += time.perf_counter() - started
        except Exception as exc:
            self._fail(task.job, exc)
        finally:
            with self._cond:
                if lane:
                    self._lane = None
                else:
                    self._running = None
                self._cond.notify_all()
