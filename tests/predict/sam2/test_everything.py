"""Segment-everything post-processing on synthetic data with known answers.

The model-driven run (random weights) is in test_sam2_local.py; here a deterministic decoder
function draws known objects so that every filter's effect can be checked exactly. sam2's own
numpy/torch helpers in ``sam2.utils.amg`` (no torchvision there) serve as references.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam2.utils import amg

from app.core.errors import Cancelled
from app.core.jobs import CancelToken
from app.core.nms import box_iou, box_nms, mask_nms
from app.predict.base import EverythingOptions
from app.predict.sam2.everything import (
    mask_boxes,
    point_grid,
    remove_small_regions,
    segment_everything,
    stability_score,
)

# -- nms ----------------------------------------------------------------------------------


def test_mask_nms_keeps_the_best_of_overlapping_masks() -> None:
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = a.copy()
    b[5] = True  # IoU with a: 5/6
    c = ~a
    assert mask_nms([a, b, c], [0.5, 0.9, 0.1], 0.7).tolist() == [1, 2]
    assert mask_nms([a, b, c], [0.5, 0.9, 0.1], 0.9).tolist() == [1, 0, 2]


def test_nms_known_answer() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # box 3 wins; IoU(3, 0) = 100/105 and IoU(3, 1) = 85.5/119.5 = 0.7155 exceed 0.7
    assert box_nms(boxes, scores, 0.7).tolist() == [3, 2]
    # IoU(0, 1) = 81/119 = 0.68: below 0.7 both survive once box 3 is gone
    assert box_nms(boxes[:3], scores[:3], 0.7).tolist() == [0, 1, 2]
    assert box_nms(boxes[:3], scores[:3], 0.6).tolist() == [0, 2]


def test_nms_threshold_is_strict_and_ties_keep_the_first() -> None:
    boxes = np.array([[0, 0, 2, 1], [1, 0, 3, 1]])  # IoU exactly 1/3
    assert box_nms(boxes, np.array([0.5, 0.5]), 1 / 3).tolist() == [0, 1]
    assert box_nms(boxes, np.array([0.5, 0.5]), 0.33).tolist() == [0]
    assert box_nms(boxes, np.array([0.4, 0.5]), 0.33).tolist() == [1]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_box_iou_known_answers() -> None:
    ious = box_iou(np.array([0, 0, 4, 4]),
                   np.array([[0, 0, 4, 4], [2, 2, 6, 6], [4, 4, 8, 8], [0, 0, 0, 0]]))
    np.testing.assert_allclose(ious, [1.0, 4 / 28, 0.0, 0.0])
    assert box_iou(np.zeros(4), np.zeros((1, 4))).tolist() == [0.0]


def test_nms_matches_a_brute_force_greedy_reference() -> None:
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 50, (60, 2))
    wh = rng.uniform(1, 30, (60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, 60)
    expected: list[int] = []
    for i in np.argsort(-scores):
        if all(box_iou(boxes[j], boxes[i:i + 1])[0] <= 0.5 for j in expected):
            expected.append(int(i))
    assert box_nms(boxes, scores, 0.5).tolist() == expected


# -- stability, boxes, regions, grid --------------------------------------------------------


def test_stability_score_known_answer() -> None:
    values = [3, 2, 1.5, 1.0, 0.5, 0.5, -0.5, -0.9, -1.0, -2, -3, -4, -5, -6, -7, -8]
    logits = torch.tensor([values, [-5.0] * 16]).reshape(2, 4, 4)
    # > 1: {3, 2, 1.5} = 3 pixels; > -1: 3 + {1.0, 0.5, 0.5, -0.5, -0.9} = 8 pixels
    np.testing.assert_allclose(stability_score(logits, 0.0, 1.0).numpy(), [3 / 8, 0.0])
    # another threshold/offset: > 2.5 is {3}, > -1.5 is 9 pixels
    np.testing.assert_allclose(stability_score(logits[:1], 0.5, 2.0).numpy(), [1 / 9])


def test_stability_score_equals_sam2() -> None:
    logits = torch.randn(5, 40, 30, generator=torch.Generator().manual_seed(0)) * 3
    np.testing.assert_allclose(stability_score(logits, 0.0, 1.0).numpy(),
                               amg.calculate_stability_score(logits, 0.0, 1.0).numpy())


def test_mask_boxes_use_pixel_squares() -> None:
    masks = np.zeros((3, 10, 12), dtype=bool)
    masks[0, 2:5, 3:8] = True
    masks[1, 9, 11] = True
    assert mask_boxes(masks).tolist() == [[3, 2, 8, 5], [11, 9, 12, 10], [0, 0, 0, 0]]
    theirs = amg.batched_mask_to_box(torch.from_numpy(masks[:2])).numpy()
    np.testing.assert_array_equal(mask_boxes(masks[:2]), theirs + [0, 0, 1, 1])


def test_remove_small_regions_known_answer() -> None:
    mask = np.zeros((30, 30), dtype=bool)
    mask[5:20, 5:20] = True
    mask[10:12, 10:12] = False  # a 4-pixel hole
    mask[25:27, 25:27] = True  # a 4-pixel island
    filled, changed = remove_small_regions(mask, 10, "holes")
    assert changed and filled[10:12, 10:12].all() and filled[25:27, 25:27].all()
    cleaned, changed = remove_small_regions(filled, 10, "islands")
    assert changed and cleaned.sum() == 15 * 15 and not cleaned[25:27, 25:27].any()
    same, changed = remove_small_regions(cleaned, 10, "islands")
    assert not changed and same is cleaned
    # every island small: the largest is kept
    tiny = np.zeros((10, 10), dtype=bool)
    tiny[0, 0] = True
    tiny[5:7, 5:7] = True
    kept, _ = remove_small_regions(tiny, 100, "islands")
    assert kept.sum() == 4 and kept[5:7, 5:7].all()
    with pytest.raises(ValueError):
        remove_small_regions(mask, 10, "both")


def test_remove_small_regions_equals_sam2() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        mask = rng.uniform(size=(40, 50)) > 0.6
        for mode in ("holes", "islands"):
            ours, changed = remove_small_regions(mask, 5, mode)
            theirs, their_changed = amg.remove_small_regions(mask, 5, mode)
            np.testing.assert_array_equal(ours, theirs)
            assert changed == their_changed


def test_point_grid_is_sam2s_grid_in_pixels() -> None:
    np.testing.assert_allclose(point_grid(2, 100, 50),
                               [[25, 12.5], [75, 12.5], [25, 37.5], [75, 37.5]])
    np.testing.assert_allclose(point_grid(32, 640, 480),
                               amg.build_point_grid(32) * [640, 480], rtol=1e-6)


# -- the whole pipeline with a decoder that draws known objects -----------------------------

H = W = 64
SQUARE = (slice(8, 24), slice(8, 24))  # object A: 16 x 16 = 256 pixels
RECT = (slice(32, 56), slice(28, 48))  # object B: 24 x 20 = 480 pixels
ISLAND = (slice(4, 6), slice(40, 42))  # 4 stray pixels that belong to A's candidate


def full_mask(*parts: tuple[slice, slice]) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    for part in parts:
        mask[part] = True
    return mask


def low_res(mask: np.ndarray, magnitude: float) -> torch.Tensor:
    """256 x 256 logits (+-magnitude) that upscale back exactly to ``mask`` (64 x 64): each
    image pixel is a 4 x 4 block, and bilinear downsampling by 4 samples inside the block."""
    big = np.kron(mask, np.ones((4, 4), dtype=bool))
    return torch.from_numpy(np.where(big, magnitude, -magnitude).astype(np.float32))


class DrawingDecoder:
    """For each point, three candidates: the object under it (sharp logits, IoU 0.95), the
    same object with weak logits (unstable, IoU 0.95) and the object grown (IoU 0.5).
    Background points get the background (IoU 0.6)."""

    def __init__(self) -> None:
        self.a = full_mask(SQUARE, ISLAND)
        self.b = full_mask(RECT)
        self.calls: list[int] = []
        bg = ~(self.a | self.b)
        self.background = torch.stack([low_res(bg, 10)] * 3)
        self.candidates = {id(obj): torch.stack([low_res(obj, 10), low_res(obj, 0.5),
                                                 low_res(np.pad(obj, 2)[:-4, 2:-2] | obj, 10)])
                           for obj in (self.a, self.b)}  # grown: shifted down 2 pixels

    def __call__(self, points: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls.append(len(points))
        logits, ious = [], []
        for x, y in points:
            r, c = int(y), int(x)
            obj = self.a if self.a[r, c] else self.b if self.b[r, c] else None
            if obj is None:
                logits.append(self.background)
                ious.append([0.6, 0.6, 0.6])
            else:
                logits.append(self.candidates[id(obj)])
                ious.append([0.95, 0.95, 0.5])
        return torch.stack(logits), torch.tensor(ious)


def test_pipeline_known_answer() -> None:
    decoder = DrawingDecoder()
    progress: list[tuple[int, int]] = []
    proposals = segment_everything(decoder, (H, W),
                                   EverythingOptions(points_per_side=8, min_mask_region_area=0),
                                   points_per_batch=30,
                                   progress=lambda d, t, m: progress.append((d, t)))
    assert decoder.calls == [30, 30, 4]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    # duplicates from every point on an object are suppressed; background and the grown and
    # unstable candidates fail the filters; largest first
    assert len(proposals) == 2
    b, a = proposals
    np.testing.assert_array_equal(b.mask, full_mask(RECT))
    np.testing.assert_array_equal(a.mask, full_mask(SQUARE, ISLAND))
    assert b.bbox == (28.0, 32.0, 48.0, 56.0) and a.bbox == (8.0, 4.0, 42.0, 24.0)
    assert a.score == pytest.approx(0.95) and a.stability == 1.0


def test_pipeline_removes_small_regions() -> None:
    proposals = segment_everything(
        DrawingDecoder(), (H, W), EverythingOptions(points_per_side=8, min_mask_region_area=10))
    assert [int(p.mask.sum()) for p in proposals] == [480, 256]
    np.testing.assert_array_equal(proposals[1].mask, full_mask(SQUARE))
    assert proposals[1].bbox == (8.0, 8.0, 24.0, 24.0)


def test_pipeline_thresholds_are_honoured() -> None:
    def run(box_nms_thresh: float = 0.7, **knobs: float) -> list[int]:
        options = EverythingOptions(points_per_side=8, min_mask_region_area=0, **knobs)
        props = segment_everything(DrawingDecoder(), (H, W), options,
                                   box_nms_thresh=box_nms_thresh)
        return sorted(int(p.mask.sum()) for p in props)

    background = H * W - 480 - 256 - 4
    assert run(pred_iou_thresh=0.95) == []  # strictly greater than the threshold
    assert run(pred_iou_thresh=0.55) == [260, 480, background]  # background now passes
    # without the stability filter the weak duplicates exist but NMS keeps one per object
    assert run(stability_score_thresh=0.0) == [260, 480]
    # without both filters: grown candidates (IoU 0.5) join, overlapping their objects
    grown = run(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.99)
    assert 260 in grown and 480 in grown and background in grown and len(grown) == 5


def test_pipeline_cancel_and_empty() -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        segment_everything(DrawingDecoder(), (H, W), EverythingOptions(points_per_side=4),
                           cancel=token)
    assert segment_everything(DrawingDecoder(), (H, W),
                              EverythingOptions(points_per_side=4, pred_iou_thresh=0.99)) == []
    with pytest.raises(ValueError):
        segment_everything(DrawingDecoder(), (H, W), EverythingOptions(points_per_side=0))
