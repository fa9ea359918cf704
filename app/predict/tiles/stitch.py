"""Stitching a tiled decode (``predictor.py``): the tiles' logit fields blended into one, and
the positive points carried into a neighbouring tile."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from app.core.types import MaskResult, Point
from app.predict.tiles.field import BACKGROUND, full_field
from app.predict.tiles.grid import Tile, TileGrid

CARRIED_POINTS = 2  # positive points carried into a neighbour (one per larger part)


@dataclass
class Decoded:
    """One tile's decode: the inner result and the chosen candidate's full-res mask."""

    result: MaskResult
    index: int
    mask: np.ndarray = field(repr=False)


def stitch(grid: TileGrid, decoded: dict[Tile, Decoded],
            stretch: bool) -> tuple[np.ndarray, int, int]:
    """The decoded tiles' fields blended over the rectangle they cover: (field, x0, y0).
    Each tile's field is weighted by ``grid.weights`` (towards its centre); a pixel no tile
    covers is background."""
    x0 = min(t.x0 for t in decoded)
    y0 = min(t.y0 for t in decoded)
    x1 = max(t.x1 for t in decoded)
    y1 = max(t.y1 for t in decoded)
    num = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    den = np.zeros_like(num)
    for tile, dec in decoded.items():
        values = full_field(dec.result.low_res_logits[dec.index], dec.mask, tile, stretch)
        weights = grid.weights(tile)
        rows = slice(tile.y0 - y0, tile.y1 - y0)
        cols = slice(tile.x0 - x0, tile.x1 - x0)
        num[rows, cols] += weights * values
        den[rows, cols] += weights
    covered = den > 0
    out = np.full(num.shape, BACKGROUND, dtype=np.float32)
    np.divide(num, den, out=out, where=covered)
    return out, x0, y0


def deepest_points(tile: Tile, decoded: dict[Tile, Decoded]) -> list[Point]:
    """Positive points (tile coordinates) where the decoded tiles' masks, inside ``tile``,
    lie farthest from their boundary: one in each of the ``CARRIED_POINTS`` largest parts."""
    region = np.zeros((tile.height, tile.width), dtype=np.uint8)
    for other, dec in decoded.items():
        ix0, iy0 = max(tile.x0, other.x0), max(tile.y0, other.y0)
        ix1, iy1 = min(tile.x1, other.x1), min(tile.y1, other.y1)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        part = dec.mask[iy0 - other.y0:iy1 - other.y0, ix0 - other.x0:ix1 - other.x0]
        region[iy0 - tile.y0:iy1 - tile.y0, ix0 - tile.x0:ix1 - tile.x0] |= part
    # only the box around the mask is looked at (in a neighbour it is an overlap strip): all
    # is background outside it, so its parts, depths and first maxima are the tile's
    bx, by, bw, bh = cv2.boundingRect(region)
    if bw == 0 or bh == 0:
        return []
    region = region[by:by + bh, bx:bx + bw]
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    parts = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    # padded: the tile's own border counts as boundary, so a point is well inside the tile
    dist = cv2.distanceTransform(np.pad(region, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    points = []
    for component in parts[:CARRIED_POINTS]:
        inside = np.where(labels == component, dist, -1.0)
        at = int(np.argmax(inside))
        points.append(Point(bx + at % inside.shape[1] + 0.5, by + at // inside.shape[1] + 0.5,
                            True))
    return points
