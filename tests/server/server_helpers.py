"""Helpers of the server tests (images, encodings)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def make_image(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A grey image with a red rectangle and a little noise (GrabCut needs some texture)."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 90, np.uint8)
    img += rng.integers(0, 12, img.shape, dtype=np.uint8)
    img[height // 5:height * 3 // 5, width // 3:width * 4 // 5] = (210, 40, 40)
    return img


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def b64_image(data: bytes, data_uri: bool = False) -> dict[str, str]:
    text = base64.b64encode(data).decode()
    return {"type": "base64", "value": f"data:image/png;base64,{text}" if data_uri else text}
