"""An object's motion between two frames, and the mask carried by it where the flow is not
trusted (used by ``propagate``): a similarity transform fitted to the flow inside the object
with RANSAC, and the photometric check that decides which untrusted pixels it may carry."""

from __future__ import annotations

import cv2
import numpy as np


def object_motion(mask: np.ndarray, flow: np.ndarray, stride: int = 4) -> np.ndarray | None:
    """The similarity transform (2x3, earlier -> later frame) that best explains how the
    object moved: RANSAC over the flow vectors of the pixels of ``mask`` (the warped mask,
    in the later frame), every ``stride``-th row and column. None when too few points or
    no consistent motion."""
    ys, xs = np.nonzero(mask[::stride, ::stride])
    if xs.size < 12:
        return None
    ys, xs = ys * stride, xs * stride
    later = np.stack([xs, ys], axis=1).astype(np.float32)
    earlier = later + flow[ys, xs]
    # a 1-pixel reprojection threshold: DIS' sub-pixel flow inside an object is accurate to
    # about that; points beyond it belong to something else (an occluder, a moving part)
    m, _inliers = cv2.estimateAffinePartial2D(earlier, later, method=cv2.RANSAC,
                                              ransacReprojThreshold=1.0)
    return None if m is None else np.asarray(m, dtype=np.float64)


COLOUR_QUANTILE = 0.9
"""Of the trusted object pixels' colour residuals under the object's motion, the one that a
pixel carried by that motion may not exceed (the usual spread, not the outliers: the tail
of the trusted residuals is the object's boundary and its own moving parts)."""


def carry(mask: np.ndarray, flowed: np.ndarray, reliable: np.ndarray,
          motion: np.ndarray | None, earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """The ``mask`` of the ``earlier`` frame on the ``later`` one (both RGB uint8): ``flowed``
    (it warped by the flow) where the flow passed the forward-backward check; where it did
    not, the mask moved by the object's ``motion`` (2x3, earlier -> later), on the pixels
    whose colour that motion explains; without a motion those pixels are left out.

    A failed check means the flow there is no evidence, not that the object is absent: on a
    uniform surface the flow is guessed, and a codec's faint, frame-to-frame different
    blocking makes the guesses disagree, so a compressed video fails the check across the
    object's inside; leaving those pixels out punched holes in which GrabCut's background
    model learnt the object's colour, and the object shrank frame by frame. But the check
    also fails on something that really moved differently (an occluder whose own flow DIS
    missed), which the object's motion would wrongly carry along: so a pixel is carried
    only if its colour matches the earlier frame's at the place the motion maps it back
    to, as well as the trusted object pixels' colours match under the same motion (their
    ``COLOUR_QUANTILE``-th residual: the codec's noise and the motion's own error)."""
    fallback = flowed & reliable
    if motion is None:
        return fallback
    h, w = mask.shape
    moved = cv2.warpAffine(mask.astype(np.float32), motion, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0) >= 0.5
    candidates = moved & ~reliable
    if not (candidates.any() and fallback.any()):
        return fallback
    back = cv2.warpAffine(earlier, motion, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    residual = np.abs(later.astype(np.int16) - back.astype(np.int16)).max(axis=2)
    tolerance = float(np.quantile(residual[fallback], COLOUR_QUANTILE))
    return fallback | (candidates & (residual <= tolerance))


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine map ``a`` after ``b``."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]
