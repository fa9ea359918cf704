"""The prediction service's worker, without Qt: a scripted predictor whose encodes wait on
events (so every ordering is forced, never timed) and the real classical backend."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from app.core.errors import ImageError
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Box, EmbeddingKey, MaskProposal, MaskResult, Point, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    Predictor,
    PredictorError,
    SourceKind,
)
from app.predict.cache.file_format import Embedding
from app.predict.cache.store import EmbeddingCache
from app.predict.classical.predictor import ClassicalPredictor
from app.predict.service.service import PredictionService
from app.predict.service.types import Job, JobKind, Phase, ProgressEvent, ServiceCallbacks

WAIT = 10.0  # seconds before a test gives up waiting for an event (never reached when passing)


def image_of(value: int, size: int = 24) -> np.ndarray:
    """A flat grey image with a brighter square: the scripted predictor segments the square."""
    img = np.full((size, size, 3), value, np.uint8)
    img[4:12, 6:16] = 255
    return img


def loader(value: int) -> Callable[[], np.ndarray]:
    return lambda: image_of(value)


class ScriptedPredictor:
    """A deterministic Predictor: ``embed`` of a hash in ``gates`` waits for that event
    (checking its CancelToken meanwhile); ``predict`` returns the pixels equal to the
    clicked one. Like sam2, it holds only the last embedded image."""

    model_id = "scripted"
    description = "scripted test predictor"
    capabilities = Capabilities(SourceKind.SAM2, "test")

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.embed_calls: list[str] = []
        self.cancelled: list[str] = []
        self.images: dict[str, np.ndarray] = {}
        self.last: str | None = None  # like sam2's state: only the last embedded image
        self.closed_on: str | None = None
        self.threads: set[str] = set()

    def started_event(self, image_hash: str) -> threading.Event:
        return self.started.setdefault(image_hash, threading.Event())

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        assert image_hash is not None
        self.threads.add(threading.current_thread().name)
        self.embed_calls.append(image_hash)
        self.started_event(image_hash).set()
        gate = self.gates.get(image_hash)
        try:
            while gate is not None and not gate.wait(0.005):
                check(cancel)
            check(cancel)
        except Exception:
            self.cancelled.append(image_hash)
            raise
        self.images[image_hash] = image
        self.last = image_hash
        return EmbeddingKey(image_hash, self.model_id)

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        self.threads.add(threading.current_thread().name)
        if key.image_hash != self.last:
            raise PredictorError(f"image {key.image_hash} is not the embedded one")
        if prompt.is_empty():
            raise PredictorError("empty prompt")
        image = self.images[key.image_hash][..., 0]
        p = prompt.points[-1]
        mask = image == image[int(p.y), int(p.x)]
        return MaskResult(mask[None], np.array([0.9], np.float32),
                          np.zeros((1, 256, 256), np.float32))

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        assert isinstance(image, EmbeddingKey) and image.image_hash == self.last
        gate = self.gates.get("everything")
        while gate is not None and not gate.wait(0.005):
            check(cancel)
        pixels = self.images[image.image_hash][..., 0]
        out = []
        for i, value in enumerate(np.unique(pixels)):
            if progress:
                progress(i, options.points_per_side, "segmenting")
            out.append(MaskProposal(pixels == value, 0.9, 0.95, (0.0, 0.0, 1.0, 1.0)))
        return out

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """The pixels whose grey value is each of the query's texts (e.g. "255")."""
        assert isinstance(image, EmbeddingKey) and image.image_hash == self.last
        pixels = self.images[image.image_hash][..., 0]
        out = []
        for i, text in enumerate(query.texts):
            check(cancel)
            out.append(MaskProposal(pixels == int(text), 0.9, 0.95, (0.0, 0.0, 1.0, 1.0), text))
            if progress:
                progress(i + 1, len(query.texts), text)
        return out

    def close(self) -> None:
        self.closed_on = threading.current_thread().name


