"""An image pyramid for viewing large images: levels by 2x area downscale, cut into tiles,
with a memory budget. Qt-free (the canvas item in ``app/ui/canvas/tiled_image.py`` draws it).

Level 0 is the decoded image itself (held by whoever decoded it: the app's image store,
which the encoder shares; the pyramid keeps a reference, never a copy). Level k is
``down2`` of level k - 1 (``cv2.INTER_AREA`` by exactly 2, an odd last row or column
replicated), down to the first level that fits in one tile. Since a 2x area downscale of an
even-aligned block depends on that block only, a tile computed from a region of a lower level
is bit-identical to the same tile cut from the whole level.

Memory (``budget`` bytes, default 256 MiB, on top of the level 0 image):

- the coarse levels from ``stored_from`` up are kept whole (RGB, 3 bytes a pixel):
  ``stored_from`` is the first level >= 1 whose levels together fit in half the budget
  (20000 x 20000: levels 2.. = 100 MB; 3000 x 2000: levels 1.. = 6 MB);
- tiles ready to draw (4 bytes a pixel, the byte order of ``QImage.Format_RGB32``) are kept
  in a ``BoundedCache`` by bytes with the rest of the budget; the levels below
  ``stored_from`` are made tile by tile from level 0 when asked for (a level 1 tile of 512 x
  512: 5 ms).

``nbytes`` (the stored levels plus the cached tiles) never exceeds ``budget``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.core.jobs import CancelToken, check
from app.core.lru import BoundedCache

TILE = 512
DEFAULT_BUDGET = 256 * 2**20
BAND_ROWS = 64  # level-0 rows per band of the build, times 2 ** stored_from

TileKey = tuple[int, int, int]  # (level, tile column, tile row)


def down2(a: np.ndarray) -> np.ndarray:
    """2x area downscale (each output pixel the mean of a 2 x 2 block; an odd last row or
    column is replicated to make its block)."""
    import cv2

    h, w = a.shape[:2]
    if h % 2 or w % 2:
        a = cv2.copyMakeBorder(a, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
    if a.shape[0] == 1 and a.shape[1] == 1:
        return a.copy()
    return cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)


def level_sizes(width: int, height: int, tile: int = TILE) -> list[tuple[int, int]]:
    """(width, height) of each level, level 0 first, down to the first that fits one tile."""
    sizes = [(int(width), int(height))]
    while max(sizes[-1]) > tile:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def level_for_scale(scale: float, levels: int) -> int:
    """The level to draw at ``scale`` screen pixels per image pixel: the coarsest whose
    pixels are still no larger than a screen pixel (so it is shrunk by less than 2x)."""
    if scale <= 0:
        return levels - 1
    return max(0, min(levels - 1, int(math.floor(math.log2(1.0 / scale) + 1e-9))))


def rgb_to_bgrx(rgb: np.ndarray) -> np.ndarray:
    """RGB -> the bytes of ``QImage.Format_RGB32`` (B, G, R, 255 on little-endian)."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA)


