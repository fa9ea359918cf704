"""Synthetic video benchmark data: one image and its ground-truth mask become a short shot.

``synthesize(image, mask, ignore, frames=30, seed=0)`` films the still image with a smooth
virtual camera: a pan, a zoom, a small rotation and a brightness drift, plus a passing
occluder (an opaque textured ellipse that crosses the object for part of the shot). The
ground truth moves with exactly the same transform (nearest-neighbour sampling of the same
affine map), and the occluder removes the pixels it covers from the visible-object mask.
Everything is deterministic for a given seed.

The camera always stays inside the image (it is zoomed in at least ``MIN_ZOOM`` and its pan
is scaled down until every frame's view lies within the picture), so frames never show
invented border pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

DEFAULT_FRAMES = 30
MIN_ZOOM = 1.12
"""Zoom of the first frame: the margin that lets the camera pan and rotate inside the image."""


@dataclass(frozen=True)
class CameraPath:
    """The per-frame parameters (seconds are frames here): zoom, rotation in degrees, pan in
    pixels of the output frame, brightness gain and offset."""

    zoom: np.ndarray
    angle: np.ndarray
    pan: np.ndarray  # (N, 2) x, y
    gain: np.ndarray
    bias: np.ndarray


@dataclass
class SyntheticSequence:
    """The frames, the visible-object masks, the ignored pixels (the source's uncertain band,
    moved) and each frame's 2x3 affine map from source pixels to frame pixels."""

    frames: list[np.ndarray]
    masks: list[np.ndarray]
    ignore: list[np.ndarray]
    transforms: list[np.ndarray]
    occluded: list[np.ndarray] = field(default_factory=list)
    name: str = "synthetic"

    def __len__(self) -> int:
        return len(self.frames)


def _smooth(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """A smooth curve over n frames starting at 0: a random mix of a ramp and a half sine,
    at most ``amplitude`` in magnitude."""
    t = np.linspace(0.0, 1.0, n)
    ramp = rng.uniform(-1.0, 1.0)
    wave = rng.uniform(-1.0, 1.0) * np.sin(np.pi * t * rng.uniform(0.5, 1.0))
    curve = ramp * t + 0.5 * wave
    peak = float(np.max(np.abs(curve))) or 1.0
    return np.asarray(curve / peak * amplitude * rng.uniform(0.6, 1.0), dtype=np.float64)


def camera_path(n: int, size: tuple[int, int], seed: int = 0) -> CameraPath:
    """A random smooth camera path of ``n`` frames for a ``size`` = (width, height) image."""
    rng = np.random.default_rng(seed)
    w, h = size
    zoom = MIN_ZOOM * np.exp(np.abs(_smooth(rng, n, 0.18)))  # zooms in by up to 20 %
    angle = _smooth(rng, n, 4.0)  # a few degrees
    pan = np.stack([_smooth(rng, n, 0.12 * w), _smooth(rng, n, 0.12 * h)], axis=1)
    gain = 1.0 + _smooth(rng, n, 0.2)
    bias = _smooth(rng, n, 12.0)
    return CameraPath(zoom=zoom, angle=angle, pan=pan, gain=gain, bias=bias)


def affine(size: tuple[int, int], zoom: float, angle: float, pan: np.ndarray) -> np.ndarray:
    """The 2x3 map from source to frame pixels: zoom and rotate about the centre, then pan."""
    w, h = size
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), float(zoom))
    m[:, 2] += pan
    return m


def _inside(size: tuple[int, int], m: np.ndarray) -> bool:
    """True if the frame's four corners map back inside the source image."""
    w, h = size
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float)
    src = corners @ inv.T
    return bool(np.all(src[:, 0] >= 0) and np.all(src[:, 0] <= w - 1)
                and np.all(src[:, 1] >= 0) and np.all(src[:, 1] <= h - 1))


def fit_inside(size: tuple[int, int], path: CameraPath) -> CameraPath:
    """The path with its pan and rotation scaled by the largest common factor (<= 1) that
    keeps every frame's view inside the source image (found by bisection)."""

    def ok(alpha: float) -> bool:
        return all(_inside(size, affine(size, z, a * alpha, p * alpha))
                   for z, a, p in zip(path.zoom, path.angle, path.pan, strict=True))

    if ok(1.0):
        return path
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return CameraPath(zoom=path.zoom, angle=path.angle * lo, pan=path.pan * lo,
                      gain=path.gain, bias=path.bias)


