"""What find all does with any hosted API's proposals: threshold, NMS, order, limit."""

from __future__ import annotations

import numpy as np

from app.core.geometry import mask_iou
from app.predict.base import FindQuery
from app.predict.hosted.common import finish_proposals, proposal_iou, proposals_from_masks


def box_mask(x0: int, y0: int, x1: int, y1: int, shape=(60, 80)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_proposal_iou_is_the_mask_iou():
    rng = np.random.default_rng(0)
    masks = [box_mask(5, 5, 30, 30), box_mask(20, 10, 50, 40), box_mask(60, 40, 80, 60),
             rng.random((60, 80)) > 0.7]
    props = proposals_from_masks(masks, [1.0] * len(masks))
    for a in props:
        for b in props:
            assert proposal_iou(a, b) == mask_iou(a.mask, b.mask)


def test_threshold_nms_order_and_limit():
    big, overlapping, small, faint = (box_mask(0, 0, 40, 40), box_mask(2, 2, 40, 40),
                                      box_mask(50, 50, 60, 60), box_mask(60, 0, 80, 20))
    props = (proposals_from_masks([big, small], [0.7, 0.9], prompt="a")
             + proposals_from_masks([overlapping, faint], [0.8, 0.3], prompt="b"))
    out = finish_proposals(props, FindQuery(texts=("a", "b"), score_threshold=0.5,
                                            nms_iou=0.5))
    # best first; "big" (0.7) overlaps "overlapping" (0.8) with IoU 0.9: dropped; faint < 0.5
    assert [(p.score, p.prompt) for p in out] == [(0.9, "a"), (0.8, "b")]
    assert len(finish_proposals(props, FindQuery(texts=("a",), score_threshold=0.0,
                                                 nms_iou=0.95))) == 4
    assert len(finish_proposals(props, FindQuery(texts=("a",), max_results=1))) == 1