@dataclass
class Recorder:
    """Collects the service's callbacks in order; ``wait`` blocks until a condition holds."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _add(self, kind: str, value: Any) -> None:
        with self.cond:
            self.threads.add(threading.current_thread().name)
            self.events.append((kind, value))
            self.cond.notify_all()

    def callbacks(self) -> ServiceCallbacks:
        return ServiceCallbacks(
            on_embedding_ready=lambda key, sec: self._add("ready", key.image_hash),
            on_mask=lambda result, prompt, gen, ms: self._add("mask", (gen, result, ms)),
            on_error=lambda exc, job: self._add("error", (exc, job)),
            on_progress=lambda event: self._add("progress", event),
            on_everything=lambda proposals, gen: self._add("everything", (gen, proposals)),
        )

    def of(self, kind: str) -> list[Any]:
        with self.cond:
            return [v for k, v in self.events if k == kind]

    def kinds(self) -> list[str]:
        with self.cond:
            return [k for k, _ in self.events if k != "progress"]

    def wait(self, pred: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(pred, WAIT), f"timed out; events: {self.events}"


@pytest.fixture
def predictor() -> ScriptedPredictor:
    return ScriptedPredictor()


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def service(predictor: ScriptedPredictor, rec: Recorder):
    svc = PredictionService(predictor, rec.callbacks())
    yield svc
    assert svc.shutdown(WAIT)


def click(x: float = 8.5, y: float = 6.5) -> Prompt:
    return Prompt(points=(Point(x, y),))


def test_scripted_predictor_is_a_predictor(predictor: ScriptedPredictor) -> None:
    assert isinstance(predictor, Predictor)


def test_click_before_embedding_is_answered_after_it(service, predictor, rec) -> None:
    predictor.gates["A"] = threading.Event()
    service.set_current_image("A", loader(10))
    assert predictor.started_event("A").wait(WAIT)
    service.request_mask(click(), generation=1)
    assert rec.of("mask") == [] and service.current_key is None  # the encode is still held
    predictor.gates["A"].set()
    rec.wait(lambda: len(rec.of("mask")) == 1)
    assert rec.kinds() == ["ready", "mask"]
    gen, result, latency_ms = rec.of("mask")[0]
    assert gen == 1 and latency_ms > 0
    assert result.masks[0, 6, 8] and result.masks[0, 4:12, 6:16].all()
    assert result.masks[0].sum() == 80
    assert service.current_key == EmbeddingKey("A", "scripted")
    assert rec.threads == {"maskloop-predictor"} == predictor.threads  # never the test thread


def test_only_the_newest_click_is_answered(service, predictor, rec) -> None:
    predictor.gates["A"] = threading.Event()
    service.set_current_image("A", loader(10))
    for gen in (1, 2, 3):
        service.request_mask(click(1.5 + gen, 1.5), generation=gen)
    predictor.gates["A"].set()
    assert service.wait_idle(WAIT)
    assert [g for g, _, _ in rec.of("mask")] == [3]
    assert service.stats.stale_dropped == 2 and service.stats.masks == 1


def test_image_switch_cancels_the_stale_encode(service, predictor, rec) -> None:
    predictor.gates["A"] = threading.Event()  # never released: only a cancel ends it
    service.set_current_image("A", loader(10))
    assert predictor.started_event("A").wait(WAIT)
    service.request_mask(click(), generation=1)  # a click on A, now stale
    service.set_current_image("B", loader(20))
    assert service.wait_idle(WAIT)
    assert predictor.cancelled == ["A"] and predictor.embed_calls == ["A", "B"]
    assert rec.of("ready") == ["B"] and rec.of("mask") == [] and rec.of("error") == []
    s = service.stats
    assert (s.cancelled, s.stale_dropped, s.embeds) == (1, 1, 1)


def test_click_on_an_image_no_longer_current_is_dropped(service, predictor, rec) -> None:
    service.set_current_image("A", loader(10))
    assert service.wait_idle(WAIT)
    predictor.gates["B"] = threading.Event()
    service.set_current_image("B", loader(20))
    service.request_mask(click(), generation=7, image_hash="A")
    predictor.gates["B"].set()
    assert service.wait_idle(WAIT)
    assert rec.of("mask") == [] and service.stats.stale_dropped == 1


def test_prefetch_runs_after_the_current_image_in_order(service, predictor, rec) -> None:
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20)), ("C", loader(30))])
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls == ["A", "B", "C"]
    assert rec.of("ready") == ["A"]  # prefetches are not the current image
    prefetch_progress = [p for p in rec.of("progress") if p.phase is Phase.PREFETCHING]
    assert [(p.done, p.total) for p in prefetch_progress] == [(1, 2), (2, 2)]
    # The predictor now holds C: a click on A re-embeds A first, then answers.
    service.request_mask(click(), generation=1)
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls == ["A", "B", "C", "A"] and len(rec.of("mask")) == 1
    # Moving on to B: B is encoded as current, C was prefetched lately (skipped), D is new.
    service.set_current_image("B", loader(20), prefetch=[("C", loader(30)), ("D", loader(40))])
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls[4:] == ["B", "D"]
    s = service.stats
    assert (s.prefetched, s.prefetch_skipped, s.embeds) == (3, 1, 2)


def test_switching_to_the_image_being_prefetched_reuses_that_encode(
    service, predictor, rec
) -> None:
    predictor.gates["B"] = threading.Event()
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20)), ("C", loader(30))])
    assert predictor.started_event("B").wait(WAIT)
    service.set_current_image("B", loader(20), prefetch=[("C", loader(30))])
    service.request_mask(click(), generation=2)
    predictor.gates["B"].set()
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls == ["A", "B", "C"]  # B encoded once, the click before C
    assert predictor.cancelled == []
    assert rec.kinds() == ["ready", "ready", "mask"]
    assert rec.of("ready") == ["A", "B"]


def test_a_click_preempts_a_running_prefetch(service, predictor, rec) -> None:
    predictor.gates["B"] = threading.Event()
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20)), ("C", loader(30))])
    assert predictor.started_event("B").wait(WAIT)
    service.request_mask(click(), generation=1)
    rec.wait(lambda: len(rec.of("mask")) == 1)  # answered while B's encode is still held
    assert predictor.cancelled == ["B"]
    predictor.gates["B"].set()
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls == ["A", "B", "B", "C"]  # B queued again, first
    assert service.stats.prefetched == 2


def wait_for(pred: Callable[[], bool]) -> None:
    """Poll a condition the callbacks do not signal (e.g. the predictor's own counters)."""
    done = threading.Event()
    for _ in range(int(WAIT / 0.005)):
        if pred():
            return
        done.wait(0.005)
    raise AssertionError("timed out")


def test_frequent_clicks_cannot_starve_a_prefetch(service, predictor, rec) -> None:
    from app.predict.service.service import MAX_PREEMPTIONS

    predictor.gates["B"] = threading.Event()
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20))])
    for n in range(1, MAX_PREEMPTIONS + 1):
        wait_for(lambda n=n: predictor.embed_calls.count("B") == n)
        service.request_mask(click(), generation=n)
        rec.wait(lambda n=n: len(rec.of("mask")) == n)  # answered at once: B was cancelled
    assert predictor.cancelled == ["B"] * MAX_PREEMPTIONS
    wait_for(lambda: predictor.embed_calls.count("B") == MAX_PREEMPTIONS + 1)
    service.request_mask(click(), generation=MAX_PREEMPTIONS + 1)  # this one waits for B
    predictor.gates["B"].set()
    assert service.wait_idle(WAIT)
    assert predictor.cancelled == ["B"] * MAX_PREEMPTIONS
    assert len(rec.of("mask")) == MAX_PREEMPTIONS + 1
    assert service.stats.prefetched == 1


