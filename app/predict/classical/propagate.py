"""Classical mask propagation through a sequence: optical flow warps, GrabCut refines.

For each next frame: dense optical flow (OpenCV DIS, ``cv2.DISOpticalFlow``) from the next
frame back to the current one carries the current mask over (backward warping: every pixel of
the next frame looks up where it came from, so the warped mask has no holes), except where the
flow fails the forward-backward check (uncovered background, occluder edges); then GrabCut,
seeded with the warped mask, snaps its boundary to the image: an eroded core of the warped
mask is sure foreground, the rest of it probable foreground, a ring just outside it probable
background and everything further away sure background. Errors cannot grow by more than the
ring's width per frame, and the colour models are re-learnt on every frame (lighting drifts).

An occluder passing over the object takes the pixels it hides out of the mask; to get them
back when it leaves, the last mask that showed the whole object (the anchor) is carried along
by the object's overall motion (a similarity transform fitted to the flow with RANSAC), and
the region it covers stays probable background, which GrabCut may take back by colour.

It runs forward or backward for ``count`` frames, until the end of the sequence, or until the
object is lost (its mask empty or much smaller than at the start); it reports progress and
polls a ``CancelToken`` between frames, and on cancel returns what it finished.

No parameter here was tuned on a benchmark's images; each value is chosen from what the step
needs (see the comments of ``PropagationParams``) and checked on synthetic shapes only
(tests/predict/classical/test_propagate.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress


class FrameSource(Protocol):
    """What propagation reads: ``app.core.sequences.Sequence`` or anything with these."""

    def __len__(self) -> int: ...

    def frame(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class PropagationParams:
    # DIS "medium": the preset OpenCV recommends for accuracy at interactive speed (~30 ms
    # for 640 x 480 on one core); "fast" has visibly blockier motion boundaries.
    flow_preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM
    # Frames are processed with their longer side at most this (the flow and GrabCut cost
    # grow with the pixels; 640 keeps a frame well under a tenth of a second). The mask is
    # scaled back to the frame's full size.
    max_side: int = 640
    # Half-width of GrabCut's uncertain band around the warped boundary, as a fraction of the
    # object's size (the square root of its area): flow errors at a boundary scale with the
    # object's motion and size; 5 % lets GrabCut move the boundary by a few pixels on a
    # 100-pixel object without letting it leak into similar-coloured background.
    band_fraction: float = 0.05
    band_min: int = 2  # pixels; below 2 the band is thinner than resampling noise
    band_max: int = 24  # pixels; GrabCut's colour models get ambiguous in wider bands
    # Background context around the object that GrabCut's colour model learns from, as a
    # fraction of the object's box size (a quarter of it on each side, at least 3 bands).
    context_fraction: float = 0.25
    # GrabCut iterations: the estimate converges in 2-4 on a good seed; 3 is its own default
    # in most examples (OpenCV's sample uses 1 per interaction, repeated).
    iterations: int = 3
    # Lost: the mask fell below this fraction of the starting mask's area (or below
    # ``lost_pixels``); a tracked object rarely shrinks to 5 % in one shot, a failure does.
    lost_fraction: float = 0.05
    lost_pixels: int = 16
    # The anchor (the last whole view of the object, see ``propagate``) is replaced by the
    # current mask when they agree at least this well: the IoU below which a frame counts as
    # needing correction (app.core.video_metrics.CORRECTION_IOU), i.e. when nothing is hidden.
    reanchor_iou: float = 0.9


@dataclass
class Propagation:
    """The masks (frame index -> bool (H, W), the start frame's included), why it stopped
    ("end": all frames asked for; "lost"; "cancelled") and the last frame it finished."""

    masks: dict[int, np.ndarray] = field(default_factory=dict)
    stopped: Literal["end", "lost", "cancelled"] = "end"
    last: int = -1
    lost_at: int | None = None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), np.uint8)


def _flow(dis: cv2.DISOpticalFlow, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS flow from ``a`` to ``b`` (a's pixel x matches b at x + flow(x)); (H, W, 2) float32.
    The output buffer is not used as an initial guess (DIS' UseInitialFlow is off)."""
    out = np.zeros((*a.shape[:2], 2), np.float32)
    return np.asarray(dis.calc(a, b, out), np.float32)


def warp_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``mask`` (bool, of the earlier frame) carried to the later frame by ``flow`` (later ->
    earlier, (H, W, 2)): each later pixel takes the earlier mask at x + flow(x), bilinearly,
    thresholded at one half."""
    h, w = mask.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(mask.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1],
                       interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
    return np.asarray(warped >= 0.5)


def consistent(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Pixels of the later frame whose flow passes the forward-backward check of Sundaram,
    Brox and Keutzer (ECCV 2010): following the backward flow and then the forward flow
    must come back, |w + w'|^2 <= 0.01 (|w|^2 + |w'|^2) + 0.5 (their published constants);
    it fails at occlusions and disocclusions."""
    h, w = backward.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    there = cv2.remap(forward, gx + backward[..., 0], gy + backward[..., 1],
                      interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    loop = backward + there
    err = (loop ** 2).sum(axis=2)
    scale = (backward ** 2).sum(axis=2) + (there ** 2).sum(axis=2)
    return np.asarray(err <= 0.01 * scale + 0.5)


def _band(mask: np.ndarray, params: PropagationParams) -> int:
    size = math.sqrt(float(np.count_nonzero(mask)))
    return int(np.clip(round(params.band_fraction * size), params.band_min, params.band_max))


def _ellipse(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def refine(image: np.ndarray, warped: np.ndarray, params: PropagationParams,
           prior: np.ndarray | None = None) -> np.ndarray:
    """GrabCut on ``image`` (RGB uint8) seeded by the ``warped`` mask (see the module text);
    the refined bool mask. ``prior`` (bool, optional) widens the probable-background zone
    where the object may reappear (its anchored shape); an empty seed stays empty."""
    if not warped.any():
        return warped
    h, w = warped.shape
    band = _band(warped, params)
    element = _ellipse(band)
    m8 = warped.astype(np.uint8)
    core = cv2.erode(m8, element) > 0
    zone = m8 if prior is None else (warped | prior).astype(np.uint8)
    reach = cv2.dilate(zone, element) > 0
    seed = np.full((h, w), cv2.GC_BGD, np.uint8)
    seed[reach] = cv2.GC_PR_BGD
    seed[warped] = cv2.GC_PR_FGD
    seed[core] = cv2.GC_FGD
    # crop: the object's box plus context, so that the colour models are local
    ys, xs = np.nonzero(reach)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    margin = max(3 * band, round(params.context_fraction * max(y1 - y0, x1 - x0)))
    y0, y1 = max(0, y0 - margin), min(h, y1 + margin)
    x0, x1 = max(0, x0 - margin), min(w, x1 + margin)
    crop = np.ascontiguousarray(seed[y0:y1, x0:x1])
    labels = crop.ravel()
    has_fg = np.any((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD))
    has_bg = np.any((labels == cv2.GC_BGD) | (labels == cv2.GC_PR_BGD))
    if not (has_fg and has_bg):  # GrabCut needs samples of both colour models
        return warped
    bgr = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(bgr, crop, (0, 0, 0, 0), bgd, fgd, params.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour model (e.g. a flat crop): keep the warped mask
        return warped
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return out


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


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2x3 affine map ``a`` after ``b``."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]


class _Scaler:
    """Frames and masks at the working resolution (longer side <= max_side)."""

    def __init__(self, shape: tuple[int, int], max_side: int) -> None:
        self.full = shape
        h, w = shape
        self.scale = min(1.0, max_side / max(h, w))
        self.small = (max(1, round(h * self.scale)), max(1, round(w * self.scale)))

    def image(self, rgb: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return rgb
        return cv2.resize(rgb, self.small[::-1], interpolation=cv2.INTER_AREA)

    def down(self, mask: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return mask
        return cv2.resize(mask.astype(np.uint8), self.small[::-1],
                          interpolation=cv2.INTER_AREA) > 0

    def up(self, mask: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return mask
        soft = cv2.resize(mask.astype(np.float32), self.full[::-1],
                          interpolation=cv2.INTER_LINEAR)
        return np.asarray(soft >= 0.5)


def propagate(frames: FrameSource, start: int, mask: np.ndarray, *, direction: int = 1,
              count: int | None = None, params: PropagationParams | None = None,
              progress: Progress | None = None,
              cancel: CancelToken | None = None) -> Propagation:
    """Carry ``mask`` (bool (H, W) of frame ``start``) through ``frames``, ``direction`` +1
    (forward) or -1 (backward), for ``count`` frames (default: to the end). Returns the
    masks finished, the start's included; never raises on cancel (``stopped="cancelled"``)."""
    if direction not in (1, -1):
        raise ValueError("direction must be 1 or -1")
    n = len(frames)
    if not 0 <= start < n:
        raise IndexError(f"start frame {start} out of range (0..{n - 1})")
    params = params or PropagationParams()
    first = frames.frame(start)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != first.shape[:2]:
        raise ValueError(f"mask is {mask.shape[::-1]}, frame is {first.shape[1::-1]}")
    end = n - 1 if direction > 0 else 0
    steps = abs(end - start) if count is None else min(int(count), abs(end - start))
    result = Propagation(masks={start: mask.copy()}, last=start)
    if progress is not None:
        progress(0, steps, "")
    scaler = _Scaler(mask.shape, params.max_side)
    dis = cv2.DISOpticalFlow.create(params.flow_preset)
    prev_rgb = scaler.image(first)
    prev_gray = _gray(prev_rgb)
    prev_mask = scaler.down(mask)
    start_area = max(1, int(np.count_nonzero(prev_mask)))
    lost_below = max(params.lost_pixels, params.lost_fraction * start_area)
    h, w = prev_mask.shape
    anchor, anchor_map = prev_mask.astype(np.uint8), np.eye(2, 3)
    for step in range(1, steps + 1):
        if cancel is not None and cancel.cancelled:
            result.stopped = "cancelled"
            return result
        index = start + direction * step
        rgb = scaler.image(frames.frame(index))
        gray = _gray(rgb)
        flow = _flow(dis, gray, prev_gray)  # next -> previous
        forward = _flow(dis, prev_gray, gray)  # previous -> next
        reliable = consistent(flow, forward)
        # pixels whose flow is not trusted (uncovered background behind a moving object,
        # an occluder's edge) are not carried over: GrabCut decides them by colour
        warped = warp_mask(prev_mask, flow) & reliable
        # the anchor: the last mask that the object's whole shape was seen in, carried by
        # the object's overall motion; where it reaches beyond the warped mask (a part that
        # an occluder hid and now reveals) GrabCut may take pixels back by colour
        motion = object_motion(warped, flow)
        if motion is not None:
            anchor_map = _compose(motion, anchor_map)
        prior = cv2.warpAffine(anchor, anchor_map, (w, h), flags=cv2.INTER_NEAREST) > 0
        refined = refine(rgb, warped, params, prior)
        if _iou(refined, prior) >= params.reanchor_iou:
            anchor, anchor_map = refined.astype(np.uint8), np.eye(2, 3)
        if np.count_nonzero(refined) < lost_below:
            result.stopped = "lost"
            result.lost_at = index
            return result
        result.masks[index] = scaler.up(refined)
        result.last = index
        prev_gray, prev_mask = gray, refined
        if progress is not None:
            progress(step, steps, f"frame {index}")
    result.stopped = "end"
    return result
