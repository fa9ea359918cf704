"""Video object segmentation measures, as the DAVIS benchmark computes them.

- J: region similarity, the IoU of the predicted and true masks (void pixels not counted;
  1.0 when both are empty), as davis2017-evaluation's ``db_eval_iou``.
- F: contour accuracy, as its ``db_eval_boundary`` / ``f_measure``: each mask's one-pixel
  boundary map (``seg2bmap``, void pixels removed from both masks first), each boundary
  dilated by a disk of radius ``ceil(bound_th * image diagonal)`` (bound_th = 0.008), then
  precision = predicted boundary pixels within reach of the true boundary / predicted boundary
  pixels, recall the other way round, F = their harmonic mean (with DAVIS' rules for empty
  boundaries).
- Frames needing correction: J below ``CORRECTION_IOU`` (0.9), the frames a person would fix.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from app.core.geometry import mask_iou

BOUND_TH = 0.008
CORRECTION_IOU = 0.9


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one frame: IoU of ``pred`` with ``gt``, ``void`` pixels excluded."""
    return mask_iou(pred, gt, void)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The boundary map of a binary mask: a pixel is boundary if it differs from its right,
    lower or lower-right neighbour (the last row and column compare with their one neighbour
    in the image), as DAVIS' ``_seg2bmap`` at the mask's own size."""
    seg = np.asarray(seg, dtype=bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """A filled disk structuring element (skimage.morphology.disk: x^2 + y^2 <= r^2)."""
    r = int(radius)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def boundary_f(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None,
               bound_th: float = BOUND_TH) -> float:
    """F of one frame (DAVIS contour accuracy); ``bound_th`` >= 1 is a radius in pixels."""
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} and {gt.shape}")
    keep = ~np.asarray(void, dtype=bool) if void is not None else np.ones_like(gt)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt.shape))
    pred_b = seg2bmap(pred & keep)
    gt_b = seg2bmap(gt & keep)
    element = disk(int(radius))
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), element) > 0
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), element) > 0
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        precision = recall = 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = int(np.count_nonzero(pred_b & gt_dil)) / n_pred
        recall = int(np.count_nonzero(gt_b & pred_dil)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class SequenceScores:
    """J and F of every evaluated frame (frame indices in ``frames``) and their summary."""

    frames: list[int]
    j: list[float]
    f: list[float]

    @property
    def j_mean(self) -> float:
        return float(np.mean(self.j)) if self.j else math.nan

    @property
    def f_mean(self) -> float:
        return float(np.mean(self.f)) if self.f else math.nan

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2

    @property
    def j_last(self) -> float:
        return self.j[-1] if self.j else math.nan

    @property
    def to_correct(self) -> list[int]:
        """Frames whose J is below CORRECTION_IOU."""
        return [i for i, j in zip(self.frames, self.j, strict=True) if j < CORRECTION_IOU]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(j_mean=self.j_mean, f_mean=self.f_mean, jf_mean=self.jf_mean,
                 j_last=self.j_last, to_correct=self.to_correct)
        return d


def score_sequence(preds: dict[int, np.ndarray] | list[np.ndarray | None],
                   gts: list[np.ndarray], voids: list[np.ndarray] | None = None,
                   frames: list[int] | None = None) -> SequenceScores:
    """J and F of the ``frames`` (default: all but frame 0, the given one, as in DAVIS'
    semi-supervised protocol). A frame without a prediction (propagation lost or cancelled
    before it) counts as an empty mask."""
    if frames is None:
        frames = list(range(1, len(gts)))
    js, fs = [], []
    for i in frames:
        pred = preds.get(i) if isinstance(preds, dict) else (
            preds[i] if i < len(preds) else None)
        if pred is None:
            pred = np.zeros_like(gts[i], dtype=bool)
        void = voids[i] if voids is not None else None
        js.append(jaccard(pred, gts[i], void))
        fs.append(boundary_f(pred, gts[i], void))
    return SequenceScores(frames=list(frames), j=js, f=fs)