def test_prefetch_skips_what_the_predictor_cache_holds(rec) -> None:
    predictor = ScriptedPredictor()
    predictor.cache = EmbeddingCache(disk_dir=None)  # type: ignore[attr-defined]
    predictor.cache.put(EmbeddingKey("B", "scripted"),  # type: ignore[attr-defined]
                        Embedding({"x": np.zeros(4, np.float16)}, (24, 24)))
    with PredictionService(predictor, rec.callbacks()) as service:
        service.set_current_image("A", loader(10), prefetch=[("B", loader(20)), ("C", loader(30))])
        assert service.wait_idle(WAIT)
        assert predictor.embed_calls == ["A", "C"]
        assert service.stats.prefetch_skipped == 1


def test_errors_are_reported_and_the_worker_survives(service, predictor, rec) -> None:
    def broken() -> np.ndarray:
        raise ImageError("broken.jpg: cannot identify image file")

    service.set_current_image("bad", broken)
    service.request_mask(click(), generation=1)
    assert service.wait_idle(WAIT)
    errors = rec.of("error")
    assert [job for _, job in errors] == [Job(JobKind.EMBED, "bad"),
                                          Job(JobKind.PREDICT, "bad", 1)]
    assert isinstance(errors[0][0], ImageError)
    assert isinstance(errors[1][0], PredictorError) and "broken.jpg" in str(errors[1][0])

    service.set_current_image("A", loader(10))
    service.request_mask(Prompt(), generation=2)  # the predictor raises on an empty prompt
    assert service.wait_idle(WAIT)
    assert rec.of("error")[-1][1] == Job(JobKind.PREDICT, "A", 2)
    service.request_mask(click(), generation=3)
    assert service.wait_idle(WAIT)
    assert [g for g, _, _ in rec.of("mask")] == [3] and service.alive
    assert service.stats.errors == 3


