"""Fixtures of the hosted-API tests: each fake API on 127.0.0.1 and a small test image."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes import FakeFal, FakeRoboflow, FakeSegmind  # noqa: E402

KEY = "secret-key-123"


@pytest.fixture
def image() -> np.ndarray:
    """96 x 128 RGB: dark grey with two bright squares (the "objects" of text prompts)."""
    img = np.full((96, 128, 3), 40, dtype=np.uint8)
    img[10:30, 10:40] = 250
    img[50:80, 70:110] = 230
    return img


@pytest.fixture
def roboflow() -> Iterator[FakeRoboflow]:
    fake = FakeRoboflow(KEY)
    yield fake
    fake.close()


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    fake = FakeFal(KEY)
    yield fake
    fake.close()


@pytest.fixture
def segmind() -> Iterator[FakeSegmind]:
    fake = FakeSegmind(KEY)
    yield fake
    fake.close()
