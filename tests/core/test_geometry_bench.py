"""Benchmarks of mask -> polygon on the click path: one object, and a speckled mask with about
a thousand parts (what SAM2 returns on texture or with random weights). No timed assertions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.core import geometry as G

pytestmark = pytest.mark.slow


def _speckled() -> np.ndarray:
    noise = np.random.default_rng(0).random((768, 1024)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.5) > 0.5


def _single() -> np.ndarray:
    m = np.zeros((768, 1024), np.uint8)
    cv2.ellipse(m, (500, 380), (300, 200), 20, 0, 360, 1, -1)
    cv2.circle(m, (500, 380), 60, 0, -1)
    return m.astype(bool)


def _salt_and_pepper() -> np.ndarray:
    return np.random.default_rng(1).random((768, 1024)) > 0.998


CASES = {"speckled": _speckled, "single": _single, "salt_and_pepper": _salt_and_pepper}


@pytest.mark.parametrize("case", CASES)
def test_bench_mask_to_geometry(benchmark, case: str):
    mask = CASES[case]()
    geom = benchmark.pedantic(G.mask_to_geometry, args=(mask,), rounds=3, iterations=1)
    assert geom is not None and geom.is_valid
    assert G.mask_iou(mask, G.geometry_to_mask(geom, *mask.shape)) >= 0.99


@pytest.mark.parametrize("case", CASES)
def test_bench_geometry_to_mask(benchmark, case: str):
    mask = CASES[case]()
    geom = G.mask_to_geometry(mask, tolerance=0)
    back = benchmark.pedantic(G.geometry_to_mask, args=(geom, *mask.shape), rounds=3, iterations=1)
    assert np.array_equal(back, mask)
