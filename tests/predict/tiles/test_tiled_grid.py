"""The tile grid: tiles cover the image inside it, overlap as stated, every pixel has one
owner well inside it, and the blending weights favour the tile centres."""

from __future__ import annotations

import numpy as np
import pytest

from app.predict.tiles.grid import Tile, TileGrid


@pytest.mark.parametrize(("h", "w"), [(20000, 20000), (3000, 4000), (1000, 5000), (700, 900)])
def test_tiles_cover_the_image_and_stay_inside_it(h: int, w: int) -> None:
    grid = TileGrid(h, w, 1024, 256)
    cover = np.zeros(((h + 7) // 8, (w + 7) // 8), dtype=bool)
    for t in grid.tiles():
        assert 0 <= t.x0 < t.x1 <= w and 0 <= t.y0 < t.y1 <= h
        assert t.width == min(1024, w) and t.height == min(1024, h)
        cover[t.y0 // 8:(t.y1 + 7) // 8, t.x0 // 8:(t.x1 + 7) // 8] = True
    assert cover.all()
    rows, cols = grid.shape
    assert len(grid.tiles()) == rows * cols
    if w > 1024:  # neighbours overlap by at least the overlap (the last one by more)
        xs = sorted({t.x0 for t in grid.tiles()})
        assert all(b - a <= 768 for a, b in zip(xs, xs[1:], strict=False))


def test_the_owner_of_a_pixel_holds_it_at_least_half_the_overlap_inside() -> None:
    grid = TileGrid(5000, 7000, 1024, 256)
    rng = np.random.default_rng(1)
    for x, y in rng.uniform(0, [7000, 5000], size=(500, 2)):
        tile = grid.owner(x, y)
        assert tile.contains(x, y)
        left, top, right, bottom = grid.inner_sides(tile)
        if left:
            assert x - tile.x0 >= 127
        if right:
            assert tile.x1 - x >= 127
        if top:
            assert y - tile.y0 >= 127
        if bottom:
            assert tile.y1 - y >= 127
    xs, ys = rng.uniform(0, [7000, 5000], size=(200, 2)).T
    assert grid.owners_of(xs, ys) == {grid.owner(x, y) for x, y in zip(xs, ys, strict=True)}


def test_weights_rise_towards_the_centre_and_stay_whole_at_the_image_edge() -> None:
    grid = TileGrid(3000, 3000, 1024, 256)
    corner = grid.tile(0, 0)
    w = grid.weights(corner)
    assert w.shape == (1024, 1024)
    assert w[0, 0] == 1.0  # the image's corner: no neighbour to share with
    assert w[500, 1023] < 0.01 and w[500, 700] == 1.0
    middle = grid.tile(1, 1)
    wm = grid.weights(middle)
    assert wm[512, 512] == 1.0 and wm[0, 512] < 0.01 and wm[512, 0] < 0.01
    assert np.all(np.diff(wm[512, :128]) >= 0)  # rising from the edge


def test_a_box_is_decoded_in_the_tiles_it_covers_nearest_first() -> None:
    grid = TileGrid(4000, 4000, 1024, 256)
    tiles = grid.overlapping(700, 700, 1700, 900)
    assert tiles[0] == grid.owner(1200, 800)
    assert len(tiles) == len(set(tiles)) >= 2
    assert all(isinstance(t, Tile) for t in tiles)
    assert grid.nearest_first(3999, 3999)[0] == grid.owner(3999, 3999)


def test_a_bad_tiling_is_refused() -> None:
    with pytest.raises(ValueError, match="bad tiling"):
        TileGrid(100, 100, 512, 400)
    with pytest.raises(ValueError, match="empty"):
        TileGrid(0, 100)
