"""Server-side codecs: image bytes -> RGB array (with limits), base64 / data URIs, and the
Roboflow-compatible mask outputs (polygons, COCO RLE, npz). Codecs the client also needs live
in ``app.wire.messages``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io

import cv2
import numpy as np

from app.core import images, rle
from app.core.errors import ImageError
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
    """RGB uint8 (H, W, 3) from encoded image bytes, decoded exactly as the app decodes a
    file (``app.core.images.decode_image``: JPEG, PNG, WebP, BMP, TIFF or GIF only, EXIF
    orientation applied, 16-bit scaled, transparency over white).

    HTTPProblem 400 if the bytes are not a readable image of those formats, 413 if it has
    more than ``max_pixels`` pixels, a side over ``MAX_SIDE`` or one side more than
    ``MAX_ASPECT`` times the other (checked from the header, before decoding)."""
    try:
        return images.decode_image(data, "upload", max_pixels)
    except images.ImageTooLargeError as exc:
        raise HTTPProblem(413, f"{_problem(exc)}; this server takes at most {max_pixels:,} "
                               f"pixels (--max-image-pixels), sides up to {images.MAX_SIDE:,} "
                               f"and one side at most {images.MAX_ASPECT} times the other"
                          ) from exc
    except ImageError as exc:
        raise HTTPProblem(400, f"image could not be decoded: {_problem(exc)}") from exc


def _problem(exc: ImageError) -> str:
    """The problem of a core image error, without its "cannot read image 'upload': "."""
    return str(exc).partition("': ")[2] or str(exc)


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
    return rle.encode_json(mask)


def masks_npz(masks: np.ndarray, low_res_logits: np.ndarray) -> bytes:
    """Roboflow's "binary" answer: ``np.savez_compressed(masks=..., low_res_masks=...)``.

    masks: (N, H, W) bool (Roboflow sends float logits here; threshold either at > 0);
    low_res_masks: (N, 256, 256) float32 logits of the best candidate of each prompt."""
    buf = io.BytesIO()
    np.savez_compressed(buf, masks=np.asarray(masks, dtype=bool),
                        low_res_masks=np.asarray(low_res_logits, dtype=np.float32))
    return buf.getvalue()
