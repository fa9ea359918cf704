"""The low-peak decoder of large plain 8-bit images (issue 16).

Pillow holds 4 bytes a pixel while it decodes an RGB image, and ``load_image`` then copies
it out as 3 bytes a pixel: a 20000 x 20000 JPEG peaked at 2.8 GB. OpenCV decodes a file
straight into one RGB array made here (``cv2.imread``'s ``dst``, RGB output; where OpenCV
has no RGB output, BGR is turned in place in bands), so the peak is that array: 1.2 GB.
``app.core.images`` uses it for images over ``LOW_PEAK_PIXELS`` that it has already opened
with Pillow (header only: the format allow-list and the size limits come first) and found
plain: 8-bit RGB or grey, no transparency, no palette, a single frame, no TIFF orientation.
Everything else, and anything OpenCV does not decode cleanly, stays with Pillow.

The pixels are the same as Pillow's: the same libjpeg-turbo decodes JPEG (the default
integer DCT and fancy upsampling, so photos give bit-identical pixels); PNG, lossless WebP,
TIFF and BMP are exact; lossy WebP is decoded by libwebp in both (tests compare both paths
on real files of every format and orientation). The EXIF orientation is not OpenCV's: the
caller reads it as Pillow does and ``orient`` applies Pillow's transposition.

Truncation is never silently padded: a file whose end is not the format's end (JPEG's EOI
marker, PNG's IEND chunk, WebP's RIFF length) is left to Pillow, which names the problem,
and so is a decode that OpenCV refuses or stops early. One difference remains: a JPEG
whose entropy-coded data is corrupt but which ends properly is decoded by libjpeg with
warnings (as most viewers do), where Pillow refuses some such files ("broken data stream").
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

LOW_PEAK_PIXELS = 4096 * 4096
"""Images with more pixels than this (where the app opens them tiled) decode through
OpenCV when they are plain 8-bit; smaller ones keep Pillow's path."""

LOW_PEAK_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "TIFF", "BMP"})
"""The formats (Pillow names) that ``decode_plain`` takes."""

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11: no swap needed


def plain_8bit(fmt: str, head: bytes) -> bool:
    """Whether the file's own header (its first bytes) says 8 bits a sample in a layout
    that OpenCV turns into RGB as Pillow does (checked besides Pillow's mode): PNG grey or
    RGB at depth 8 and not interlaced (rows written once, in order), BMP 24-bit
    uncompressed; JPEG, WebP and TIFF are judged by the caller
    (Pillow's mode, bits and tags)."""
    if fmt == "PNG":
        return len(head) >= 29 and head[12:16] == b"IHDR" and head[24] == 8 \
            and head[25] in (0, 2) and head[28] == 0
    if fmt == "BMP":
        if len(head) < 34:
            return False
        bits, compression = struct.unpack_from("<HI", head, 28)
        return bits == 24 and compression == 0
    return fmt in LOW_PEAK_FORMATS


_TIFF_COMPRESSIONS = frozenset({1, 5, 8, 32773, 32946})  # none, LZW, deflate, PackBits


