"""The classical (GrabCut) backend on synthetic images: textured objects on noisy backgrounds."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.core.types import Box, EmbeddingKey, Point, Prompt
from app.predict.base import EverythingOptions, Predictor, PredictorError
from app.predict.classical.ops import logits_to_frame, mask_to_logits
from app.predict.classical.predictor import MODEL_ID, ClassicalPredictor


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def blob_scene(h: int = 150, w: int = 200, seed: int = 0,
               centre: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A textured orange blob (ellipse with a bump) on a noisy blue-green background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = centre or (w * 0.5, h * 0.5)
    blob = ((xx - cx) / (w * 0.22)) ** 2 + ((yy - cy) / (h * 0.28)) ** 2 <= 1.0
    blob |= (xx - cx - w * 0.2) ** 2 + (yy - cy + h * 0.15) ** 2 <= (h * 0.12) ** 2
    bg = np.stack([40 + 30 * np.sin(xx / 7.0), 110 + 20 * np.cos(yy / 9.0),
                   150 + 0 * xx], axis=-1)
    fg = np.stack([220 + 25 * np.sin((xx + yy) / 4.0), 130 + 30 * np.sin(xx / 3.0),
                   40 + 0 * xx], axis=-1)
    image = np.where(blob[..., None], fg, bg) + rng.normal(0, 12, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), blob


def box_of(mask: np.ndarray, margin: int = 6) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(xs.min() - margin, ys.min() - margin, xs.max() + 1 + margin, ys.max() + 1 + margin)


def test_is_a_predictor() -> None:
    predictor = ClassicalPredictor()
    assert isinstance(predictor, Predictor)
    assert predictor.model_id == MODEL_ID == "classical-grabcut"
    assert predictor.description


def test_one_box_segments_a_synthetic_object() -> None:
    image, blob = blob_scene()
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    result = predictor.predict(key, Prompt(box=box_of(blob), multimask=True))
    assert result.masks.shape == (3, *blob.shape) and result.masks.dtype == np.bool_
    assert result.scores.shape == (3,) and result.scores.dtype == np.float32
    assert result.low_res_logits.shape == (3, 256, 256)
    assert result.low_res_logits.dtype == np.float32
    assert np.all((result.scores >= 0) & (result.scores <= 1))
    assert mask_iou(result.masks[result.best], blob) >= 0.9


def test_one_click_segments_a_synthetic_object() -> None:
    image, blob = blob_scene(seed=1)
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    result = predictor.predict(key, Prompt(points=(Point(100.5, 75.5),), multimask=False))
    assert len(result) == 1
    assert mask_iou(result.masks[0], blob) >= 0.85


def test_a_large_image_is_downscaled_and_upscaled_back() -> None:
    image, blob = blob_scene(h=600, w=900, seed=2)
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    result = predictor.predict(key, Prompt(box=box_of(blob, 20)))
    assert result.masks.shape[1:] == (600, 900)
    assert mask_iou(result.masks[result.best], blob) >= 0.9


def test_refinement_follows_the_previous_mask_except_where_it_is_unknown() -> None:
    # the same click with a previous mask that leaves out the blob's right part: the refined
    # mask follows the previous one away from the click, the click alone takes the whole blob
    image, blob = blob_scene(seed=3)
    bump = blob.copy()
    bump[:, :130] = False
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    click = (Point(100.5, 75.5),)
    alone = predictor.predict(key, Prompt(points=click, multimask=False))
    prior = mask_to_logits(blob & ~bump)[None]
    refined = predictor.predict(key, Prompt(points=click, mask_input=prior, multimask=False))
    assert mask_iou(alone.masks[0], blob) >= 0.85
    assert not np.array_equal(alone.masks[0], refined.masks[0])
    assert (refined.masks[0] & bump).sum() < 0.5 * (alone.masks[0] & bump).sum()
    assert mask_iou(refined.masks[0], blob & ~bump) >= 0.85
    # the same previous mask with its right part of the frame unknown (NaN), as a window
    # grown past the mask's window gives it: there the object is found again
    unknown = prior.copy()
    unknown[..., 130 * 256 // 200:] = np.nan  # the frame is 200 px square: columns >= 130
    found = predictor.predict(key, Prompt(points=click, mask_input=unknown, multimask=False))
    assert (found.masks[0] & bump).sum() > 0.8 * bump.sum()
    assert mask_iou(found.masks[0], blob) >= 0.85
    assert np.isfinite(found.low_res_logits).all()


def test_a_negative_click_removes_a_part() -> None:
    image, blob = blob_scene(seed=4)
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    first = predictor.predict(key, Prompt(box=box_of(blob), multimask=False))
    bump = blob.copy()
    bump[:, :150] = False  # the bump on the upper right
    ys, xs = np.nonzero(bump & first.masks[0])
    neg = Point(float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, False)
    second = predictor.predict(
        key, Prompt(points=(neg,), box=box_of(blob), mask_input=first.logits_for(0),
                    multimask=False))
    assert not second.masks[0][int(neg.y), int(neg.x)]
    assert second.masks[0].sum() < first.masks[0].sum()


def test_logits_round_trip_through_the_padded_square_frame() -> None:
    _, blob = blob_scene(h=120, w=200)
    logits = mask_to_logits(blob)
    assert logits.shape == (256, 256) and logits.dtype == np.float32
    assert (logits[200:] < 0).all()  # the padding below a wide image is background
    assert mask_iou(logits_to_frame(logits[None], 120, 200) > 0, blob) >= 0.95


def test_embed_caches_by_hash_and_evicts_least_recent() -> None:
    image_a, _ = blob_scene(seed=5)
    image_b, _ = blob_scene(seed=6)
    predictor = ClassicalPredictor(cache_size=1)
    key_a = predictor.embed(image_a)
    assert predictor.embed(image_a.copy()) == key_a
    assert predictor.embed(image_a, image_hash="abc") == EmbeddingKey("abc", MODEL_ID)
    predictor.embed(image_b)
    with pytest.raises(PredictorError, match="not embedded"):
        predictor.predict(key_a, Prompt(points=(Point(5, 5),)))


def test_unknown_key_and_cancelled_embed() -> None:
    predictor = ClassicalPredictor()
    with pytest.raises(PredictorError):
        predictor.predict(EmbeddingKey("nope", MODEL_ID), Prompt(points=(Point(1, 1),)))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predictor.embed(blob_scene()[0], cancel=token)


def test_empty_prompt_gives_an_empty_mask() -> None:
    image, _ = blob_scene()
    predictor = ClassicalPredictor()
    result = predictor.predict(predictor.embed(image), Prompt())
    assert len(result) == 1 and not result.masks.any()


def test_segment_everything_finds_the_objects() -> None:
    image_a, blob_a = blob_scene(h=160, w=320, seed=7, centre=(80, 80))
    rng = np.random.default_rng(8)
    blob_b = np.zeros_like(blob_a)
    blob_b[40:120, 210:290] = True
    image = image_a.copy()
    image[blob_b] = np.clip(rng.normal((240, 240, 240), 8, (int(blob_b.sum()), 3)), 0, 255)
    predictor = ClassicalPredictor()
    proposals = predictor.segment_everything(
        image, EverythingOptions(points_per_side=16, min_mask_region_area=200))
    assert proposals
    areas = [int(p.mask.sum()) for p in proposals]
    assert areas == sorted(areas, reverse=True) and min(areas) >= 200
    for target in (blob_a, blob_b):
        assert max(mask_iou(p.mask, target) for p in proposals) >= 0.8
    for i, p in enumerate(proposals):
        ys, xs = np.nonzero(p.mask)
        assert p.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0.0 <= p.score <= 1.0 and 0.0 <= p.stability <= 1.0
        for q in proposals[i + 1:]:
            assert mask_iou(p.mask, q.mask) <= 0.7
