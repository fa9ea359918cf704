"""Logit fields in image coordinates: what a tile's decode gave, resampled between the frames
of different tiles (a refinement click in another tile than the last one), and the per-tile
full-resolution field that the stitcher blends.

A ``Field`` is a float32 grid whose cell (row, col) covers the image pixels
[x0 + col * sx, x0 + (col + 1) * sx) x [y0 + row * sy, ...): a tile's 256 x 256 low-res logits
(sx = sy = 4 for a 1024 tile) or a stitched field at a quarter of the image's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.core.types import LOW_RES
from app.predict.tiles.grid import Tile

BACKGROUND = -20.0  # the logit of "surely not the object" (SAM's clamp is +-32)


@dataclass(frozen=True)
class Field:
    """Logits over a rectangle of the image, cells of ``sx`` x ``sy`` pixels from (x0, y0)."""

    values: np.ndarray
    x0: float
    y0: float
    sx: float
    sy: float


def frame_scale(tile: Tile, stretch: bool) -> tuple[float, float]:
    """Image pixels per low-res cell of ``tile``: SAM2 stretches its input to a square
    (``stretch``); the classical backend pads it to one (cells of max(w, h) / 256)."""
    if stretch:
        return tile.width / LOW_RES, tile.height / LOW_RES
    side = max(tile.width, tile.height) / LOW_RES
    return side, side


def tile_logits_field(logits: np.ndarray, tile: Tile, stretch: bool) -> Field:
    """A tile's (256, 256) low-res logits as a Field."""
    sx, sy = frame_scale(tile, stretch)
    return Field(np.asarray(logits, dtype=np.float32).reshape(LOW_RES, LOW_RES),
                 float(tile.x0), float(tile.y0), sx, sy)


def resample(field: Field, tile: Tile, stretch: bool,
             outside: float = BACKGROUND) -> np.ndarray:
    """``field`` seen in ``tile``'s low-res frame: (1, 256, 256) float32 logits, ``outside``
    (background by default; NaN for "unknown" to the classical backend) where the field says
    nothing (a mask prompt for that tile)."""
    tx, ty = frame_scale(tile, stretch)
    ax, ay = tx / field.sx, ty / field.sy
    bx = (tile.x0 - field.x0) / field.sx + 0.5 * ax - 0.5
    by = (tile.y0 - field.y0) / field.sy + 0.5 * ay - 0.5
    matrix = np.array([[ax, 0.0, bx], [0.0, ay, by]], dtype=np.float64)
    out = cv2.warpAffine(field.values, matrix, (LOW_RES, LOW_RES),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=outside)
    return out[None].astype(np.float32, copy=False)


def full_field(logits: np.ndarray, mask: np.ndarray, tile: Tile, stretch: bool) -> np.ndarray:
    """A tile's (h, w) float32 field at full resolution for blending: its low-res logits
    upscaled (bilinear, as SAM2 upscales them), clipped to +-20, with the sign of the
    backend's own full-resolution ``mask`` (so a tile alone gives exactly its mask, whatever
    the backend made the mask from)."""
    h, w = tile.height, tile.width
    low = np.asarray(logits, dtype=np.float32).reshape(LOW_RES, LOW_RES)
    if stretch:
        up = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    else:
        side = max(h, w)
        up = cv2.resize(low, (side, side), interpolation=cv2.INTER_LINEAR)[:h, :w]
    np.clip(np.abs(up), 0.5, -BACKGROUND, out=up)
    return np.where(mask, up, -up)


def downscaled(values: np.ndarray, x0: int, y0: int, factor: int = 4) -> Field:
    """A full-resolution field kept at 1/``factor`` resolution (what refinement needs: a tile's
    mask prompt is 256 cells for 1024 pixels)."""
    h, w = values.shape
    small = cv2.resize(values, (max(1, w // factor), max(1, h // factor)),
                       interpolation=cv2.INTER_AREA)
    return Field(small, float(x0), float(y0), w / small.shape[1], h / small.shape[0])
