"""Greedy non-maximum suppression, by box IoU or by mask IoU (numpy only, no torchvision)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from app.core.geometry import mask_iou


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with each of (N, 4) boxes (x0, y0, x1, y1); 0 for empty unions."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(scores: Sequence[float] | np.ndarray,
        overlap: Callable[[int, np.ndarray], np.ndarray],
        iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept items, highest score first; an
    item is dropped if its IoU with a kept one (``overlap(i, others)``: the IoU of item ``i``
    with each of the items ``others``) exceeds the threshold. Equal scores keep the earlier."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[overlap(i, rest) <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def box_nms(boxes: np.ndarray, scores: Sequence[float] | np.ndarray,
            iou_threshold: float = 0.7) -> np.ndarray:
    """``nms`` by box IoU (as torchvision.ops.nms), boxes (N, 4) as (x0, y0, x1, y1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return nms(scores, lambda i, rest: box_iou(boxes[i], boxes[rest]), iou_threshold)


def mask_nms(masks: Sequence[np.ndarray], scores: Sequence[float] | np.ndarray,
             iou_threshold: float) -> np.ndarray:
    """``nms`` by mask IoU (``geometry.mask_iou``) of (H, W) bool masks."""
    return nms(scores, lambda i, rest: np.array([mask_iou(masks[i], masks[j]) for j in rest]),
               iou_threshold)
