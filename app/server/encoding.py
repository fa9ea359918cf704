"""Server-side codecs: image bytes -> RGB array (with limits), base64 / data URIs, and the
Roboflow-compatible mask outputs (polygons, COCO RLE, npz). Codecs the client also needs live
in ``app.core.wire``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from app.core.wire import rle_encode
from app.server.errors import HTTPProblem


def decode_base64(value: str) -> bytes:
    """Bytes of a base64 string, with or without a ``data:image/...;base64,`` prefix."""
    text = value.strip()
    if text.startswith("data:"):
        _, sep, text = text.partition(",")
        if not sep:
            raise HTTPProblem(400, "image data URI has no ',' before the data")
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    altchars = b"-_" if ("-" in text or "_" in text) else None  # the URL-safe alphabet
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPProblem(400, f"image value is not valid base64: {exc}") from exc


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """RGB uint8 (H, W, 3) from encoded image bytes, EXIF orientation applied.

    HTTPProblem 400 if the bytes are not a readable image, 413 if it has more than
    ``max_pixels`` pixels (checked from the header, before decoding)."""
    if not data:
        raise HTTPProblem(400, "image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise HTTPProblem(413, f"image is {w} x {h} = {w * h:,} pixels; this server's "
                                   f"limit is {max_pixels:,} (--max-image-pixels)")
        if w == 0 or h == 0:
            raise HTTPProblem(400, f"image has no pixels ({w} x {h})")
        with img, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            img.load()
            oriented = ImageOps.exif_transpose(img)
            if oriented.mode in ("RGBA", "LA", "PA") or "transparency" in oriented.info:
                rgba = np.asarray(oriented.convert("RGBA"), dtype=np.uint16)
                alpha = rgba[..., 3:4]
                rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
                return rgb.astype(np.uint8)
            return np.asarray(oriented.convert("RGB"), dtype=np.uint8).copy()
    except HTTPProblem:
        raise
    except Image.DecompressionBombError as exc:
        raise HTTPProblem(413, f"image is too large: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise HTTPProblem(400, "image could not be decoded: not an image, or a format "
                               "that cannot be read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise HTTPProblem(400, f"image could not be decoded: {exc}") from exc


def pixels_hash(image: np.ndarray) -> str:
    """sha256 of an image's shape and pixels: the embedding key of images sent as pixels."""
    digest = hashlib.sha256(f"{image.shape}|{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()


def roboflow_image_id(image: np.ndarray) -> str:
    """The image id Roboflow's server gives an image sent without one: md5 of the pixels."""
    return hashlib.md5(np.ascontiguousarray(image).tobytes()).hexdigest()[:12]


def mask_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Roboflow's "json" masks: the outer contours (cv2 RETR_EXTERNAL, CHAIN_APPROX_SIMPLE,
    holes dropped) as [[[x, y], ...], ...] in pixel-index coordinates; [[]] if empty."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return [[]]
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(int).tolist() for c in contours] or [[]]


def mask_rle(mask: np.ndarray) -> dict[str, object]:
    """Roboflow's "rle" masks: COCO compressed RLE {"size": [h, w], "counts": str}."""
    return rle_encode(mask)


def masks_npz(masks: np.ndarray, low_res_logits: np.ndarray) -> bytes:
    """Roboflow's "binary" answer: ``np.savez_compressed(masks=..., low_res_masks=...)``.

    masks: (N, H, W) bool (Roboflow sends float logits here; threshold either at > 0);
    low_res_masks: (N, 256, 256) float32 logits of the best candidate of each prompt."""
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=np.asarray(masks, dtype=bool),
                        low_res_masks=np.asarray(low_res_logits, dtype=np.float32))
    return buf.getvalue()
