"""Issue 14: with a predictor whose encode runs in resumable steps (the real SAM2.1 tiny with
random weights, on the CPU), a click never waits for a whole encode and no encode is thrown
away: a click made during a prefetch is decoded between two encoder steps and the prefetch
resumes where it stopped; switching images keeps half-done encodes. Each encoder step is
counted by forward hooks on Hiera's blocks, and held at one block to force every ordering."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_service import WAIT, Recorder

from app.core.types import Point, Prompt
from app.predict.service.service import PredictionService
from app.predict.service.types import Phase

pytestmark = pytest.mark.slow

SLOW = 300.0  # s: CPU encodes on a busy machine


class Blocks:
    """Counts the forwards of each Hiera block; ``hold(i)`` makes the next forward of block
    ``i`` wait (on the worker) until ``release``."""

    def __init__(self, predictor: object) -> None:
        blocks = predictor.model.image_encoder.trunk.blocks  # type: ignore[attr-defined]
        self.n = len(blocks)
        self.counts = [0] * self.n
        self._hold: int | None = None
        self.reached = threading.Event()
        self._go = threading.Event()
        self.handles = [b.register_forward_pre_hook(self._hook(i)) for i, b in enumerate(blocks)]

    def _hook(self, index: int):  # noqa: ANN202
        def pre(module: object, args: object) -> None:
            self.counts[index] += 1
            if self._hold == index:
                self._hold = None
                self.reached.set()
                assert self._go.wait(SLOW)
        return pre

    def reset(self) -> None:
        self.counts = [0] * self.n

    def hold(self, index: int) -> None:
        self.reached.clear()
        self._go.clear()
        self._hold = index

    def wait_reached(self) -> None:
        assert self.reached.wait(SLOW), "the encode never reached the held block"

    def release(self) -> None:
        self._go.set()


@pytest.fixture(scope="module")
def tiny(sam2_tiny_checkpoint: tuple[Path, str]) -> Iterator[tuple[object, Blocks]]:
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.predictor import SAM2Predictor

    path, config = sam2_tiny_checkpoint
    # torch's own modules: the hooks count their block forwards
    predictor = SAM2Predictor(path, config, "random-tiny", "cpu", EmbeddingCache(disk_dir=None),
                              runtime="torch")
    assert predictor.capabilities.resumable_encode
    blocks = Blocks(predictor)
    yield predictor, blocks
    for h in blocks.handles:
        h.remove()
    blocks.release()


def image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)


def loader(seed: int):  # noqa: ANN201
    return lambda: image(seed)


def click() -> Prompt:
    return Prompt(points=(Point(20.5, 20.5),))


@pytest.fixture
def served(tiny: tuple[object, Blocks]) -> Iterator[tuple[PredictionService, Blocks, Recorder]]:
    predictor, blocks = tiny
    blocks.reset()
    rec = Recorder()
    service = PredictionService(predictor, rec.callbacks())  # type: ignore[arg-type]
    yield service, blocks, rec
    blocks.release()
    assert service.shutdown(SLOW)


def test_a_click_during_a_prefetch_is_answered_between_two_steps(
        served, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread in all (``MASKLOOP_THREADS=1``): no core for the click lane, so the click
    is decoded by the worker after the step it came in."""
    monkeypatch.setenv("MASKLOOP_THREADS", "1")
    service, blocks, rec = served
    service.set_current_image("r-a", loader(1), prefetch=[("r-b", loader(2))])
    rec.wait(lambda: rec.of("ready") == ["r-a"])
    # the current image told each of its steps
    steps = [(e.done, e.total) for e in rec.of("progress")
             if e.phase is Phase.ENCODING and e.image_hash == "r-a"]
    assert steps == [(i, blocks.n + 2) for i in range(blocks.n + 2)]
    blocks.hold(5)  # the prefetch of r-b, half way
    blocks.wait_reached()
    service.request_mask(click(), generation=1)
    blocks.release()
    with rec.cond:
        assert rec.cond.wait_for(lambda: len(rec.of("mask")) == 1, SLOW)
    prefetched = [e for e in rec.of("progress") if e.phase is Phase.PREFETCHING]
    assert prefetched == [] or blocks.counts[-1] < 2  # answered before r-b was encoded
    assert service.wait_idle(SLOW)
    assert [(e.done, e.total) for e in rec.of("progress")
            if e.phase is Phase.PREFETCHING] == [(1, 1)]
    kinds = [k for k, v in rec.events if k != "progress" or v.phase is Phase.PREFETCHING]
    assert kinds == ["ready", "mask", "progress"]  # the click, then the prefetch's end
    assert blocks.counts == [2] * blocks.n  # r-a and r-b: each step once
    s = service.stats
    assert (s.prefetched, s.masks, s.cancelled, s.encode_steps_discarded) == (1, 1, 0, 0)
    assert s.masks_beside_encode == 0
    assert s.encode_seconds_discarded == 0.0 and rec.of("error") == []


