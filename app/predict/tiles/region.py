"""Windows fitted to a prompt: how a backend with a cheap encode sees a large image (issue 16).

The classical backend's "encode" is a downscale and a colour conversion (~10 ms for a
512 px copy), so nothing is gained by cutting the image into fixed tiles and stitching
GrabCut results made with different colour models across seams. Instead each prompt is decoded
in one square window around what is known of the object: the clicks, the box and the previous
mask. The window is at least the backend's input side (so a small object is seen at native
resolution, one window pixel per working pixel) and ``CONTEXT`` times the object's known extent
(a quarter of the extent as background on every side, as a labeller frames an object when
zooming to it). When the mask reaches a side of the window that is not the image's edge, the
object goes on beyond it: the window grows around the mask and the prompt is decoded again, at
most ``MAX_GROWTHS`` times and up to ``MAX_SIDE_FACTOR`` input sides (the backend downscales a
larger window to its input side, as it does a whole photo).

A click alone (no box, no previous mask) says nothing of the object's size, and one window of
the input side holds only part of an object much larger than that: GrabCut then learns the
object's own colours as background and returns a part of it. The person's view does tell the
scale they work at (they zoom out to see a large object whole, in to click a small one), so
when the prompt carries it (``Prompt.view``, sent by the app) such a click is decoded in the
view, between the input side and ``MAX_SIDE_FACTOR`` input sides; without it, in the input
side's window as above.

SAM2 keeps fixed tiles (``predictor.py``): its encode costs seconds, so tiles are encoded once,
cached on disk and shared by every click.
"""

from __future__ import annotations

import math

import numpy as np

from app.core.types import Box, Prompt
from app.predict.tiles.field import Field
from app.predict.tiles.grid import Tile

CONTEXT = 1.5  # window side / the object's known extent
MAX_GROWTHS = 3  # decodes again in a grown window at most this many times per prompt
MAX_SIDE_FACTOR = 8  # the window's side is at most this many backend input sides
EDGE = 2  # a mask this close (px) to an open side of its window reaches beyond it

Extent = tuple[float, float, float, float]  # x0, y0, x1, y1 in image pixels


def prompt_extent(prompt: Prompt, prior: Field | None) -> Extent | None:
    """The rectangle holding the prompt's points, its box and the previous mask's object
    (``prior`` > 0); None for an empty prompt."""
    xs: list[float] = []
    ys: list[float] = []
    for p in prompt.points:
        xs.append(p.x)
        ys.append(p.y)
    if prompt.box is not None:
        b = prompt.box.normalized()
        xs += [b.x0, b.x1]
        ys += [b.y0, b.y1]
    if prior is not None:
        rows, cols = np.nonzero(prior.values > 0)
        if rows.size:
            xs += [prior.x0 + cols.min() * prior.sx, prior.x0 + (cols.max() + 1) * prior.sx]
            ys += [prior.y0 + rows.min() * prior.sy, prior.y0 + (rows.max() + 1) * prior.sy]
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def union(a: Extent, b: Extent) -> Extent:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def window_around(extent: Extent, min_side: int, max_side: int,
                  height: int, width: int) -> Tile:
    """The square window centred on ``extent``, ``CONTEXT`` times its longer side and between
    ``min_side`` and ``max_side``, moved inside the image (cut to it where the image is
    narrower)."""
    x0, y0, x1, y1 = extent
    need = CONTEXT * max(x1 - x0, y1 - y0, 1.0)
    side = int(min(max_side, max(min_side, math.ceil(need))))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def span(centre: float, length: int) -> tuple[int, int]:
        if side >= length:
            return 0, length
        start = int(round(centre - side / 2.0))
        start = min(max(0, start), length - side)
        return start, start + side

    wx0, wx1 = span(cx, width)
    wy0, wy1 = span(cy, height)
    return Tile(wx0, wy0, wx1, wy1)


def first_window(extent: Extent, view: Box | None, min_side: int, max_side: int,
                 height: int, width: int) -> Tile:
    """The window to decode a prompt in first: ``view`` (image pixels: what the person sees)
    when it is given, holds ``extent`` and is at least ``min_side`` long, cut to the image and
    to a ``max_side`` square around ``extent``'s centre when larger; else ``window_around``.
    Give a view only for a prompt that does not tell the object's size (a click alone)."""
    if view is not None:
        v = view.normalized()
        x0, y0 = max(0, int(math.floor(v.x0))), max(0, int(math.floor(v.y0)))
        x1, y1 = min(width, int(math.ceil(v.x1))), min(height, int(math.ceil(v.y1)))
        inside = x0 <= extent[0] and extent[2] <= x1 and y0 <= extent[1] and extent[3] <= y1
        longest = max(x1 - x0, y1 - y0)
        if inside and x1 > x0 and y1 > y0 and longest >= min_side:
            if longest <= max_side:
                return Tile(x0, y0, x1, y1)
            return window_around(extent, max_side, max_side, height, width)
    return window_around(extent, min_side, max_side, height, width)


def mask_extent(mask: np.ndarray, window: Tile) -> Extent | None:
    """The rectangle (image pixels) of ``mask``, a (h, w) bool mask of ``window``."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(window.x0 + cols[0]), float(window.y0 + rows[0]),
            float(window.x0 + cols[-1] + 1), float(window.y0 + rows[-1] + 1))


def reaches_beyond(mask: np.ndarray, window: Tile, height: int, width: int) -> bool:
    """Whether ``mask`` touches (within ``EDGE`` px) a side of ``window`` that lies inside the
    image: the object may go on past it."""
    return bool((window.x0 > 0 and mask[:, :EDGE].any())
                or (window.y0 > 0 and mask[:EDGE].any())
                or (window.x1 < width and mask[:, -EDGE:].any())
                or (window.y1 < height and mask[-EDGE:].any()))


def grown_window(window: Tile, extent: Extent, min_side: int, max_side: int,
                 height: int, width: int) -> Tile | None:
    """The next window when the mask (with the prompt, ``extent``) reached past ``window``:
    around ``extent`` and at least ``CONTEXT`` times ``window``'s side; None when it cannot
    grow (already ``max_side`` or the whole image)."""
    bigger = max(min_side, math.ceil(CONTEXT * max(window.width, window.height)))
    nxt = window_around(extent, bigger, max_side, height, width)
    if nxt.width <= window.width and nxt.height <= window.height:
        return None
    return nxt


__all__ = ["CONTEXT", "MAX_GROWTHS", "MAX_SIDE_FACTOR", "first_window", "grown_window",
           "mask_extent",
           "prompt_extent", "reaches_beyond", "union", "window_around"]
