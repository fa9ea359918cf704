"""Helpers of the cluster tests (imported by bare name, as the other test folders do)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_images(folder: Path, names: list[str], seed: int = 0) -> list[Path]:
    """Small images of a bright rectangle on noise, one per name (PNG or JPEG by suffix)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, name in enumerate(names):
        pixels = rng.integers(0, 60, (48 + 8 * i, 64, 3), dtype=np.uint8)
        pixels[10:30, 12 + i:40 + i] = (220, 180, 40)
        Image.fromarray(pixels).save(folder / name)
        paths.append(folder / name)
    return paths
