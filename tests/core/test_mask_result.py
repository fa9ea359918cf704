"""MaskResult's lazy full-resolution masks (issue 14): only the candidates asked for."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.types import MaskResult


def lazy(calls: list[int]) -> MaskResult:
    def upscale(i: int) -> np.ndarray:
        calls.append(i)
        return np.full((4, 5), i % 2 == 1)

    scores = np.array([0.2, 0.9, 0.5], np.float32)
    return MaskResult(None, scores, np.zeros((3, 256, 256), np.float32), size=(4, 5),
                      upscale=upscale, ready={1: np.ones((4, 5), bool)})


def test_lazy_masks_are_upscaled_once_and_only_when_asked() -> None:
    calls: list[int] = []
    result = lazy(calls)
    assert len(result) == 3 and result.best == 1 and result.size == (4, 5)
    assert result.mask(1).all() and calls == [] and result.made == {1}
    assert result.mask(-1) is result.mask(2) and calls == [2]
    with pytest.raises(IndexError):
        result.mask(3)
    masks = result.masks
    assert masks.shape == (3, 4, 5) and masks.dtype == np.bool_ and calls == [2, 0]
    assert [bool(m.any()) for m in masks] == [False, True, False]
    assert result.masks is masks and result.made == {0, 1, 2}


def test_eager_masks_and_bad_arguments() -> None:
    masks = np.zeros((2, 3, 4), bool)
    result = MaskResult(masks, np.zeros(2, np.float32), np.zeros((2, 256, 256), np.float32))
    assert result.masks is masks and result.mask(1) is not None and result.size == (3, 4)
    assert result.made == {0, 1}
    with pytest.raises(ValueError):
        MaskResult(masks.astype(np.uint8), np.zeros(2, np.float32),
                   np.zeros((2, 256, 256), np.float32))
    with pytest.raises(ValueError):
        MaskResult(None, np.zeros(2, np.float32), np.zeros((2, 256, 256), np.float32))
    with pytest.raises(ValueError):
        MaskResult(masks, np.zeros(3, np.float32), np.zeros((2, 256, 256), np.float32))
