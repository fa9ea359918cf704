"""Reading images: oriented RGB uint8 pixels, sizes, hashes and folder listings.

Every image is shown and predicted on as RGB uint8 with its EXIF orientation applied, so all
coordinates refer to the oriented image. Anything that cannot be read raises ImageError with a
message naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from app.core import image_decode
from app.core.errors import ImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)
"""Lower-case suffixes (with the dot) that `list_images` picks up."""
EXPORT_MANIFEST = "maskloop-export.json"
"""The manifest every export writes (app.core.formats.output); `list_images` leaves out the
files it lists."""

MAX_PIXELS = 20_000 * 20_000
"""Largest image accepted (width x height); bigger ones are refused as possible decompression
bombs. Pillow's own limit (about 9,500 x 9,500 before a warning) is raised to match."""

Image.MAX_IMAGE_PIXELS = MAX_PIXELS

MAX_SIDE = 65_535
"""Longest side accepted, in pixels (JPEG's own limit)."""

MAX_ASPECT = 100
"""Largest ratio of the longer side to the shorter: SAM2 squeezes every image into a square,
so a 1 x 1,000,000 strip is no use to it, and its resize would need memory for the long side
times the model's resolution."""

IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
"""The only formats decoded (Pillow format names). Pillow reads many more, some through
external programs (EPS runs Ghostscript), so every decoder here names this list."""

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
)

_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
_HASH_CHUNK = 1 << 20
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                  IndexError, TypeError, KeyError, MemoryError)


def _fail(path: Path | str, problem: str) -> ImageError:
    return ImageError(f"cannot read image '{path}': {problem}")


def _decode_problem(exc: BaseException) -> str:
    """A short description of a Pillow decoding error."""
    text = str(exc).strip() or type(exc).__name__
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        detail = text.replace("image file is truncated", "").strip(" ()")
        return f"file is truncated ({detail})" if detail else "file is truncated"
    return f"file is corrupt or unsupported ({text})"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a folder, not a file")
    try:
        if path.stat().st_size == 0:
            raise _fail(path, "file is empty (0 bytes)")
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from exc


class ImageTooLargeError(ImageError):
    """An image refused for its size (pixels, a side or its aspect ratio), before decoding."""


def sniff_format(head: bytes) -> str | None:
    """The format (one of IMAGE_FORMATS) that the first bytes of a file announce, else None:
    the check for decoders that take any format they know (OpenCV's)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def check_dimensions(width: int, height: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why an image of ``width`` x ``height`` is refused (too many pixels, a side too long or
    too thin a strip), or None if it is accepted; memory for the image and the model's
    resize is then bounded by its pixels and its sides."""
    if width * height > max_pixels:
        return (f"image is too large ({width} x {height} = {width * height:,} pixels, the "
                f"limit is {max_pixels:,} pixels; possible decompression bomb)")
    long_side, short_side = max(width, height), min(width, height)
    if long_side > MAX_SIDE:
        return (f"image is too large ({width:,} x {height:,} pixels: its longest side may be "
                f"at most {MAX_SIDE:,})")
    if short_side > 0 and long_side > MAX_ASPECT * short_side:
        return (f"image is too thin ({width:,} x {height:,} pixels: one side may be at most "
                f"{MAX_ASPECT} times the other)")
    return None


def _open(path: Path) -> Image.Image:
    """Open lazily (header only), refusing non-images and oversized images."""
    _check_file(path)
    return _open_source(path, path, MAX_PIXELS)


