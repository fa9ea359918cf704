"""The wire format's array codecs: masks (COCO RLE, 1-bit PNG) and low-res logits.

Logit codecs (``encode_logits``) for the 3 x 256 x 256 candidates: "q8z" int8 in steps of 1/4
(range +-31.75; SAM2 logits are clamped to +-32), then zlib: the default, error <= 0.125, far
below the logit scale of a trained SAM2 (the sign makes the mask). Measured: smooth object
logits 11-12 KB (q8z) vs 15-16 KB "f16z" (zlib of float16) vs 384 KiB "f16" (raw float16);
noisy logits 5 KB (q8z) vs 335 KB (f16z), since float16 mantissas barely compress. The server
itself keeps float16 logits for refinement by reference, so q8z only affects what it sends.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

from app.core.errors import WireError

MASK_CODECS = ("rle", "png")
LOGIT_CODECS = ("q8z", "f16z", "f16")
Q8_STEP = 0.25


# -- masks ----------------------------------------------------------------------------------


def png_encode(mask: np.ndarray) -> bytes:
    """A (H, W) bool mask as a 1-bit PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_decode(data: bytes) -> np.ndarray:
    """(H, W) bool mask from a PNG (any non-zero pixel is inside)."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as img:
            return np.asarray(img.convert("L")) > 0
    except (OSError, ValueError) as exc:
        raise WireError(f"bad PNG mask: {exc}") from exc


# -- logits ---------------------------------------------------------------------------------


def encode_logits(logits: np.ndarray, codec: str = "q8z") -> bytes:
    """(N, 256, 256) float logits as bytes (see the module docstring for the codecs)."""
    a = np.asarray(logits, dtype=np.float32)
    if codec == "q8z":
        q = np.clip(np.rint(a / Q8_STEP), -127, 127).astype(np.int8)
        return zlib.compress(q.tobytes(), 6)
    if codec == "f16z":
        return zlib.compress(a.astype(np.float16).tobytes(), 6)
    if codec == "f16":
        return a.astype(np.float16).tobytes()
    raise WireError(f"unknown logits codec {codec!r}; use one of {', '.join(LOGIT_CODECS)}")


def decode_logits(data: bytes, codec: str, shape: Sequence[int]) -> np.ndarray:
    """float32 logits of ``shape`` from ``encode_logits``'s bytes (never inflating more than
    ``shape`` needs: a few KB of zlib cannot become gigabytes)."""
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape))
    try:
        if codec == "q8z":
            raw = _inflate(data, count)
            a = np.frombuffer(raw, dtype=np.int8).astype(np.float32) * Q8_STEP
        elif codec == "f16z":
            a = np.frombuffer(_inflate(data, 2 * count), dtype=np.float16).astype(np.float32)
        elif codec == "f16":
            a = np.frombuffer(data, dtype=np.float16).astype(np.float32)
        else:
            raise WireError(f"unknown logits codec {codec!r}")
        return a.reshape(shape)
    except (zlib.error, ValueError) as exc:
        raise WireError(f"bad {codec} logits for shape {shape}: {exc}") from exc


def _inflate(data: bytes, nbytes: int) -> bytes:
    """zlib-decompress at most ``nbytes`` (ValueError if the data holds more)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, nbytes)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError(f"the data does not inflate to exactly {nbytes:,} bytes")
    return out
