"""A small SAM2.1 and a short synthetic shot: the video tests here and the service's
propagation test (tests/predict/service/test_service_steps.py) use them."""

from __future__ import annotations

import numpy as np
import torch
from sam2.build_sam import build_sam2

from app.core.sequences import ArraySequence
from app.core.synthetic_video import synthesize

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
FRAMES = 5
H, W = 48, 64


def small_sam2(image_size: int = 256) -> torch.nn.Module:
    """SAM2.1 tiny with seeded random weights at a small input size (16 x 16 features)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam2(TINY_CONFIG, ckpt_path=None, device="cpu", mode="eval",
                           hydra_overrides_extra=[f"++model.image_size={image_size}"])
    return model


def shot() -> tuple[ArraySequence, list[np.ndarray]]:
    """A short synthetic shot of a disc on a noisy ground, and its true masks."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 80, (H, W, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:H, :W]
    disc = (xx - 30) ** 2 + (yy - 24) ** 2 < 12 ** 2
    image[disc] = (220, 170, 40)
    made = synthesize(image, disc, frames=FRAMES, seed=1, occluder=False)
    return ArraySequence(made.frames, name="shot"), made.masks
