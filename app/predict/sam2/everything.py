"""Segment everything: a grid of single-point prompts, filtered and de-duplicated.

The maths of sam2's ``SAM2AutomaticMaskGenerator`` (one crop, no mask-to-mask refinement)
with the knobs of fal's ``sam2/auto-segment``, and segment-anything's small-region clean-up,
written without torchvision: predicted-IoU filter, stability score on the full-resolution
logits, box non-maximum suppression in numpy, removal of small islands and holes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.core.jobs import CancelToken, Progress, check
from app.core.nms import box_nms
from app.core.types import MaskProposal
from app.predict.base import EverythingOptions

# points (N, 2) in pixels -> (low-res logits (N, C, 256, 256), predicted IoU (N, C)) tensors
PointDecoder = Callable[[np.ndarray], tuple[torch.Tensor, torch.Tensor]]

_UPSCALE_ELEMENTS = 1 << 25  # full-resolution logits upscaled at once (128 MiB of float32)


@dataclass
class _Candidate:
    """A mask that passed the filters, stored cropped to its box to save memory."""

    crop: np.ndarray  # bool, the mask inside bbox
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive
    score: float
    stability: float

    def full(self, height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        x0, y0, x1, y1 = self.bbox
        mask[y0:y1, x0:x1] = self.crop
        return mask


def point_grid(points_per_side: int, width: int, height: int) -> np.ndarray:
    """(n*n, 2) points in pixels: cell centres of an n x n grid (sam2's build_point_grid)."""
    offset = 1 / (2 * points_per_side)
    side = np.linspace(offset, 1 - offset, points_per_side)
    xs = np.tile(side[None, :], (points_per_side, 1))
    ys = np.tile(side[:, None], (1, points_per_side))
    grid = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    return (grid * np.array([width, height])[None, :]).astype(np.float32)


def stability_score(
    logits: torch.Tensor, mask_threshold: float = 0.0, offset: float = 1.0
) -> torch.Tensor:
    """IoU of the masks thresholded at ``mask_threshold + offset`` and ``- offset`` (the
    first lies inside the second), per mask over the last two dims; 0 where both are empty."""
    inter = (logits > (mask_threshold + offset)).sum(dim=(-1, -2), dtype=torch.int64)
    union = (logits > (mask_threshold - offset)).sum(dim=(-1, -2), dtype=torch.int64)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter).float())


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool -> (N, 4) int boxes (x0, y0, x1, y1), x1/y1 exclusive (pixel squares);
    an empty mask gets (0, 0, 0, 0)."""
    n = masks.shape[0]
    boxes = np.zeros((n, 4), dtype=np.int64)
    if n == 0:
        return boxes
    rows: np.ndarray = np.any(masks, axis=2)
    cols: np.ndarray = np.any(masks, axis=1)
    nonempty = np.any(rows, axis=1)
    h, w = masks.shape[1:]
    boxes[:, 0] = np.argmax(cols, axis=1)
    boxes[:, 1] = np.argmax(rows, axis=1)
    boxes[:, 2] = w - np.argmax(cols[:, ::-1], axis=1)
    boxes[:, 3] = h - np.argmax(rows[:, ::-1], axis=1)
    boxes[~nonempty] = 0
    return boxes


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands (mode "islands") smaller than
    ``area_thresh`` pixels (8-connectivity); returns (mask, changed). If every island is
    small, the largest is kept."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = (holes ^ mask).astype(np.uint8)
    n, regions, stats, _ = cv2.connectedComponentsWithStats(work, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0, *small]
    if not holes:
        fill = [i for i in range(n) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True


def segment_everything(
    decode: PointDecoder,
    image_hw: tuple[int, int],
    options: EverythingOptions = EverythingOptions(),
    *,
    box_nms_thresh: float = 0.7,
    points_per_batch: int = 64,
    stability_score_offset: float = 1.0,
    cancel: CancelToken | None = None,
    progress: Progress | None = None,
) -> list[MaskProposal]:
    """Propose every object: decode a grid of points in batches, keep masks with predicted
    IoU > ``options.pred_iou_thresh`` and stability >= ``options.stability_score_thresh``,
    suppress duplicates (box IoU > ``box_nms_thresh``), clean regions below
    ``options.min_mask_region_area``. Returns full-resolution proposals sorted by area,
    largest first."""
    if options.points_per_side < 1:
        raise ValueError("points_per_side must be at least 1")
    h, w = image_hw
    points = point_grid(options.points_per_side, w, h)
    batches = [points[i:i + points_per_batch] for i in range(0, len(points), points_per_batch)]
    candidates: list[_Candidate] = []
    with torch.inference_mode():
        for done, batch in enumerate(batches):
            check(cancel)
            low_res, iou = decode(batch)
            candidates += _filter_batch(
                low_res.flatten(0, 1), iou.flatten(0, 1), (h, w), options.pred_iou_thresh,
                options.stability_score_thresh, stability_score_offset,
            )
            if progress is not None:
                progress(done + 1, len(batches), "segment everything")
    check(cancel)
    if not candidates:
        return []
    boxes = np.array([c.bbox for c in candidates], dtype=np.float64)
    keep = box_nms(boxes, np.array([c.score for c in candidates]), box_nms_thresh)
    kept = [candidates[i] for i in keep]
    masks = [c.full(h, w) for c in kept]
    if options.min_mask_region_area > 0:
        masks, kept = _clean_small_regions(masks, kept, options.min_mask_region_area,
                                           box_nms_thresh)
    proposals = []
    for mask, c in zip(masks, kept, strict=True):
        box = mask_boxes(mask[None])[0]
        proposals.append(MaskProposal(mask=mask, score=c.score, stability=c.stability,
                                      bbox=tuple(float(v) for v in box)))  # type: ignore[arg-type]
    proposals.sort(key=lambda p: int(p.mask.sum()), reverse=True)
    return proposals


def _filter_batch(
    low_res: torch.Tensor,
    iou: torch.Tensor,
    image_hw: tuple[int, int],
    pred_iou_thresh: float,
    stability_thresh: float,
    offset: float,
) -> list[_Candidate]:
    """Filter (M, 256, 256) logits by predicted IoU, then upscale the survivors to the image
    size and filter by stability; returns the non-empty masks cropped to their boxes."""
    h, w = image_hw
    idx = torch.arange(iou.shape[0], device=iou.device)
    if pred_iou_thresh > 0:
        idx = idx[iou > pred_iou_thresh]
    out: list[_Candidate] = []
    step = max(1, _UPSCALE_ELEMENTS // (h * w))
    for start in range(0, idx.shape[0], step):
        sub = idx[start:start + step]
        logits = F.interpolate(low_res[sub][None].float(), (h, w), mode="bilinear",
                               align_corners=False)[0]
        stability = stability_score(logits, 0.0, offset)
        ok = stability >= stability_thresh if stability_thresh > 0 else torch.ones_like(sub).bool()
        masks = torch.gt(logits, 0.0)[ok].cpu().numpy()  # no float copy of the survivors
        scores = iou[sub][ok].float().cpu().numpy()
        stabs = stability[ok].float().cpu().numpy()
        for mask, box, score, stab in zip(masks, mask_boxes(masks), scores, stabs, strict=True):
            x0, y0, x1, y1 = (int(v) for v in box)
            if x1 <= x0 or y1 <= y0:
                continue
            out.append(_Candidate(mask[y0:y1, x0:x1].copy(), (x0, y0, x1, y1), float(score),
                                  float(stab)))
    return out


def _clean_small_regions(
    masks: list[np.ndarray], kept: list[_Candidate], min_area: int, nms_thresh: float
) -> tuple[list[np.ndarray], list[_Candidate]]:
    """Fill small holes and drop small islands, then suppress new duplicates preferring the
    masks that needed no change (segment-anything's postprocess_small_regions)."""
    cleaned, unchanged = [], []
    for mask in masks:
        mask, changed_holes = remove_small_regions(mask, min_area, "holes")
        mask, changed_islands = remove_small_regions(mask, min_area, "islands")
        cleaned.append(mask)
        unchanged.append(not (changed_holes or changed_islands))
    boxes = mask_boxes(np.stack(cleaned)).astype(np.float64)
    # unchanged masks first; among equals, the higher predicted IoU
    ious = np.array([c.score for c in kept], dtype=np.float64)
    scores = np.array(unchanged, dtype=np.float64) * (2 * np.abs(ious).max() + 1) + ious
    keep = [i for i in box_nms(boxes, scores, nms_thresh) if cleaned[i].any()]
    return [cleaned[i] for i in keep], [kept[i] for i in keep]
