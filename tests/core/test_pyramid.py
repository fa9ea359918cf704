"""Issue 16: the pyramid of a large image (levels, tiles, the memory budget)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core.pyramid import Pyramid, down2, level_for_scale, level_sizes, quick_preview


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), np.uint8)


def test_level_sizes_halve_down_to_one_tile() -> None:
    assert level_sizes(3000, 2000, 256) == [(3000, 2000), (1500, 1000), (750, 500),
                                            (375, 250), (188, 125)]
    assert level_sizes(20000, 20000, 512)[-1] == (313, 313)
    assert len(level_sizes(20000, 20000, 512)) == 7
    assert level_sizes(100, 80, 512) == [(100, 80)]


def test_level_for_scale() -> None:
    assert level_for_scale(1.0, 5) == 0
    assert level_for_scale(4.0, 5) == 0
    assert level_for_scale(0.6, 5) == 0  # shrunk by less than 2x
    assert level_for_scale(0.5, 5) == 1
    assert level_for_scale(0.3, 5) == 1
    assert level_for_scale(0.01, 5) == 4  # the coarsest there is


def test_down2_is_area_downscale_with_odd_edges_replicated() -> None:
    img = textured(9, 7)
    got = down2(img)
    assert got.shape == (5, 4, 3)
    even = img[:8, :6]
    assert np.array_equal(got[:4, :3], cv2.resize(even, (3, 4), interpolation=cv2.INTER_AREA))
    padded = cv2.copyMakeBorder(img, 0, 1, 0, 1, cv2.BORDER_REPLICATE)
    assert np.array_equal(got, cv2.resize(padded, (4, 5), interpolation=cv2.INTER_AREA))


@pytest.mark.parametrize("size", [(2000, 3000), (2001, 2999)])
def test_tiles_equal_area_downscale_of_their_region(size: tuple[int, int]) -> None:
    h, w = size
    img = textured(h, w)
    pyr = Pyramid(img, tile=256, budget=64 * 2**20)
    pyr.build()
    assert [lv.shape[1::-1] for lv in (pyr._levels[k] for k in sorted(pyr._levels))] == \
        pyr.sizes[pyr.stored_from:]
    # level 1, tile (2, 1): exactly cv2.resize INTER_AREA of the same region of the image
    t = pyr.tile_pixels(1, 2, 1)
    assert t is not None and t.shape == (256, 256, 4)
    region = img[512:1024, 1024:1536]
    want = cv2.resize(region, (256, 256), interpolation=cv2.INTER_AREA)
    assert np.array_equal(t[..., 2::-1], want)
    assert (t[..., 3] == 255).all()
    # every level k is down2 of level k - 1 (so tiles agree with whole levels, edges too)
    whole = [img]
    for _ in range(1, pyr.levels):
        whole.append(down2(whole[-1]))
    for k in range(pyr.levels):
        cols, rows = pyr.tiles(k)
        for tx, ty in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows - 1)}:
            x0, y0, x1, y1 = pyr.tile_rect(k, tx, ty)
            tile = pyr.tile_pixels(k, tx, ty)
            assert tile is not None
            assert np.array_equal(tile[..., 2::-1], whole[k][y0:y1, x0:x1]), (k, tx, ty)
        # and within rounding of a direct area downscale of the full image
        if k and h % (1 << k) == 0 and w % (1 << k) == 0:
            direct = cv2.resize(img, whole[k].shape[1::-1], interpolation=cv2.INTER_AREA)
            assert np.abs(direct.astype(int) - whole[k]).max() <= k


def test_stored_levels_are_missing_until_built() -> None:
    img = textured(2000, 3000)
    pyr = Pyramid(img, tile=256, budget=16 * 2**20)
    assert pyr.stored_from >= 1
    top = pyr.levels - 1
    assert not pyr.ready(top) and pyr.tile_pixels(top, 0, 0) is None
    assert pyr.ready(0) and pyr.tile_pixels(0, 0, 0) is not None
    pyr.build()
    assert pyr.ready(top) and pyr.tile_pixels(top, 0, 0) is not None


def test_memory_stays_within_the_budget() -> None:
    img = textured(3000, 4000)
    budget = 8 * 2**20
    pyr = Pyramid(img, tile=256, budget=budget)
    pyr.build()
    assert pyr.planned_level_bytes() <= budget // 2
    for k in range(pyr.levels):
        cols, rows = pyr.tiles(k)
        for ty in range(rows):
            for tx in range(cols):
                assert pyr.tile_pixels(k, tx, ty) is not None
                assert pyr.nbytes <= budget
    assert pyr.cache.nbytes > budget // 4  # the cache was used, and evicted
    assert len(pyr.cache) < sum(c * r for c, r in (pyr.tiles(k) for k in range(pyr.levels)))


def test_quick_preview_of_a_jpeg(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = np.zeros((1600, 2400, 3), np.uint8)
    img[:, :1200] = (200, 40, 40)
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    small = quick_preview(path, 2400, 1600, max_side=700)
    assert small is not None and small.shape == (400, 600, 3)
    assert abs(int(small[200, 100, 0]) - 200) < 8  # RGB, not BGR
    assert quick_preview(path, 1600, 2400, max_side=700) is None  # not the size it should be
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), img)
    assert quick_preview(png, 2400, 1600) is None