def test_a_raising_callback_does_not_kill_the_worker(predictor) -> None:
    answered = threading.Event()

    def bad_ready(key: EmbeddingKey, sec: float) -> None:
        raise RuntimeError("listener bug")

    callbacks = ServiceCallbacks(on_embedding_ready=bad_ready,
                                 on_mask=lambda *a: answered.set())
    with PredictionService(predictor, callbacks) as service:
        service.set_current_image("A", loader(10))
        service.request_mask(click(), generation=1)
        assert answered.wait(WAIT) and service.alive


def test_click_without_an_image_is_an_error(service, rec) -> None:
    service.request_mask(click(), generation=1)
    assert service.wait_idle(WAIT)
    (exc, job), = rec.of("error")
    assert isinstance(exc, PredictorError) and job.kind is JobKind.PREDICT


def test_segment_everything_waits_for_the_encode_and_yields_to_clicks(
    service, predictor, rec
) -> None:
    predictor.gates["A"] = threading.Event()
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20))])
    service.segment_everything(generation=4, options=EverythingOptions(points_per_side=8))
    service.request_mask(click(), generation=5)
    predictor.gates["A"].set()
    assert service.wait_idle(WAIT)
    assert rec.kinds() == ["ready", "mask", "everything"]
    gen, proposals = rec.of("everything")[0]
    assert gen == 4 and len(proposals) == 2  # grey background and the white square
    assert ProgressEvent(Phase.SEGMENTING, 0, 8, "A", "segmenting") in rec.of("progress")
    assert predictor.embed_calls == ["A", "B"]  # prefetch came last


def test_new_segment_everything_cancels_the_running_one(service, predictor, rec) -> None:
    predictor.gates["everything"] = threading.Event()
    service.set_current_image("A", loader(10))
    service.segment_everything(generation=1)
    rec.wait(lambda: "ready" in rec.kinds())
    service.segment_everything(generation=2)
    predictor.gates["everything"].set()
    assert service.wait_idle(WAIT)
    assert [g for g, _ in rec.of("everything")] == [2]


def test_find_all_is_a_job_of_its_own(service, predictor, rec) -> None:
    predictor.gates["A"] = threading.Event()
    service.set_current_image("A", loader(10))
    service.segment_everything(generation=1)
    # replaces the segment-everything request
    service.find_all(generation=2, query=FindQuery.text("255, 10"))
    predictor.gates["A"].set()
    assert service.wait_idle(WAIT)
    assert rec.kinds() == ["ready", "everything"]
    gen, proposals = rec.of("everything")[0]
    assert gen == 2 and [p.prompt for p in proposals] == ["255", "10"]
    assert all(p.mask.any() for p in proposals)
    finding = [e for e in rec.of("progress") if e.phase is Phase.FINDING]
    assert finding == [ProgressEvent(Phase.FINDING, 0, 1, "A", "255, 10"),
                       ProgressEvent(Phase.FINDING, 1, 2, "A", "255, 10"),
                       ProgressEvent(Phase.FINDING, 2, 2, "A", "255, 10")]