def _occluder(rng: np.random.Generator, n: int, size: tuple[int, int],
              object_box: tuple[float, float, float, float],
              ) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Per-frame masks of an ellipse that enters, crosses the object's box and leaves, over
    about the middle half of the shot; empty before and after."""
    w, h = size
    x0, y0, x1, y1 = object_box
    ow, oh = max(x1 - x0, 8.0), max(y1 - y0, 8.0)
    axes = (max(4, int(ow * rng.uniform(0.15, 0.25))), max(4, int(oh * rng.uniform(0.2, 0.35))))
    start = int(n * rng.uniform(0.2, 0.35))
    stop = min(n, start + max(3, int(n * rng.uniform(0.3, 0.45))))
    cy = y0 + oh * rng.uniform(0.3, 0.7)
    direction = 1 if rng.random() < 0.5 else -1
    enter, leave = x0 - axes[0], x1 + axes[0]
    if direction < 0:
        enter, leave = leave, enter
    angle = float(rng.uniform(0, 180))
    masks, centres = [], []
    for t in range(n):
        m = np.zeros((h, w), np.uint8)
        centre = (0, 0)
        if start <= t < stop:
            u = (t - start) / max(1, stop - start - 1)
            centre = (round(enter + (leave - enter) * u),
                      round(cy + 0.1 * oh * math.sin(3 * u)))
            cv2.ellipse(m, centre, axes, angle, 0, 360, 1, -1)
        masks.append(m.astype(bool))
        centres.append(centre)
    return masks, centres


def _occluder_texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A dull, blotchy texture for the occluder (so optical flow can follow it too)."""
    w, h = size
    base = rng.uniform(40, 200, 3)
    noise = rng.normal(0, 1, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
    smooth = np.asarray(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), np.float32)
    return np.clip(base + 25 * smooth, 0, 255).astype(np.uint8)


def synthesize(image: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None, *,
               frames: int = DEFAULT_FRAMES, seed: int = 0, occluder: bool = True,
               name: str = "synthetic") -> SyntheticSequence:
    """``frames`` frames of ``image`` (RGB uint8) filmed by a smooth camera, with ``mask``
    (bool object pixels) and ``ignore`` (bool, optional) moved identically."""
    if frames < 1:
        raise ValueError("frames must be at least 1")
    h, w = image.shape[:2]
    if mask.shape != (h, w):
        raise ValueError(f"mask is {mask.shape[::-1]}, image is {(w, h)}")
    size = (w, h)
    rng = np.random.default_rng(seed)
    path = fit_inside(size, camera_path(frames, size, seed=int(rng.integers(1 << 31))))
    mats = [affine(size, z, a, p) for z, a, p in zip(path.zoom, path.angle, path.pan,
                                                     strict=True)]
    labels = mask.astype(np.uint8) | (ignore.astype(np.uint8) << 1 if ignore is not None else 0)
    warped_labels = [np.asarray(cv2.warpAffine(labels, m, size, flags=cv2.INTER_NEAREST,
                                               borderMode=cv2.BORDER_CONSTANT, borderValue=0),
                                np.uint8)
                     for m in mats]
    # the occluder crosses where the object is in the first frame
    ys, xs = np.nonzero(warped_labels[0] & 1)
    box = ((float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())) if xs.size
           else (w * 0.3, h * 0.3, w * 0.7, h * 0.7))
    occ_rng = np.random.default_rng(int(rng.integers(1 << 31)))
    occ, centres = _occluder(occ_rng, frames, size, box)
    if not occluder:
        occ = [np.zeros((h, w), bool)] * frames
    texture = _occluder_texture(occ_rng, size)
    out = SyntheticSequence(frames=[], masks=[], ignore=[], transforms=mats, occluded=occ,
                            name=name)
    for t, m in enumerate(mats):
        frame = cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        frame = np.clip(frame.astype(np.float32) * path.gain[t] + path.bias[t], 0, 255)
        frame = frame.astype(np.uint8)
        if occ[t].any():  # the texture moves with the occluder
            shift = (centres[t][1] + h // 2, centres[t][0] + w // 2)  # wrap seam far away
            moved = np.roll(texture, shift, axis=(0, 1))
            frame[occ[t]] = moved[occ[t]]
        out.frames.append(frame)
        out.masks.append(((warped_labels[t] & 1) > 0) & ~occ[t])
        out.ignore.append(((warped_labels[t] & 2) > 0) & ~occ[t])
    return out