class Pyramid:
    """Levels and tiles of one RGB uint8 image (see the module's notes on memory)."""

    def __init__(self, image: np.ndarray, tile: int = TILE, budget: int = DEFAULT_BUDGET
                 ) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image, got {image.shape} {image.dtype}")
        self.image = image
        self.tile = int(tile)
        self.budget = int(budget)
        h, w = image.shape[:2]
        self.sizes = level_sizes(w, h, self.tile)
        self.stored_from = self._choose_stored_from()
        stored = self.planned_level_bytes()
        self._levels: dict[int, np.ndarray] = {}
        self.cache: BoundedCache[TileKey, np.ndarray] = BoundedCache(
            max(0, self.budget - stored), lambda _k, v: int(v.nbytes))
        self.built = len(self.sizes) == 1

    # -- sizes and memory ------------------------------------------------------------------
    @property
    def levels(self) -> int:
        return len(self.sizes)

    @property
    def width(self) -> int:
        return self.sizes[0][0]

    @property
    def height(self) -> int:
        return self.sizes[0][1]

    def _bytes_from(self, first: int) -> int:
        return sum(w * h * 3 for w, h in self.sizes[first:])

    def _choose_stored_from(self) -> int:
        for first in range(1, len(self.sizes)):
            if self._bytes_from(first) <= self.budget // 2:
                return first
        return len(self.sizes)  # nothing stored: one level only, or a tiny budget

    def planned_level_bytes(self) -> int:
        return self._bytes_from(self.stored_from)

    @property
    def nbytes(self) -> int:
        """Bytes this pyramid holds besides level 0: stored levels and cached tiles."""
        return sum(int(a.nbytes) for a in list(self._levels.values())) + self.cache.nbytes

    def scale(self, level: int) -> int:
        return 1 << level

    def tiles(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles of ``level``."""
        w, h = self.sizes[level]
        return -(-w // self.tile), -(-h // self.tile)

    def tile_rect(self, level: int, tx: int, ty: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of tile (tx, ty) in the pixels of its level."""
        w, h = self.sizes[level]
        x0, y0 = tx * self.tile, ty * self.tile
        return x0, y0, min(w, x0 + self.tile), min(h, y0 + self.tile)

    # -- building --------------------------------------------------------------------------
    def ready(self, level: int) -> bool:
        """Can tiles of ``level`` be made now (without waiting for the build)?"""
        return level < self.stored_from or level in self._levels

    def build(self, cancel: CancelToken | None = None,
              progress: Callable[[int, int], None] | None = None) -> None:
        """Make the stored levels: one pass over level 0 in bands (each band's transient
        copies are a few MB), then each coarser level from the one below."""
        if self.built:
            return
        first = self.stored_from
        total = len(self.sizes) - first
        if first < len(self.sizes):
            w, h = self.sizes[first]
            out = np.empty((h, w, 3), np.uint8)
            band = BAND_ROWS << first
            for r in range(0, self.height, band):
                check(cancel)
                part = self.image[r:r + band]
                for _ in range(first):
                    part = down2(part)
                out[r >> first:(r >> first) + part.shape[0]] = part
            self._levels[first] = out
            if progress is not None:
                progress(1, total)
            for k in range(first + 1, len(self.sizes)):
                check(cancel)
                self._levels[k] = down2(self._levels[k - 1])
                if progress is not None:
                    progress(k - first + 1, total)
        self.built = True

    # -- pixels ----------------------------------------------------------------------------
    def region(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray | None:
        """RGB pixels [y0:y1, x0:x1] of ``level`` (level pixels), made from level 0 or from
        a stored level; None when that level is not built yet."""
        if level == 0:
            return self.image[y0:y1, x0:x1]
        if level in self._levels:
            return self._levels[level][y0:y1, x0:x1]
        if level >= self.stored_from:
            return None
        f = 1 << level
        part = self.image[y0 * f:y1 * f, x0 * f:x1 * f]
        for _ in range(level):
            part = down2(part)
        return part[:y1 - y0, :x1 - x0]

    def cached(self, key: TileKey) -> np.ndarray | None:
        """The tile if it is cached (for drawing: never computes)."""
        return self.cache.get(key)

    def tile_pixels(self, level: int, tx: int, ty: int) -> np.ndarray | None:
        """The tile, ready to draw (B, G, R, 255; see ``rgb_to_bgrx``), made and cached if
        it is not; None when its level is not built yet."""
        key = (level, tx, ty)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        rgb = self.region(level, *self.tile_rect(level, tx, ty))
        if rgb is None:
            return None
        pixels = rgb_to_bgrx(rgb)
        self.cache.put(key, pixels)
        return pixels


def quick_preview(path: Path, width: int, height: int, max_side: int = 4096
                  ) -> np.ndarray | None:
    """A reduced RGB decode of a JPEG for a first picture (libjpeg scales while decoding:
    20000 x 20000 at 1/8 in about 1.5 s, against 3.5 s in full), or None for other formats
    or when the reduced size does not match ``width`` x ``height`` (orientation)."""
    import cv2

    from app.core.images import sniff_format

    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if sniff_format(head) != "JPEG":
        return None
    flags = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}
    factor = next((f for f in (2, 4) if max(width, height) / f <= max_side), 8)
    bgr = cv2.imread(str(path), flags[factor])
    if bgr is None:
        return None
    ph, pw = bgr.shape[:2]
    if abs(pw * factor - width) > factor or abs(ph * factor - height) > factor:
        return None  # not the oriented image the project knows
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def release_free_memory() -> None:
    """Hand memory the C heap keeps after a large decode back to the system (glibc's
    ``malloc_trim``; Pillow decodes in 16 MB blocks, below the size glibc maps apart, so a
    20000 x 20000 decode leaves over a GB of freed blocks counted in the RSS). A no-op
    elsewhere."""
    import contextlib
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
