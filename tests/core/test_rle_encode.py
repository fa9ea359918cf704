"""``app.core.rle.encode`` gives pycocotools' own RLE of any (H, W) mask layout (its
transpose to column-major is cv2's, not numpy's)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from app.core import rle


def _reference(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))


@pytest.mark.parametrize("shape", [(768, 1024), (1, 7), (7, 1), (3, 5), (0, 4), (4, 0)])
def test_encode_is_pycocotools_for_every_layout(shape: tuple[int, int]) -> None:
    mask = np.random.default_rng(sum(shape)).random(shape) > 0.5
    want = _reference(mask)
    same = (mask, np.asfortranarray(mask), mask.astype(np.uint8), mask[:, ::-1][:, ::-1])
    for layout in same:
        assert rle.encode(layout) == want
    flipped = mask[:, ::-1]  # a view with a negative stride
    assert rle.encode(flipped) == _reference(flipped)


def test_encode_round_trips_a_shape() -> None:
    mask = np.zeros((300, 200), bool)
    mask[40:260, 30:90] = True
    mask[100:120, 50:60] = False
    got = rle.encode(mask)
    assert got["size"] == [300, 200]
    assert np.array_equal(rle.decode(got), mask)
    assert rle.decode(rle.encode_json(mask[:, ::-1])).tolist() == mask[:, ::-1].tolist()
