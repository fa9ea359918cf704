"""Classical mask propagation through a sequence: optical flow warps, GrabCut refines.

For each next frame: dense optical flow (OpenCV DIS, ``cv2.DISOpticalFlow``) from the next
frame back to the current one carries the current mask over (backward warping: every pixel of
the next frame looks up where it came from, so the warped mask has no holes), except where the
flow fails the forward-backward check (uncovered background, occluder edges, but also the
guessed flow of a uniform surface in a compressed video): there the object's overall motion
carries the mask, on the pixels whose colour it explains (``carry``); then GrabCut, seeded
with the warped mask, snaps its boundary to the image: an eroded core of what the trusted flow
carried is sure foreground, the rest of the warped mask probable foreground, a ring just
outside it probable background and everything further away sure background. Errors cannot
grow by more than the ring's width per frame, and the colour models are re-learnt on every
frame (lighting drifts).

An occluder passing over the object takes the pixels it hides out of the mask; to get them
back when it leaves, the last mask that showed the whole object (the anchor) is carried along
by the object's overall motion (a similarity transform fitted to the flow with RANSAC), and
the region it covers stays probable background, which GrabCut may take back by colour.

It runs forward or backward for ``count`` frames, until the end of the sequence, or until the
object is lost (its mask empty or much smaller than at the start); it reports progress and
polls a ``CancelToken`` between frames, and on cancel returns what it finished.

``ClassicalPropagator`` puts this behind the ``Propagator`` interface
(app/predict/propagation.py): several tracks at once (the flow is computed once per frame,
each track steps on its own, so a track's masks are those ``propagate`` gives it alone),
anchors, cancel and re-propagation.

No parameter here was tuned on a benchmark's images; each value is chosen from what the step
needs (see the comments of ``PropagationParams``) and checked on synthetic shapes only
(tests/predict/classical/test_propagate.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress
from app.core.lru import BoundedCache
from app.core.types import Prompt
from app.predict.base import Capabilities, Predictor, PredictorError, SourceKind
from app.predict.classical.motion import carry, compose, object_motion
from app.predict.classical.ops import GRABCUT_SEED
from app.predict.propagation import (
    FrameResult,
    FrameSource,
    PropagationRequest,
    PropagationRun,
    track_ends,
)


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
           prior: np.ndarray | None = None, sure: np.ndarray | None = None) -> np.ndarray:
    """GrabCut on ``image`` (RGB uint8) seeded by the ``warped`` mask (see the module text);
    the refined bool mask. ``prior`` (bool, optional) widens the probable-background zone
    where the object may reappear (its anchored shape); ``sure`` (bool, optional; default
    ``warped``) is the part whose eroded core is sure foreground, the rest of ``warped``
    being only probable. An empty seed stays empty."""
    if not warped.any():
        return warped
    h, w = warped.shape
    band = _band(warped, params)
    element = _ellipse(band)
    m8 = warped.astype(np.uint8)
    core = cv2.erode((warped if sure is None else sure & warped).astype(np.uint8), element) > 0
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
        cv2.setRNGSeed(GRABCUT_SEED)  # the same frames give the same masks (see ops.py)
        cv2.grabCut(bgr, crop, (0, 0, 0, 0), bgd, fgd, params.iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour model (e.g. a flat crop): keep the warped mask
        return warped
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = (crop == cv2.GC_FGD) | (crop == cv2.GC_PR_FGD)
    return out


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


class _Frame:
    """One frame at the working resolution with the flow back to the frame before it: what
    every track needs, computed once per frame."""

    def __init__(self, rgb: np.ndarray, dis: cv2.DISOpticalFlow,
                 prev_gray: np.ndarray | None) -> None:
        self.rgb = rgb
        self.gray = _gray(rgb)
        self.flow: np.ndarray | None = None  # this -> previous
        self.reliable: np.ndarray | None = None
        if prev_gray is not None:
            self.flow = _flow(dis, self.gray, prev_gray)
            forward = _flow(dis, prev_gray, self.gray)  # previous -> this
            self.reliable = consistent(self.flow, forward)


class _Follower:
    """One object followed frame to frame at the working resolution (see the module text):
    its last mask, the anchor (its last whole view) and the threshold under which it is
    lost."""

    def __init__(self, mask: np.ndarray, params: PropagationParams) -> None:
        self.params = params
        self.mask = mask
        start_area = max(1, int(np.count_nonzero(mask)))
        self.lost_below = max(params.lost_pixels, params.lost_fraction * start_area)
        self.anchor, self.anchor_map = mask.astype(np.uint8), np.eye(2, 3)

    def step(self, frame: _Frame, prev: _Frame) -> np.ndarray | None:
        """The mask on ``frame`` (the one after ``prev``, the last), or None when the object
        is lost."""
        assert frame.flow is not None and frame.reliable is not None
        h, w = self.mask.shape
        # the object's overall motion, fitted to the flow it trusts (see ``motion.carry``); it also
        # carries the anchor: the last mask that the object's whole shape was seen in; where
        # that reaches beyond the warped mask (a part that an occluder hid and now reveals)
        # GrabCut may take pixels back by colour
        flowed = warp_mask(self.mask, frame.flow)
        motion = object_motion(flowed & frame.reliable, frame.flow)
        warped = carry(self.mask, flowed, frame.reliable, motion, prev.rgb, frame.rgb)
        if motion is not None:
            self.anchor_map = compose(motion, self.anchor_map)
        prior = cv2.warpAffine(self.anchor, self.anchor_map, (w, h), flags=cv2.INTER_NEAREST) > 0
        # only what the trusted flow carried can be sure foreground: pixels carried by the
        # overall motion may be an occluder's edge (its flow smeared into the object's)
        refined = refine(frame.rgb, warped, self.params, prior, sure=flowed & frame.reliable)
        if _iou(refined, prior) >= self.params.reanchor_iou:
            self.anchor, self.anchor_map = refined.astype(np.uint8), np.eye(2, 3)
        if np.count_nonzero(refined) < self.lost_below:
            return None
        self.mask = refined
        return refined


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
    prev = _Frame(scaler.image(first), dis, None)
    follower = _Follower(scaler.down(mask), params)
    for step in range(1, steps + 1):
        if cancel is not None and cancel.cancelled:
            result.stopped = "cancelled"
            return result
        index = start + direction * step
        frame = _Frame(scaler.image(frames.frame(index)), dis, prev.gray)
        refined = follower.step(frame, prev)
        if refined is None:
            result.stopped = "lost"
            result.lost_at = index
            return result
        result.masks[index] = scaler.up(refined)
        result.last = index
        prev = frame
        if progress is not None:
            progress(step, steps, f"frame {index}")
    result.stopped = "end"
    return result


# -- the Propagator interface ----------------------------------------------------------------

_PRODUCED_BYTES = 128 * 1024 * 1024  # a session's own recent masks (a run may start on one)


class ClassicalPropagator:
    """Optical flow + GrabCut behind the ``Propagator`` interface: no model, no download.
    Clicks and boxes become a mask through ``predictor`` (GrabCut by default)."""

    def __init__(self, predictor: Predictor | None = None,
                 params: PropagationParams | None = None) -> None:
        if predictor is None:
            from app.predict.classical.predictor import ClassicalPredictor

            predictor = ClassicalPredictor()
        self.predictor = predictor
        self.params = params or PropagationParams()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(SourceKind.CLASSICAL, "cpu", video=True)

    def open(self, frames: FrameSource,
             frame_hash: Callable[[int], str] | None = None) -> ClassicalSession:
        return ClassicalSession(self, frames, frame_hash)


class ClassicalSession:
    """Anchors and runs on one sequence. A run starts each track from its anchor on the
    start frame, or from the mask an earlier run of this session left there; on a later
    anchor of the track (``stop_at_anchors`` False) it goes on from the anchor."""

    def __init__(self, owner: ClassicalPropagator, frames: FrameSource,
                 frame_hash: Callable[[int], str] | None = None) -> None:
        self.predictor = owner.predictor
        self.params = owner.params
        self.frames = frames
        self._frame_hash = frame_hash
        self.length = len(frames)
        if self.length < 1:
            raise ValueError("the sequence has no frames")
        self.hw: tuple[int, int] = tuple(frames.frame(0).shape[:2])  # type: ignore[assignment]
        self._anchors: dict[tuple[int, int], np.ndarray] = {}  # (frame, track) -> mask
        self._produced: BoundedCache[tuple[int, int], np.ndarray] = BoundedCache(
            _PRODUCED_BYTES, lambda _k, m: int(m.nbytes))

    def anchors(self) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {}
        for frame, track in self._anchors:
            out.setdefault(track, set()).add(frame)
        return out

    def add_prompt(self, frame: int, track: int, prompt: Prompt) -> np.ndarray:
        rgb = self.frames.frame(frame)
        name = self._frame_hash(frame) if self._frame_hash is not None else None
        key = self.predictor.embed(rgb, name)
        result = self.predictor.predict(key, prompt)
        return self.add_mask(frame, track, result.mask(result.best))

    def add_mask(self, frame: int, track: int, mask: np.ndarray) -> np.ndarray:
        if not 0 <= int(frame) < self.length:
            raise IndexError(f"frame {frame} out of range (0..{self.length - 1})")
        mask = np.array(mask, dtype=bool)
        if mask.shape != self.hw:
            raise ValueError(f"mask is {mask.shape[::-1]}, frame is {self.hw[::-1]}")
        self._anchors[(int(frame), track)] = mask
        return mask

    def remove_track(self, track: int) -> None:
        for key in [k for k in self._anchors if k[1] == track]:
            del self._anchors[key]

    def propagate(self, request: PropagationRequest, *, progress: Progress | None = None,
                  cancel: CancelToken | None = None,
                  sink: Callable[[FrameResult], object] | None = None) -> PropagationRun:
        visits = request.frames(self.length)
        ends = track_ends(request, self.anchors(), self.length)
        starts: dict[int, np.ndarray] = {}
        for track in ends:
            key = (request.start, track)
            mask = self._anchors.get(key)
            if mask is None:
                mask = self._produced.get(key)
            if mask is None:
                raise PredictorError(f"track {track} has no mask on frame {request.start}: "
                                     "give it a prompt there, or start where it has one")
            starts[track] = mask
        return PropagationRun(self._steps(request, visits, ends, starts), len(visits),
                              progress=progress, cancel=cancel, sink=sink)

    def _steps(self, request: PropagationRequest, visits: list[int], ends: dict[int, int],
               starts: dict[int, np.ndarray]) -> Iterator[FrameResult]:
        d = request.direction
        scaler = _Scaler(self.hw, self.params.max_side)
        dis = cv2.DISOpticalFlow.create(self.params.flow_preset)
        prev = _Frame(scaler.image(self.frames.frame(request.start)), dis, None)
        followers = {t: _Follower(scaler.down(m), self.params) for t, m in starts.items()}
        yield FrameResult(request.start, dict(starts), {t: 1.0 for t in starts})
        for index in visits[1:]:
            for t in [t for t in followers if (ends[t] - index) * d < 0]:
                del followers[t]
            if not followers:
                return
            frame = _Frame(scaler.image(self.frames.frame(index)), dis, prev.gray)
            masks: dict[int, np.ndarray] = {}
            lost: list[int] = []
            for t, follower in list(followers.items()):
                anchor = self._anchors.get((index, t))
                if anchor is not None:  # the person's mask: keep it, go on from it
                    masks[t] = anchor
                    followers[t] = _Follower(scaler.down(anchor), self.params)
                    continue
                refined = follower.step(frame, prev)
                if refined is None:
                    lost.append(t)
                    del followers[t]
                    continue
                masks[t] = scaler.up(refined)
                self._produced.put((index, t), masks[t])
            prev = frame
            yield FrameResult(index, masks, {t: 1.0 for t in masks}, tuple(lost))

    def close(self) -> None:
        self._anchors.clear()
        self._produced.clear()