def test_a_failed_find_all_is_reported_as_find_all(service, predictor, rec) -> None:
    service.set_current_image("A", loader(10))
    service.find_all(generation=3, query=FindQuery.text("not a number"))
    assert service.wait_idle(WAIT)
    (exc, job), = rec.of("error")
    assert isinstance(exc, ValueError) and job.kind is JobKind.FIND_ALL and job.generation == 3


def test_cancel_all_forgets_the_current_image(service, predictor, rec) -> None:
    predictor.gates["A"] = threading.Event()
    service.set_current_image("A", loader(10), prefetch=[("B", loader(20))])
    assert predictor.started_event("A").wait(WAIT)
    service.request_mask(click(), generation=1)
    service.cancel_all()
    assert service.wait_idle(WAIT)
    assert predictor.embed_calls == ["A"] and predictor.cancelled == ["A"]
    assert rec.of("mask") == [] and service.current_key is None


def test_shutdown_joins_a_busy_worker(predictor) -> None:
    predictor.gates["A"] = threading.Event()  # never released
    service = PredictionService(predictor)
    service.set_current_image("A", loader(10))
    assert predictor.started_event("A").wait(WAIT)
    assert service.shutdown(WAIT, close_predictor=True)
    assert not service.alive and predictor.closed_on == "maskloop-predictor"
    service.request_mask(click(), generation=1)  # ignored after shutdown, no error
    service.set_current_image("B", loader(20))
    assert predictor.embed_calls == ["A"]


# -- with the real classical backend ---------------------------------------------------------


def classical_predictor() -> Predictor:
    return ClassicalPredictor()


def disk_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (64, 80, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:64, :80]
    img[(yy - 32) ** 2 + (xx - 40) ** 2 < 15 ** 2] = (220, 40, 40)
    return img


def test_classical_backend_through_the_service(rec) -> None:
    predictor = classical_predictor()
    truth = (np.mgrid[:64, :80][0] - 32) ** 2 + (np.mgrid[:64, :80][1] - 40) ** 2 < 15 ** 2
    with PredictionService(predictor, rec.callbacks()) as service:
        service.set_current_image("disk", disk_image, prefetch=[("other", lambda: disk_image(1))])
        service.request_mask(Prompt(box=Box(20, 12, 60, 52), multimask=False), generation=1)
        assert service.wait_idle(WAIT)
        assert rec.of("error") == []
        (gen, result, _), = rec.of("mask")
        best = result.masks[result.best]
        iou = (best & truth).sum() / (best | truth).sum()
        assert gen == 1 and best.shape == (64, 80) and iou >= 0.9
        # after the prefetch of "other", a click on the current image still works
        service.request_mask(Prompt(points=(Point(40.5, 32.5),), box=Box(20, 12, 60, 52)),
                             generation=2)
        assert service.wait_idle(WAIT)
        assert [g for g, _, _ in rec.of("mask")] == [1, 2] and rec.of("error") == []


def test_a_failed_prefetch_counts_as_done(service, predictor, rec) -> None:
    """An unreadable next image ends its prefetch like any other: the progress reaches
    its total (so "prefetching next images 1/2" clears) and the failure is reported once."""

    def broken() -> np.ndarray:
        raise ImageError("b.jpg: file is truncated")

    service.set_current_image("A", loader(10), prefetch=[("B", broken), ("C", loader(30))])
    assert service.wait_idle(WAIT)
    prefetch_progress = [(p.done, p.total) for p in rec.of("progress")
                         if p.phase is Phase.PREFETCHING]
    assert prefetch_progress == [(1, 2), (2, 2)]
    assert [job for _, job in rec.of("error")] == [Job(JobKind.PREFETCH, "B")]
    assert predictor.embed_calls == ["A", "C"] and service.stats.errors == 1
    # again, C now skipped as prefetched lately: the progress still reaches its total
    service.set_current_image("A", loader(10), prefetch=[("B", broken), ("C", loader(30))])
    assert service.wait_idle(WAIT)
    prefetch_progress = [(p.done, p.total) for p in rec.of("progress")
                         if p.phase is Phase.PREFETCHING]
    assert prefetch_progress[2:] == [(1, 2), (2, 2)]
