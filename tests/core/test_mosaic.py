"""Mosaic building: photos and their masks placed together on a grid, upsampled on request,
and clear errors for a bad grid or too many photos."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.mosaic import FILL, MosaicError, build_mosaic, parse_grid


def photo(h: int, w: int, value: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.full((h, w, 3), value, np.uint8)
    labels = np.zeros((h, w), np.uint8)
    labels[h // 4:h // 2, w // 4:w // 2] = 255
    labels[h // 2, w // 4:w // 2] = 128
    return image, labels


def test_parse_grid() -> None:
    assert parse_grid("10x5") == (10, 5)
    assert parse_grid(" 3X2 ") == (3, 2)
    for bad in ("10", "0x3", "ax2", "3x"):
        with pytest.raises(MosaicError, match="COLSxROWS"):
            parse_grid(bad)


def test_photos_and_masks_are_placed_together_on_the_grid() -> None:
    photos = [("a", *photo(30, 40, 10)), ("b", *photo(20, 50, 20)), ("c", *photo(30, 30, 30))]
    m = build_mosaic(photos, cols=2, rows=2)
    assert m.image.shape == (60, 100, 3)  # cells of the largest photo: 50 x 30
    assert m.grid == (2, 2) and m.upsample == 1
    for i, (name, image, labels) in enumerate(photos):
        p = m.placements[i]
        assert p.name == name
        assert np.array_equal(m.image[p.y0:p.y1, p.x0:p.x1], image)
        assert np.array_equal(m.labels[i], labels)
        placed = m.object_labels(i)
        assert placed.shape == m.image.shape[:2]
        assert np.array_equal(placed[p.y0:p.y1, p.x0:p.x1], labels)
        assert placed.sum() == labels.sum()
    c = m.placements[2]
    assert (c.x0, c.y0) == (10, 30)  # row 2, centred in its 50-wide cell
    assert tuple(m.image[59, 99]) == FILL  # the empty fourth cell


def test_upsampling_keeps_the_ignored_band() -> None:
    image, labels = photo(20, 24, 50)
    m = build_mosaic([("a", image, labels)], 1, 1, upsample=2)
    assert m.image.shape == (40, 48, 3)
    assert set(np.unique(m.labels[0])) == {0, 128, 255}
    assert (m.labels[0] == 255).sum() == 4 * (labels == 255).sum()


def test_bad_mosaics_are_refused() -> None:
    photos = [("a", *photo(10, 10, 1)), ("b", *photo(10, 10, 2))]
    with pytest.raises(MosaicError, match="2 photos do not fit a 1x1 grid"):
        build_mosaic(photos, 1, 1)
    image, labels = photo(10, 10, 1)
    with pytest.raises(MosaicError, match="a: mask is"):
        build_mosaic([("a", image, labels[:5])], 1, 1)
    with pytest.raises(MosaicError, match="upsample"):
        build_mosaic(photos, 2, 1, upsample=0)
