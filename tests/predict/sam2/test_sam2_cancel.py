"""Cancelling a SAM2 encode: before it, between encoder steps (from another thread, as the
prediction service does when the person switches image) and after it. Real tiny SAM2.1
model with random weights on the CPU; each test encodes at most a few times (slow)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from app.core.errors import Cancelled
from app.core.images import array_hash
from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey
from app.predict.base import PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2.predictor import SAM2Predictor

pytestmark = pytest.mark.slow

WAIT_S = 120.0  # generous: only reached when something is broken


def make_image(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def predictor(sam2_tiny_checkpoint: tuple[Path, str], tmp_path_factory) -> SAM2Predictor:
    path, config = sam2_tiny_checkpoint
    cache = EmbeddingCache(disk_dir=tmp_path_factory.mktemp("emb-cancel"))
    return SAM2Predictor(path, config, device="cpu", cache=cache)


class EncoderRuns:
    """Counts encoder heads (neck runs) and the trunk blocks that finished (forward hooks on
    the real modules)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.neck = model.image_encoder.neck
        self.blocks = list(model.image_encoder.trunk.blocks)
        self.runs = 0
        self.finished_blocks = 0
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> EncoderRuns:
        def run_done(*_: object) -> None:
            self.runs += 1

        def block_done(*_: object) -> None:
            self.finished_blocks += 1

        self._handles = [self.neck.register_forward_hook(run_done)]
        self._handles += [b.register_forward_hook(block_done) for b in self.blocks]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()


@pytest.fixture
def canceller() -> Iterator[tuple[CancelToken, threading.Event, threading.Event]]:
    """(token, started, done): a thread that waits for ``started``, cancels the token, then
    sets ``done``."""
    token, started, done = CancelToken(), threading.Event(), threading.Event()

    def run() -> None:
        if started.wait(WAIT_S):
            token.cancel()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield token, started, done
    started.set()
    thread.join(WAIT_S)


def pause_at(predictor: SAM2Predictor, nth: int, started: threading.Event,
             done: threading.Event) -> None:
    """Before step ``nth`` of the encode, hand over to the canceller thread and wait for it."""
    def told(step: int, total: int) -> None:
        if step == nth:
            started.set()
            assert done.wait(WAIT_S), "the canceller thread never ran"
    predictor.encode_progress = told


def test_the_steps_give_the_official_features_and_resume_after_other_work(predictor) -> None:
    """The stem, 12 Hiera blocks and the head give exactly ``forward_image`` +
    ``no_mem_embed``; an encode paused after 5 steps, while another image is encoded and a
    click decoded, resumes where it stopped and gives the same embedding (no step run
    twice)."""
    from app.core.types import Point, Prompt
    from app.predict.sam2 import reference as ref
    from app.predict.sam2.model import inference

    image = make_image(64, 48, seed=5)
    with inference(predictor.precision):
        official = ref.official_features(predictor.model, image)
    job = predictor.start_embed(image, image_hash="resumed")
    assert job.total == 14 and job.done == 0  # Hiera tiny
    with EncoderRuns(predictor.model) as runs:
        for _ in range(5):
            assert not job.step()
        other = predictor.embed(make_image(40, 30, seed=6), image_hash="other")
        predictor.predict(other, Prompt((Point(5, 5, True),)))
        while not job.step():
            pass
    assert runs.runs == 2 and runs.finished_blocks == 12 + 12
    assert job.done == job.total and job.step()
    emb = predictor.cache.get(job.key)
    assert emb is not None and emb.image_size == (48, 64)
    want = official["image_embed"].float().clamp(-65504, 65504).half().numpy()
    np.testing.assert_array_equal(emb.arrays["image_embed"], want)
    assert predictor.start_embed(image, image_hash="resumed").total == 0  # cached: no step


def test_a_released_encode_keeps_nothing(predictor) -> None:
    job = predictor.start_embed(make_image(32, 32, seed=8), image_hash="released")
    job.step()
    job.release()
    with pytest.raises(PredictorError, match="released"):
        job.step()
    assert not predictor.cache.contains(job.key)


@pytest.mark.parametrize("nth", [3, 13], ids=["block-3", "head"])
def test_stale_encode_stops_within_one_step(predictor, canceller, nth) -> None:
    """Another thread cancels once step ``nth`` is next (the progress hook hands over and
    waits for the cancel): Cancelled comes before that step runs, so only the blocks before
    it finished; nothing is cached; a later embed works."""
    token, started, done = canceller
    model = predictor.model
    image = make_image(48, 40, seed=21 + nth)  # a new image per case: not cached yet
    key = EmbeddingKey(array_hash(image), predictor.model_id)
    pause_at(predictor, nth, started, done)
    try:
        with EncoderRuns(model) as runs, pytest.raises(Cancelled):
            predictor.embed(image, cancel=token)
    finally:
        predictor.encode_progress = None
    assert runs.finished_blocks == nth - 1 and runs.runs == 0
    assert not predictor.cache.contains(key)

    with EncoderRuns(model) as runs:
        assert predictor.embed(image, cancel=CancelToken()) == key
    assert runs.runs == 1 and runs.finished_blocks == 12
    assert predictor.cache.contains(key)
    emb = predictor.cache.get(key)
    assert emb is not None and emb.image_size == (40, 48)
    assert all(np.isfinite(a).all() for a in emb.arrays.values())
    with EncoderRuns(model) as runs:
        assert predictor.embed(image.copy()) == key
    assert runs.runs == 0


def test_cancel_before_the_encode_and_after_it(predictor) -> None:
    image = make_image(40, 30, seed=7)
    token = CancelToken()
    token.cancel()
    with EncoderRuns(predictor.model) as runs, pytest.raises(Cancelled):
        predictor.embed(image, image_hash="cancel-before", cancel=token)
    assert runs.finished_blocks == 0
    assert not predictor.cache.contains(EmbeddingKey("cancel-before", predictor.model_id))

    # cancelled once the last step has run: the finished encoding is kept, then Cancelled
    late = CancelToken()
    handle = predictor.model.image_encoder.neck.register_forward_hook(
        lambda *_: late.cancel())
    try:
        with pytest.raises(Cancelled):
            predictor.embed(image, cancel=late)  # no hash given: the pixels' hash
    finally:
        handle.remove()
    with EncoderRuns(predictor.model) as runs:
        key = predictor.embed(image.copy())
    assert runs.runs == 0
    assert key == EmbeddingKey(array_hash(image), predictor.model_id)


def test_embed_batch_is_cancelled_between_blocks(predictor, canceller) -> None:
    token, started, done = canceller
    images = [make_image(30, 20, seed=s) for s in (31, 32)]
    pause_at(predictor, 2, started, done)
    try:
        with EncoderRuns(predictor.model) as runs, pytest.raises(Cancelled):
            predictor.embed_batch(images, cancel=token, batch_size=2)
    finally:
        predictor.encode_progress = None
    assert runs.finished_blocks == 1 and runs.runs == 0
    assert not any(predictor.cache.contains(EmbeddingKey(array_hash(im), predictor.model_id))
                   for im in images)