def _open_source(source: Path | io.BytesIO, name: Path | str, max_pixels: int) -> Image.Image:
    """Open a file or bytes lazily (header only) as one of IMAGE_FORMATS; ImageError for
    anything else, ImageTooLargeError for too many pixels, too long a side or too thin."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"cannot read image '{name}': image is too large "
                                 f"(possible decompression bomb): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise _fail(name, "not an image, or a format that is not read (accepted: "
                          f"{', '.join(IMAGE_FORMATS)})") from exc
    except PermissionError as exc:
        raise _fail(name, "permission denied") from exc
    except _DECODE_ERRORS as exc:
        raise _fail(name, _decode_problem(exc)) from exc
    w, h = img.size
    problem = check_dimensions(w, h, max_pixels)
    if problem is not None:
        img.close()
        raise ImageTooLargeError(f"cannot read image '{name}': {problem}")
    if w == 0 or h == 0:
        img.close()
        raise _fail(name, f"image has no pixels ({w} x {h})")
    return img


def _scaled_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """One channel of any depth as uint8 (see `load_image` for the rules)."""
    if mode.startswith("I;16"):
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)  # 65535 -> 255
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = float(data[finite].min()), float(data[finite].max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = data * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = data
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = data / 257.0
    else:
        scaled = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
    scaled = np.where(finite, scaled, 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


_BAND_PIXELS = 1 << 22


def _rgb_pixels(img: Image.Image) -> np.ndarray:
    """An RGB image's pixels, copied band by band into one array: ``np.asarray`` of the
    whole image goes through ``tobytes``, whose chunks and their join are two more copies
    (20000 x 20000: a 4 GB peak instead of 2.8 GB, Pillow's 4 bytes a pixel included)."""
    w, h = img.size
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _BAND_PIXELS // max(1, w))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        out[y0:y1] = np.asarray(img.crop((0, y0, w, y1)), dtype=np.uint8)
    return out


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _scaled_to_uint8(np.asarray(img), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "RGB":
        return _rgb_pixels(img)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        return _composite_on_white(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The image as RGB uint8 (H, W, 3), EXIF orientation applied.

    Conversions: grayscale, 1-bit, palette, CMYK and YCbCr become RGB; transparency (RGBA,
    LA, palette with a transparent colour) is composited over white; 16-bit images are scaled
    linearly (0..65535 -> 0..255, value / 257 rounded), never clipped; 32-bit integer ("I")
    and float ("F") images keep values already in 0..255 (float 0..1 is scaled by 255), scale
    integers up to 65535 like 16-bit, and stretch anything else from its min..max. Raises
    ImageError naming the file for missing, empty, truncated, corrupt, non-image or too-large
    files (truncated images are never silently padded); only IMAGE_FORMATS are decoded, and
    images over MAX_PIXELS, MAX_SIDE or MAX_ASPECT are refused (ImageTooLargeError).
    """
    path = Path(path)
    return _decode(_open(path), path, path)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``load_image`` for an image file's bytes (an upload): the same formats, conversions
    and checks, with ``name`` in messages and a pixel limit of ``max_pixels``. Raises
    ImageTooLargeError for too many pixels, too long a side or too thin a strip (read from
    the header, before decoding), ImageError for anything else that cannot be read."""
    if not data:
        raise _fail(name, "file is empty (0 bytes)")
    return _decode(_open_source(io.BytesIO(data), name, max_pixels), name, data)


def _decode(img: Image.Image, name: Path | str, source: Path | bytes) -> np.ndarray:
    try:
        with img:
            pixels = _decode_low_peak(img, source)
            if pixels is not None:
                return pixels
            ImageFile.LOAD_TRUNCATED_IMAGES = False  # in case anything else switched it on
            img.load()
            # in place: no copy of the pixels when there is nothing to turn (a 20000 x
            # 20000 decode held 1.6 GB more for it)
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img)
    except ImageError:
        raise
    except MemoryError as exc:
        raise _fail(name, "not enough memory to decode it") from exc
    except _DECODE_ERRORS as exc:
        raise _fail(name, _decode_problem(exc)) from exc


def _decode_low_peak(img: Image.Image, source: Path | bytes) -> np.ndarray | None:
    """A large plain 8-bit image decoded by ``image_decode`` (one copy of the pixels at the
    peak), or None: Pillow decodes it (see ``image_decode`` for which images and why)."""
    fmt, (width, height) = img.format or "", img.size
    if width * height <= image_decode.LOW_PEAK_PIXELS or img.mode not in ("RGB", "L") \
            or "transparency" in img.info or getattr(img, "bits", 8) != 8:
        return None
    if fmt == "TIFF" and not image_decode.plain_tiff(dict(getattr(img, "tag_v2", {}))):
        return None
    if fmt not in image_decode.LOW_PEAK_FORMATS or getattr(img, "n_frames", 1) != 1:
        return None
    try:  # anything odd here: Pillow decodes it, and names the problem
        with source.open("rb") if isinstance(source, Path) else io.BytesIO(source) as f:
            head = f.read(64)
        if sniff_format(head) != fmt or not image_decode.plain_8bit(fmt, head):
            return None
        orientation = _orientation(img, source)
    except _DECODE_ERRORS:
        return None
    return image_decode.decode_plain(
        fmt, source if isinstance(source, Path) else np.frombuffer(source, np.uint8),
        (width, height), orientation)


def _png_exif_orientation(source: Path | bytes) -> int | None:
    """Orientation from a PNG's eXIf chunk, found by skipping chunk headers (no decoding)."""
    try:
        with source.open("rb") if isinstance(source, Path) else io.BytesIO(source) as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while True:
                header = f.read(8)
                if len(header) < 8:
                    return None
                length, kind = struct.unpack(">I4s", header)
                if kind == b"eXIf":
                    exif = Image.Exif()
                    exif.load(f.read(length))
                    return int(exif.get(_ORIENTATION, 1))
                if kind == b"IEND":
                    return None
                f.seek(length + 4, os.SEEK_CUR)  # data and CRC
    except (OSError, struct.error, SyntaxError, ValueError):
        return None


def _orientation(img: Image.Image, source: Path | bytes) -> int:
    """The EXIF orientation that Pillow's ``exif_transpose`` would apply after decoding,
    read from the header (and a PNG's chunk list) without decoding the pixels."""
    if img.format == "PNG" and "exif" not in img.info:
        # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels.
        found = _png_exif_orientation(source)
        if found is not None:
            return found
        exif = Image.Image.getexif(img)  # header chunks only (e.g. XMP)
    else:
        exif = img.getexif()
    try:
        return int(exif.get(_ORIENTATION, 1))
    except (TypeError, ValueError):
        return 1


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) of the oriented image, read from the header without decoding pixels."""
    path = Path(path)
    img = _open(path)
    with img:
        width, height = img.size
        if img.format == "TIFF":  # newer Pillow reports TIFF sizes already oriented
            tags = getattr(img, "tag_v2", {})
            width, height = int(tags.get(256, width)), int(tags.get(257, height))
        try:
            orientation = _orientation(img, path)
        except _DECODE_ERRORS:
            orientation = 1
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def content_hash(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of the file's bytes, read in 1 MiB chunks."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError as exc:
        raise _fail(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise _fail(path, "is a folder, not a file") from exc
    except OSError as exc:
        raise _fail(path, exc.strerror or str(exc)) from exc
    return digest.hexdigest()


def array_hash(image: np.ndarray) -> str:
    """sha256 hex digest of an array's shape, dtype and bytes (for images held in memory)."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.data)
    return digest.hexdigest()


def _natural_key(relative: Path) -> tuple[tuple[tuple[int, int | str], ...], ...]:
    """Sort key: folder by folder, digit runs compared as numbers (img2 before img10)."""
    return tuple(
        tuple((0, int(tok)) if tok.isdigit() else (1, tok)
              for tok in re.split(r"(\d+)", part.casefold()) if tok)
        for part in relative.parts
    )


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files (by IMAGE_EXTENSIONS, any case) in `folder`, in natural order.

    Hidden files and folders (names starting with ".") are skipped, and so are the files that
    a MaskLoop export wrote (listed in its ``EXPORT_MANIFEST``); symlinked folders are not
    followed. Returns paths under `folder`. Raises ImageError if `folder` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "folder not found"
        raise ImageError(f"cannot list images in '{root}': {problem}")
    found: list[Path] = []
    exported: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        here = Path(dirpath)
        if EXPORT_MANIFEST in filenames:
            exported |= _exported_files(here)
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(here / name)
    found = [p for p in found if p not in exported]
    return sorted(found, key=lambda p: _natural_key(p.relative_to(root)))


def _exported_files(folder: Path) -> set[Path]:
    """The files that a MaskLoop export in `folder` wrote (copied images, mask PNGs,
    overlays): they are never images of a project. An unreadable manifest lists nothing."""
    try:
        files = json.loads((folder / EXPORT_MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {folder / rel for rel in files if isinstance(rel, str)} if isinstance(files, list) \
        else set()
