"""Uniform fill: large single-colour areas reaching the image's border (a letterbox, the margins
of a scanned page or of a mosaic of photos, a blown-out sky), which GrabCut must not learn from.

Why: GrabCut's background model is learned from every pixel not yet called object. A uniform
fill is explained perfectly by one tight Gaussian, so when it takes a large part of the image
GrabCut converges to "everything that is not the fill" against the fill: a click on an object
in a letterboxed photo returns the whole photo. (Measured on GrabCut's photos padded with a
grey frame of a fifth of their side, before this module: NoC@90 3.96 -> 7.48 on half of them.)
Such an area carries no information about the object, so the classical predictor treats it as
the image's edge: definite background (unless a positive click lies in it, when it may be the
object), and GrabCut's crop stops at the content around the clicks.

Fill is told from a smooth sky or a studio backdrop by its spread: the whole area lies within a
few colour levels of one colour, not merely changing slowly. The two constants below were set
from what JPEG does to a flat area (a few levels of noise), not fitted to any benchmark.
"""

from __future__ import annotations

import cv2
import numpy as np

FLAT_STEP = 2  # a pixel is flat when no 4-neighbour differs by more (per channel, 0-255)
FILL_SPREAD = 6  # a fill's colours lie within this many levels of each other (per channel)
FILL_AREA = 0.02  # ... and it covers at least this fraction of the image


def fill_components(bgr: np.ndarray) -> np.ndarray:
    """(h, w) int32: 0 where there is content, k > 0 on the k-th uniform fill area (module
    doc) of the (h, w, 3) uint8 image."""
    h, w = bgr.shape[:2]
    step = np.zeros((h, w), dtype=np.uint8)
    dx = _largest_step(bgr[:, 1:], bgr[:, :-1])
    dy = _largest_step(bgr[1:], bgr[:-1])
    step[:, 1:] = np.maximum(step[:, 1:], dx)
    step[:, :-1] = np.maximum(step[:, :-1], dx)
    step[1:] = np.maximum(step[1:], dy)
    step[:-1] = np.maximum(step[:-1], dy)
    flat = (step <= FLAT_STEP).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    out = np.zeros((h, w), dtype=np.int32)
    if count <= 1:
        return out
    least = FILL_AREA * h * w
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    made = 0
    for k in border.tolist():
        if k == 0 or stats[k, cv2.CC_STAT_AREA] < least:
            continue
        x, y = stats[k, cv2.CC_STAT_LEFT], stats[k, cv2.CC_STAT_TOP]
        bw, bh = stats[k, cv2.CC_STAT_WIDTH], stats[k, cv2.CC_STAT_HEIGHT]
        part = labels[y:y + bh, x:x + bw] == k
        colours = bgr[y:y + bh, x:x + bw][part]
        if int((colours.max(axis=0).astype(np.int16) - colours.min(axis=0)).max()) > FILL_SPREAD:
            continue
        made += 1
        out[y:y + bh, x:x + bw][part] = made
    return out


def _largest_step(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per pixel, the largest per-channel difference between ``a`` and ``b`` (uint8, 3
    channels); cv2's per-channel max, as numpy's max over the channel axis is 25x slower."""
    d = cv2.absdiff(a, b)
    out: np.ndarray = cv2.max(cv2.max(d[..., 0], d[..., 1]), d[..., 2])
    return out


def fill_to_ignore(fill: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The fill areas (``fill_components``) holding none of the ``keep`` pixels (positive
    clicks, the sure part of a previous mask): (h, w) bool."""
    if not fill.any():
        return np.zeros(fill.shape, dtype=bool)
    kept = np.unique(fill[keep & (fill > 0)])
    return (fill > 0) & ~np.isin(fill, kept)


__all__ = ["FILL_AREA", "FILL_SPREAD", "FLAT_STEP", "fill_components",
           "fill_to_ignore"]
