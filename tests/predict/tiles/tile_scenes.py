"""Synthetic scenes for the tiled and windowed predictor tests: a noisy orange disc on a noisy
blue-grey background, and the IoU of two masks."""

from __future__ import annotations

import cv2
import numpy as np


def scene(h: int, w: int, centre: tuple[int, int], radius: int,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, object mask) of an h x w scene with a disc at ``centre``."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((h, w), np.uint8)
    cv2.circle(obj, centre, radius, 1, -1)
    image = np.where(obj[..., None] > 0, (210, 120, 40), (60, 90, 140)).astype(np.int16)
    image += rng.integers(-25, 26, image.shape).astype(np.int16)
    return np.clip(image, 0, 255).astype(np.uint8), obj > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))
