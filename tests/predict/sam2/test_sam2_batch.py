"""SAM2's batched decode (the clicks of a server's concurrent clients) gives what one
``predict`` per prompt gives: on several images, with points, boxes, mask inputs and both
multimask settings, split over the CPU's decoder threads or in one call across images."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.types import Box, MaskResult, Point, Prompt
from app.predict.base import PredictorError
from app.predict.cache.store import EmbeddingCache

pytestmark = pytest.mark.slow  # two SAM2 encodes on a CPU


@pytest.fixture(scope="module")
def predictor(sam2_tiny_checkpoint):
    from app.predict.sam2.predictor import SAM2Predictor

    path, config = sam2_tiny_checkpoint
    p = SAM2Predictor(path, config, device="cpu",
                      cache=EmbeddingCache(memory_bytes=64 << 20, disk_dir=None))
    yield p
    p.close()


@pytest.fixture(scope="module")
def keys(predictor):
    rng = np.random.default_rng(5)
    a = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (40, 72, 3), dtype=np.uint8)
    return predictor.embed(a), predictor.embed(b)


def _prompts(seed: int) -> list[Prompt]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (1, 256, 256)).astype(np.float32)
    return [
        Prompt(points=(Point(10, 12),)),
        Prompt(points=(Point(30, 20), Point(5, 5, False))),
        Prompt(points=(Point(20, 20),), box=Box(4, 4, 40, 30)),
        Prompt(points=(Point(25, 15),), multimask=False),
        Prompt(points=(Point(12, 30),), mask_input=logits),
        Prompt(box=Box(2, 3, 30, 33)),
        Prompt(points=(Point(40, 10),)),
    ]


def _same(got: MaskResult, want: MaskResult) -> None:
    assert got.masks.shape == want.masks.shape
    assert np.allclose(got.scores, want.scores, atol=1e-4)
    assert np.allclose(got.low_res_logits, want.low_res_logits, atol=2e-3)
    assert (got.masks != want.masks).mean() < 1e-3  # a pixel at a logit of ~0 may tip


def test_a_batch_gives_what_one_predict_per_prompt_gives(predictor, keys) -> None:
    a, b = keys
    items = [(a, p) for p in _prompts(1)] + [(b, p) for p in _prompts(2)]
    items += [(a, Prompt(points=(Point(11, 13),))), (b, Prompt(points=(Point(9, 9),)))]
    batched = predictor.predict_batch(items)
    assert len(batched) == len(items)
    for (key, prompt), got in zip(items, batched, strict=True):
        # lazy: only the best candidate is upscaled until another is asked for (a route
        # that returns the best pays for one upscale, not three)
        assert set(got._made) == {got.best}
        _same(got, predictor.predict(key, prompt))


def test_one_decoder_call_across_images(predictor, keys) -> None:
    """What a GPU does: prompts of several images in one call (features concatenated)."""
    from app.predict.sam2 import batch as sam2_batch
    a, b = keys
    prompts = [Prompt(points=(Point(10 + i, 12),)) for i in range(3)]
    chunk = [(i, predictor.activate(k), p)
             for i, (k, p) in enumerate([(a, prompts[0]), (b, prompts[1]), (a, prompts[2])])]
    assert len(sam2_batch._chunks(chunk, on_cpu=False)) == 1
    assert len(sam2_batch._chunks(chunk, on_cpu=True)) == 2  # by image on a CPU
    with sam2_batch.single_threaded():
        got = sam2_batch._decode(predictor, chunk)
    for (_, f, p), result in zip(chunk, got, strict=True):
        _same(result, predictor.predict(f.key, p))


def test_more_images_than_a_wave_holds(predictor, keys, monkeypatch) -> None:
    from app.predict.sam2 import batch as sam2_batch
    monkeypatch.setattr(sam2_batch, "IMAGES_AT_ONCE", 1)
    a, b = keys
    items = [(a, Prompt(points=(Point(3, 4),))), (b, Prompt(points=(Point(5, 6),))),
             (a, Prompt(points=(Point(7, 8),)))]
    for (key, prompt), got in zip(items, predictor.predict_batch(items), strict=True):
        _same(got, predictor.predict(key, prompt))


def test_bad_items_are_refused(predictor, keys) -> None:
    from app.core.types import EmbeddingKey

    a, _ = keys
    with pytest.raises(PredictorError, match="empty prompt"):
        predictor.predict_batch([(a, Prompt())])
    with pytest.raises(PredictorError, match="no embedding"):
        predictor.predict_batch([(EmbeddingKey("0" * 64, a.model_id), Prompt(
            points=(Point(1, 1),)))])
    with pytest.raises(PredictorError, match="mask_input"):
        predictor.predict_batch([(a, Prompt(points=(Point(1, 1),),
                                            mask_input=np.zeros((1, 8, 8), np.float32)))])
    assert predictor.predict_batch([]) == []