def test_a_click_during_a_prefetch_step_is_decoded_beside_it(
        served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads: the click lane decodes the click on the core the prefetch leaves free,
    while the step it came in is still running (held here until the mask is back)."""
    monkeypatch.setenv("MASKLOOP_THREADS", "2")
    service, blocks, rec = served
    service.set_current_image("r-a", loader(1), prefetch=[("r-f", loader(6))])
    rec.wait(lambda: rec.of("ready") == ["r-a"])  # cached by an earlier test, or encoded now
    blocks.hold(5)  # the prefetch of r-f, half way
    blocks.wait_reached()
    service.request_mask(click(), generation=1)
    with rec.cond:  # answered with the step still held
        assert rec.cond.wait_for(lambda: len(rec.of("mask")) == 1, SLOW), rec.events
    assert blocks.counts[5:] == [blocks.counts[5]] + [blocks.counts[6]] * (blocks.n - 6)
    held = list(blocks.counts)
    service.request_mask(click(), generation=2)  # the lane again, the step still held
    with rec.cond:
        assert rec.cond.wait_for(lambda: len(rec.of("mask")) == 2, SLOW), rec.events
    assert blocks.counts == held
    lane = [name for name in rec.threads if name.endswith("-clicks")]
    assert lane, rec.threads  # the masks came from the lane's thread
    blocks.release()
    assert service.wait_idle(SLOW)
    assert [gen for gen, _, _ in rec.of("mask")] == [1, 2]
    s = service.stats
    assert (s.masks, s.masks_beside_encode, s.prefetched) == (2, 2, 1)
    assert (s.cancelled, s.encode_steps_discarded, s.encode_seconds_discarded) == (0, 0, 0.0)
    assert rec.of("error") == []
    # the same masks as the worker's own decode of the same click (one decode at a time)
    key = service.current_key
    assert key is not None
    again = service.predictor.predict(key, click())
    first = rec.of("mask")[0][1]
    assert first.best == again.best
    assert np.array_equal(first.mask(first.best), again.mask(again.best))


def test_switching_away_and_back_resumes_a_half_done_encode(served) -> None:
    service, blocks, rec = served
    blocks.hold(4)
    service.set_current_image("r-c", loader(3))
    blocks.wait_reached()  # r-c half encoded
    blocks.hold(4)
    service.set_current_image("r-d", loader(4))  # r-c is no longer wanted: paused
    blocks.release()
    blocks.wait_reached()  # r-d half encoded
    service.set_current_image("r-c", loader(3))  # back: r-c resumes where it stopped
    blocks.release()
    assert service.wait_idle(SLOW)
    assert rec.of("ready") == ["r-c"] and rec.of("error") == []
    # r-c's blocks once each; r-d's first five blocks, paused since
    assert blocks.counts == [2] * 5 + [1] * (blocks.n - 5)
    assert service.stats.encode_steps_discarded == 0 and service.stats.cancelled == 0
    # and r-d, when shown again, also goes on where it stopped
    service.set_current_image("r-d", loader(4))
    assert service.wait_idle(SLOW)
    assert rec.of("ready") == ["r-c", "r-d"]
    assert blocks.counts == [2] * blocks.n
    s = service.stats
    assert (s.embeds, s.encode_steps_discarded, s.encode_seconds_discarded) == (2, 0, 0.0)


def test_switching_to_a_cached_image_keeps_the_running_prefetch(served) -> None:
    service, blocks, rec = served
    service.set_current_image("r-a", loader(1), prefetch=[("r-e", loader(5))])
    rec.wait(lambda: rec.of("ready") == ["r-a"])  # cached: no step
    blocks.hold(6)
    blocks.wait_reached()  # r-e's prefetch, half way
    service.set_current_image("r-b", loader(2), prefetch=[("r-e", loader(5))])  # cached too
    blocks.release()
    assert service.wait_idle(SLOW)
    assert rec.of("ready") == ["r-a", "r-b"] and rec.of("error") == []
    assert blocks.counts == [1] * blocks.n  # r-e's steps once each: nothing restarted
    s = service.stats
    assert (s.prefetched, s.cancelled, s.encode_steps_discarded) == (1, 0, 0)
    assert WAIT > 0  # the scripted tests' timeout, shared with them