def plain_tiff(tags: Mapping[int, Any]) -> bool:
    """Whether a TIFF's tags (Pillow's ``tag_v2``) say grey (black is 0) or RGB, 8 bits a
    sample, interleaved, no extra samples, compressed losslessly (or not at all), and no
    orientation (Pillow turns TIFFs while it loads them, differently by mode and
    compression): what OpenCV and Pillow turn into the same pixels."""
    bits = tags.get(258, (1,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return (tags.get(262) in (1, 2) and tags.get(277, 1) in (1, 3)
            and all(b == 8 for b in bits) and tags.get(284, 1) == 1
            and tags.get(338) is None and tags.get(259, 1) in _TIFF_COMPRESSIONS
            and tags.get(274, 1) == 1)


def complete(fmt: str, head: bytes, tail: bytes, length: int) -> bool:
    """Whether a file of ``length`` bytes, starting with ``head`` and ending with ``tail``
    (12 bytes each, or all of a shorter file), ends where its format says (False: possibly
    truncated, leave it to Pillow). TIFF and BMP have no end mark: libtiff and OpenCV's BMP
    reader refuse short data themselves."""
    if fmt == "JPEG":
        return tail[-2:] == b"\xff\xd9"
    if fmt == "PNG":
        return tail[-12:] == _PNG_END
    if fmt == "WEBP":
        return len(head) >= 8 and 8 + struct.unpack_from("<I", head, 4)[0] <= length
    return fmt in ("TIFF", "BMP")


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's ``exif_transpose`` for EXIF ``orientation`` 1..8 (anything else: as is);
    flips are done in place, the turns (5..8) make the one new array they need."""
    if orientation == 2:
        return cv2.flip(pixels, 1, dst=pixels)
    if orientation == 3:
        return cv2.flip(pixels, -1, dst=pixels)
    if orientation == 4:
        return cv2.flip(pixels, 0, dst=pixels)
    if orientation == 5:
        return cv2.transpose(pixels)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        turned = cv2.transpose(pixels)
        return cv2.flip(turned, -1, dst=turned)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def decode_plain(fmt: str, source: Path | np.ndarray, size: tuple[int, int],
                 orientation: int) -> np.ndarray | None:
    """A file (``source`` a path) or a file's bytes (uint8) decoded to oriented RGB uint8
    (H, W, 3), or None when OpenCV cannot be trusted with it (not one of LOW_PEAK_FORMATS,
    possibly truncated, refused by OpenCV, or not the ``size`` (width, height, before
    orientation) that Pillow read from the header): the caller then decodes with Pillow.

    A file is decoded into an array made here (``cv2.imread``'s ``dst``): the peak is that
    array. Bytes go through ``cv2.imdecode``, whose Python binding copies its result once
    more (uploads to the server: still below Pillow's 7 bytes a pixel)."""
    if fmt not in LOW_PEAK_FORMATS:
        return None
    if isinstance(source, Path):
        pixels = _read_file(fmt, source, size)
    else:
        head, tail = bytes(source[:12]), bytes(source[-12:])
        pixels = _decode_bytes(source, size) if complete(fmt, head, tail, source.size) \
            else None
    if pixels is None:
        return None
    if _RGB is None:
        _bgr_to_rgb(pixels)
    return orient(pixels, orientation)


def _flags() -> int:
    return (_RGB if _RGB is not None else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION


def _decode_bytes(data: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    try:
        pixels = cv2.imdecode(data, _flags())
    except cv2.error:
        return None
    if pixels is None or pixels.shape != (size[1], size[0], 3) or pixels.dtype != np.uint8:
        return None
    return np.asarray(pixels)


def _read_file(fmt: str, path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """``cv2.imread`` into a new array. Its ``dst`` form reports no failure (the array
    comes back as it was): the first and last rows are marked before, and a row still
    marked after (a decode that stopped early, top-down or bottom-up) means None."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            length = f.seek(0, os.SEEK_END)
            f.seek(max(0, length - 12))
            tail = f.read(12)
    except OSError:
        return None
    if not complete(fmt, head, tail, length):
        return None
    width, height = size
    pixels = np.empty((height, width, 3), np.uint8)
    mark = np.random.default_rng(16).integers(0, 256, (width, 3), np.uint8)
    pixels[0] = mark
    pixels[-1] = mark
    try:
        out = cv2.imread(os.fspath(path), pixels, _flags())
    except (cv2.error, TypeError):  # another size than the header's; no dst (OpenCV < 4.10)
        return None
    if out is None or out.shape != pixels.shape or not np.shares_memory(out, pixels) \
            or np.array_equal(pixels[0], mark) or np.array_equal(pixels[-1], mark):
        return None
    return pixels


def _bgr_to_rgb(pixels: np.ndarray) -> None:
    """BGR to RGB in place, in bands (an in-place ``cvtColor`` copies its whole source)."""
    rows = max(1, (1 << 22) // max(1, pixels.shape[1]))
    for y0 in range(0, pixels.shape[0], rows):
        band = pixels[y0:y0 + rows]
        cv2.cvtColor(band, cv2.COLOR_BGR2RGB, dst=band)
