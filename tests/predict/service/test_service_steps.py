"""Stepped jobs on the prediction service (``run_steps``, issue 15: propagation runs on the
worker with progress and cancel, keeping the frames it finished). Orderings are forced with
events (a step that waits on a gate), never timed; the scripted predictor and recorder are
those of test_service.py."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_service import (
    WAIT,
    Recorder,
    ScriptedPredictor,
    click,
    disk_image,
    image_of,
    loader,
    wait_for,
)

from app.core.jobs import CancelToken
from app.core.sequences import ArraySequence
from app.core.types import Box, Prompt
from app.predict.base import Predictor
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.propagation import FrameResult, PropagationRequest, propagator_for
from app.predict.service.service import PredictionService

WORKER = "maskloop-predictor"


class Job:
    """A stepped job like propagation: each step "writes" a frame (``written``), embedding
    that frame on the predictor as a video backend would; step ``gate_at`` waits for
    ``gate`` (``in_step`` tells it started); step ``fail_at`` raises; ``finally`` records
    that the iterator was closed, and on which thread."""

    def __init__(self, steps: int, rec: Recorder, *, gate_at: int | None = None,
                 fail_at: int | None = None) -> None:
        self.steps = steps
        self.rec = rec
        self.gate_at = gate_at
        self.fail_at = fail_at
        self.gate = threading.Event()
        self.in_step = threading.Event()
        self.written: list[int] = []
        self.threads: set[str] = set()
        self.made_with: list[Predictor] = []
        self.closed_on: str | None = None

    def make(self, predictor: Predictor) -> Iterator[int]:
        self.made_with.append(predictor)
        self.threads.add(threading.current_thread().name)
        return self._frames(predictor)

    def _frames(self, predictor: Predictor) -> Iterator[int]:
        try:
            for i in range(self.steps):
                self.threads.add(threading.current_thread().name)
                if i == self.gate_at:
                    self.in_step.set()
                    assert self.gate.wait(WAIT)
                if i == self.fail_at:
                    raise ValueError(f"frame {i} is broken")
                predictor.embed(image_of(100 + i), image_hash=f"frame-{i}")
                self.written.append(i)
                yield i
        finally:
            self.closed_on = threading.current_thread().name

    def start(self, service: PredictionService, generation: int = 7) -> CancelToken:
        return service.run_steps(
            generation, self.make,
            on_step=lambda gen, item: self.rec._add("step", (gen, item)),
            on_done=lambda gen, err, cancelled: self.rec._add("done", (gen, err, cancelled)))


@pytest.fixture
def service(predictor: ScriptedPredictor, rec: Recorder) -> Iterator[PredictionService]:
    svc = PredictionService(predictor, rec.callbacks())
    yield svc
    assert svc.shutdown(WAIT)


@pytest.fixture
def predictor() -> ScriptedPredictor:
    return ScriptedPredictor()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def done_events(rec: Recorder) -> list[Any]:
    return rec.of("done")


def test_steps_run_on_the_worker_in_order(service, predictor, rec) -> None:
    job = Job(5, rec)
    job.start(service)
    rec.wait(lambda: bool(done_events(rec)))
    assert rec.of("step") == [(7, i) for i in range(5)]
    assert done_events(rec) == [(7, None, False)]
    assert job.made_with == [predictor] and job.written == [0, 1, 2, 3, 4]
    assert job.threads == {WORKER} and rec.threads == {WORKER} and job.closed_on == WORKER
    assert service.wait_idle(WAIT)


def test_a_click_during_a_long_job_is_answered_between_two_steps(service, predictor,
                                                                 rec) -> None:
    service.set_current_image("A", loader(10))
    rec.wait(lambda: rec.of("ready") == ["A"])
    job = Job(10, rec, gate_at=2)
    job.start(service)
    assert job.in_step.wait(WAIT)  # step 2 runs (and embedded frames 0, 1 meanwhile)
    service.request_mask(click(), generation=1)
    job.gate.set()
    rec.wait(lambda: bool(done_events(rec)))
    kinds = rec.kinds()
    assert kinds == ["ready", "step", "step", "step", "mask"] + ["step"] * 7 + ["done"]
    # the job embedded other images: the click re-embedded A and segmented it, not a frame
    gen, result, _ = rec.of("mask")[0]
    assert gen == 1 and result.masks[0][6, 8] and not result.masks[0][0, 0]
    assert rec.of("error") == []


def test_the_current_encode_goes_before_the_next_step(service, predictor, rec) -> None:
    job = Job(4, rec, gate_at=1)
    job.start(service)
    assert job.in_step.wait(WAIT)
    service.set_current_image("B", loader(20))
    job.gate.set()
    rec.wait(lambda: bool(done_events(rec)))
    assert rec.kinds() == ["step", "step", "ready", "step", "step", "done"]


def test_cancel_keeps_the_finished_steps_and_closes_the_iterator(service, predictor,
                                                                 rec) -> None:
    job = Job(10, rec, gate_at=3)
    token = job.start(service)
    assert job.in_step.wait(WAIT)
    token.cancel()  # during step 3: it finishes, no step 4
    job.gate.set()
    rec.wait(lambda: bool(done_events(rec)))
    assert done_events(rec) == [(7, None, True)]
    assert job.written == [0, 1, 2, 3] and [i for _, i in rec.of("step")] == [0, 1, 2, 3]
    assert job.closed_on == WORKER
    assert service.wait_idle(WAIT)


def test_an_error_ends_the_job_and_the_service_goes_on(service, predictor, rec) -> None:
    job = Job(10, rec, fail_at=3)
    job.start(service)
    rec.wait(lambda: bool(done_events(rec)))
    [(gen, err, cancelled)] = done_events(rec)
    assert gen == 7 and isinstance(err, ValueError) and "frame 3" in str(err) and not cancelled
    assert job.written == [0, 1, 2] and job.closed_on == WORKER
    service.set_current_image("A", loader(10))
    service.request_mask(click(), generation=2)
    rec.wait(lambda: bool(rec.of("mask")))
    assert rec.of("mask")[0][0] == 2 and rec.of("error") == []


def test_a_failing_make_ends_the_job(service, rec) -> None:
    def make(predictor: Predictor) -> Iterator[int]:
        raise OSError("video.mp4: cannot be read")

    service.run_steps(3, make, on_step=lambda g, i: rec._add("step", i),
                      on_done=lambda g, e, c: rec._add("done", (g, e, c)))
    rec.wait(lambda: bool(done_events(rec)))
    [(gen, err, cancelled)] = done_events(rec)
    assert gen == 3 and isinstance(err, OSError) and not cancelled and rec.of("step") == []


def test_jobs_run_one_at_a_time_and_a_queued_one_can_be_cancelled(service, rec) -> None:
    first = Job(3, rec, gate_at=1)
    second, third = Job(2, rec), Job(2, rec)
    first.start(service, generation=1)
    assert first.in_step.wait(WAIT)
    second.start(service, generation=2).cancel()  # never starts
    third.start(service, generation=3)
    first.gate.set()
    rec.wait(lambda: len(done_events(rec)) == 3)
    # the cancelled one is answered at the next round, without waiting for the first
    assert [(k, v) for k, v in rec.events if k in ("step", "done")] == [
        ("step", (1, 0)), ("step", (1, 1)), ("done", (2, None, True)), ("step", (1, 2)),
        ("done", (1, None, False)), ("step", (3, 0)), ("step", (3, 1)),
        ("done", (3, None, False))]
    assert second.made_with == []


def test_cancel_all_cancels_the_job(service, rec) -> None:
    job = Job(10, rec, gate_at=2)
    job.start(service)
    assert job.in_step.wait(WAIT)
    service.cancel_all()
    job.gate.set()
    rec.wait(lambda: bool(done_events(rec)))
    assert done_events(rec) == [(7, None, True)] and job.written == [0, 1, 2]
    assert job.closed_on == WORKER


def test_shutdown_during_a_job_closes_it(predictor, rec) -> None:
    service = PredictionService(predictor, rec.callbacks())
    job = Job(10, rec, gate_at=2)
    token = job.start(service)
    assert job.in_step.wait(WAIT)
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(service.shutdown(WAIT)))
    stopper.start()
    wait_for(lambda: token.cancelled)  # shutdown cancels before it joins
    job.gate.set()
    stopper.join(WAIT)
    assert stopped == [True] and not service.alive
    assert done_events(rec) == [(7, None, True)] and job.written == [0, 1, 2]
    assert job.closed_on == WORKER
    late = Job(3, rec)
    assert late.start(service, generation=8).cancelled  # after shutdown: never runs
    assert done_events(rec)[-1] == (8, None, True) and late.made_with == []


# -- real propagation with the classical backend ----------------------------------------------


def moving_disk(i: int) -> np.ndarray:
    """Frame ``i``: ``disk_image`` with the disk moved 2 px right per frame."""
    img = np.roll(disk_image(), 2 * i, axis=1)
    return np.ascontiguousarray(img)


def test_classical_propagation_runs_as_a_stepped_job(rec) -> None:
    """Propagation through 10 frames (optical flow + GrabCut) on the worker, a click on the
    current image answered between two frames, a cancel after frame 4 keeping frames 0..4
    (0: the anchor) and closing the session."""
    frames = ArraySequence([moving_disk(i) for i in range(10)])
    truth0 = (np.mgrid[:64, :80][0] - 32) ** 2 + (np.mgrid[:64, :80][1] - 40) ** 2 < 15 ** 2
    closed: list[str] = []
    holder: dict[str, CancelToken] = {}
    clicked = threading.Event()

    def make(predictor: Predictor) -> Iterator[FrameResult]:
        session = propagator_for(predictor).open(frames)
        try:
            session.add_mask(0, 1, truth0)
            yield from session.propagate(PropagationRequest(start=0))
        finally:
            session.close()
            closed.append(threading.current_thread().name)

    def on_step(gen: int, result: FrameResult) -> None:
        rec._add("step", result)
        if result.frame == 2:  # a click while the job runs: answered before frame 3
            service.request_mask(Prompt(box=Box(20, 12, 60, 52), multimask=False), 1)
            clicked.set()
        if result.frame == 4:
            holder["token"].cancel()

    with PredictionService(ClassicalPredictor(), rec.callbacks()) as service:
        service.set_current_image("disk", disk_image)
        rec.wait(lambda: rec.of("ready") == ["disk"])
        holder["token"] = service.run_steps(
            5, make, on_step=on_step,
            on_done=lambda gen, err, cancelled: rec._add("done", (gen, err, cancelled)))
        rec.wait(lambda: bool(done_events(rec)))
        assert clicked.is_set() and done_events(rec) == [(5, None, True)]
        steps = rec.of("step")
        assert [r.frame for r in steps] == [0, 1, 2, 3, 4] and closed == [WORKER]
        for r in steps:  # the disk followed: it moved 2 px per frame
            expected = np.roll(truth0, 2 * r.frame, axis=1)
            got = r.masks[1]
            assert (got & expected).sum() / (got | expected).sum() >= 0.8, r.frame
        kinds = rec.kinds()
        assert kinds.index("mask") == kinds.index("step") + 3  # right after frame 2
        assert rec.of("error") == []


@pytest.mark.slow
def test_sam2_propagation_runs_as_a_stepped_job(rec) -> None:
    """The real SAM2.1 tiny (random weights, 256-pixel input as in sam2/test_video.py): its
    video propagation through the service, a click on the current image answered between
    two frames with the same masks as before the job (the job used the model on the
    frames meanwhile)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "sam2"))
    from video_shots import shot, small_sam2

    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor

    predictor = SAM2Predictor.from_model(small_sam2(), "sam2.1-tiny-256-random",
                                         EmbeddingCache(disk_dir=None), runtime="torch")
    seq, _masks = shot()
    prompt = Prompt(box=Box(14, 8, 46, 40), multimask=False)

    def make(p: Predictor) -> Iterator[FrameResult]:
        session = propagator_for(p).open(seq)
        try:
            session.add_prompt(0, 1, Prompt(box=Box(18, 12, 42, 36)))
            yield from session.propagate(PropagationRequest(start=0))
        finally:
            session.close()

    def on_step(gen: int, result: FrameResult) -> None:
        rec._add("step", result)
        if result.frame == 1:
            service.request_mask(prompt, 2)

    with PredictionService(predictor, rec.callbacks()) as service:
        service.set_current_image("still", lambda: disk_image(3))
        service.request_mask(prompt, 1)
        rec.wait(lambda: len(rec.of("mask")) == 1)
        service.run_steps(9, make, on_step=on_step,
                          on_done=lambda gen, err, cancelled: rec._add("done", (gen, err,
                                                                                cancelled)))
        rec.wait(lambda: bool(done_events(rec)))
        assert done_events(rec) == [(9, None, False)] and rec.of("error") == []
        assert [r.frame for r in rec.of("step")] == list(range(len(seq)))
        kinds = rec.kinds()
        assert kinds.index("mask", kinds.index("step")) == kinds.index("step") + 2
        (g1, before, _), (g2, during, _) = rec.of("mask")
        assert (g1, g2) == (1, 2) and before.masks.shape[1:] == (64, 80)
        assert np.array_equal(before.masks, during.masks)
