"""The tile grid of a large image (issue 16): overlapping square tiles at native resolution,
which tile owns a pixel, and the blending weights of the overlaps.

Tile size and overlap: a tile is the model's input side (1024 for SAM2, ``max_side`` for the
classical backend), so one tile pixel is one model pixel (no downscale: the point of tiling).
Neighbouring tiles overlap by a quarter of the side (256 px at 1024): every pixel lies at least
128 px (half the overlap, the "halo") inside the tile that owns it, which gives the encoder the
context of a click near a tile's edge, and the overlap is wide enough to blend two tiles'
logits smoothly. It costs (1024 / 768)^2 = 1.8x the encodes of tiles that do not overlap.
micro-sam's tiling is the prior art: tiles plus a halo (e.g. 1024 + 256 or 512 + 64 on each
side), each resized to the model's 1024, so its tile with halo loses resolution; ours keeps
the native pixels and pays with more tiles.

Tiles stay inside the image: the last tile of a row or column is moved back to end at the
image's edge (so every tile is a full square unless the image is narrower than a tile).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

CUTOVER_FACTOR = 2  # tile when the longest side exceeds this many model inputs


@dataclass(frozen=True, order=True)
class Tile:
    """One tile's rectangle in image pixels: columns [x0, x1), rows [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def tag(self) -> str:
        """The tile's part of its embedding's cache key: "x0_y0_WxH"."""
        return f"{self.x0}_{self.y0}_{self.width}x{self.height}"


def _starts(length: int, side: int, stride: int) -> list[int]:
    """Tile starts along one axis: 0, stride, 2 * stride... the last one ending at ``length``."""
    if length <= side:
        return [0]
    starts = list(range(0, length - side, stride))
    starts.append(length - side)
    return starts


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a ``height`` x ``width`` image: squares of ``side`` overlapping by
    ``overlap`` pixels. Pixel ownership splits each overlap in its middle (so every pixel has
    exactly one owner, the tile whose centre is nearest along each axis)."""

    height: int
    width: int
    side: int = 1024
    overlap: int = 256

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image is empty: {self.width} x {self.height}")
        if not 0 <= self.overlap < self.side // 2 + 1 or self.side < 16:
            raise ValueError(f"bad tiling: side {self.side}, overlap {self.overlap}")

    @property
    def stride(self) -> int:
        return self.side - self.overlap

    @cached_property
    def _xs(self) -> list[int]:
        return _starts(self.width, self.side, self.stride)

    @cached_property
    def _ys(self) -> list[int]:
        return _starts(self.height, self.side, self.stride)

    @cached_property
    def _x_cuts(self) -> np.ndarray:
        return self._cuts(self._xs, self.width)

    @cached_property
    def _y_cuts(self) -> np.ndarray:
        return self._cuts(self._ys, self.height)

    def _cuts(self, starts: list[int], length: int) -> np.ndarray:
        """Where ownership passes from one tile to the next: the middle of each overlap."""
        ends = [min(length, s + self.side) for s in starts]
        return np.array([(starts[i + 1] + ends[i]) / 2.0 for i in range(len(starts) - 1)])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return len(self._ys), len(self._xs)

    def tile(self, row: int, col: int) -> Tile:
        x0, y0 = self._xs[col], self._ys[row]
        return Tile(x0, y0, min(self.width, x0 + self.side), min(self.height, y0 + self.side))

    def tiles(self) -> list[Tile]:
        """Every tile, row by row."""
        rows, cols = self.shape
        return [self.tile(r, c) for r in range(rows) for c in range(cols)]

    def index_of(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the tile that owns pixel position (x, y) (clamped to the image)."""
        col = int(np.searchsorted(self._x_cuts, x, side="right"))
        row = int(np.searchsorted(self._y_cuts, y, side="right"))
        return row, col

    def owner(self, x: float, y: float) -> Tile:
        """The tile that owns position (x, y): the one to decode a click there in."""
        return self.tile(*self.index_of(x, y))

    def owners_of(self, xs: np.ndarray, ys: np.ndarray) -> set[Tile]:
        """The distinct owners of many positions at once."""
        cols = np.searchsorted(self._x_cuts, xs, side="right")
        rows = np.searchsorted(self._y_cuts, ys, side="right")
        return {self.tile(int(r), int(c)) for r, c in set(zip(rows.tolist(), cols.tolist(),
                                                              strict=True))}

    def overlapping(self, x0: float, y0: float, x1: float, y1: float) -> list[Tile]:
        """The tiles owning some part of the rectangle [x0, x1) x [y0, y1), nearest to its
        centre first (a box prompt is decoded in each)."""
        r0, c0 = self.index_of(max(0.0, x0), max(0.0, y0))
        r1, c1 = self.index_of(min(x1, self.width - 1.0), min(y1, self.height - 1.0))
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        found = [self.tile(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
        return sorted(found, key=lambda t: (t.centre[0] - cx) ** 2 + (t.centre[1] - cy) ** 2)

    def nearest_first(self, x: float, y: float) -> list[Tile]:
        """Every tile, the one owning (x, y) first, then by distance of their centres (the
        order to prefetch around what the person looks at)."""
        return sorted(self.tiles(),
                      key=lambda t: (t.centre[0] - x) ** 2 + (t.centre[1] - y) ** 2)

    def weights(self, tile: Tile) -> np.ndarray:
        """(h, w) float32 blending weights of ``tile``: 1 in its middle, falling linearly to
        nearly 0 across the overlap towards each side that has a neighbour (not at the
        image's edges), so that in an overlap the tile whose centre is nearer counts more."""
        ramp = max(1, self.overlap)

        def axis(start: int, stop: int, length: int) -> np.ndarray:
            pos = np.arange(stop - start, dtype=np.float32) + 0.5
            w = np.ones(stop - start, dtype=np.float32)
            if start > 0:
                w = np.minimum(w, pos / ramp)
            if stop < length:
                w = np.minimum(w, (stop - start - pos) / ramp)
            return np.clip(w, 1e-3, 1.0)

        wx = axis(tile.x0, tile.x1, self.width)
        wy = axis(tile.y0, tile.y1, self.height)
        return wy[:, None] * wx[None, :]

    def inner_sides(self, tile: Tile) -> tuple[bool, bool, bool, bool]:
        """Which sides of ``tile`` (left, top, right, bottom) face another tile rather than
        the image's edge: a mask touching one of them continues in a neighbour."""
        return (tile.x0 > 0, tile.y0 > 0, tile.x1 < self.width, tile.y1 < self.height)
