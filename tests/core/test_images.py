"""Images: orientation, every pixel mode to RGB uint8, bad files, sizes, hashes, listings."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.core.errors import ImageError
from app.core.images import (
    IMAGE_EXTENSIONS,
    IMAGE_FORMATS,
    ImageTooLargeError,
    array_hash,
    check_dimensions,
    content_hash,
    decode_image,
    image_size,
    list_images,
    load_image,
    sniff_format,
)


def _rgb_pattern(w: int = 6, h: int = 4) -> np.ndarray:
    """A small image whose every pixel is distinct, so any flip or rotation shows."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx * 40, yy * 60, (xx + yy) * 10], axis=2).astype(np.uint8)


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _with_orientation(pixels: np.ndarray, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(Image.fromarray(pixels), path, exif=exif)


# -- orientation ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_exif_orientation_6_rotates_clockwise(tmp_path: Path, suffix: str):
    stored = _rgb_pattern(6, 4)
    kwargs = {"lossless": True} if suffix == ".webp" else {}
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = _save(Image.fromarray(stored), tmp_path / f"o6{suffix}", exif=exif, **kwargs)
    shown = load_image(path)
    assert shown.shape == (6, 4, 3) and shown.dtype == np.uint8
    assert np.array_equal(shown, np.rot90(stored, k=-1))
    assert image_size(path) == (4, 6)  # (width, height) of the oriented image


def test_jpeg_orientation_and_size(tmp_path: Path):
    stored = np.zeros((40, 80, 3), dtype=np.uint8)
    stored[:, :40] = (250, 0, 0)  # left half red, right half black
    path = _with_orientation(stored, tmp_path / "photo.jpg", 8)  # rotate 90 CCW to display
    shown = load_image(path)
    assert shown.shape == (80, 40, 3)
    assert shown[70, 20, 0] > 200 and shown[10, 20, 0] < 50  # red half now at the bottom
    assert image_size(path) == (40, 80)
    mirrored = _with_orientation(stored, tmp_path / "mirror.jpg", 2)
    assert image_size(mirrored) == (80, 40)
    assert load_image(mirrored)[20, 70, 0] > 200  # red half now on the right


# -- pixel modes ----------------------------------------------------------------------------


def test_rgb_png_is_exact(tmp_path: Path):
    pixels = _rgb_pattern()
    path = _save(Image.fromarray(pixels), tmp_path / "rgb.png")
    assert np.array_equal(load_image(path), pixels)
    assert image_size(path) == (6, 4)


def test_grayscale_and_one_bit(tmp_path: Path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = load_image(_save(Image.fromarray(gray, "L"), tmp_path / "gray.png"))
    assert out.shape == (3, 4, 3) and np.array_equal(out, np.repeat(gray[..., None], 3, 2))
    bits = Image.fromarray(gray > 100).convert("1")
    out = load_image(_save(bits, tmp_path / "bits.png"))
    assert np.array_equal(out[..., 0], np.where(gray > 100, 255, 0))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    values = np.array([[0, 257, 1000], [32768, 65280, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode == "I;16"  # Pillow really reads it back as 16-bit
    out = load_image(path)
    expected = np.array([[0, 1, 4], [128, 254, 255]], dtype=np.uint8)  # round(v / 257)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


def test_palette_with_and_without_transparency(tmp_path: Path):
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    out = load_image(_save(img, tmp_path / "pal.png"))
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 0].tolist() == [0, 0, 255]
    out = load_image(_save(img, tmp_path / "pal_t.png", transparency=1))
    assert out[0, 1].tolist() == [255, 255, 255]  # the transparent colour becomes white
    assert out[0, 0].tolist() == [255, 0, 0]


def test_rgba_and_la_are_composited_on_white(tmp_path: Path):
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    out = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    assert out.tolist() == [[[200, 100, 0], [255, 255, 255], [127, 127, 127]]]
    la = Image.fromarray(np.array([[0, 0]], dtype=np.uint8), "L")
    la.putalpha(Image.fromarray(np.array([[255, 0]], dtype=np.uint8), "L"))
    out = load_image(_save(la, tmp_path / "la.png"))
    assert out.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_cmyk_jpeg(tmp_path: Path):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_save(img, tmp_path / "cmyk.jpg", quality=100))
    assert out.shape == (8, 8, 3)
    assert out[4, 4, 0] > 240 and out[4, 4, 1] < 15 and out[4, 4, 2] < 15


def test_float_and_int32_tiffs(tmp_path: Path):
    unit = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = load_image(_save(Image.fromarray(unit, "F"), tmp_path / "unit.tif"))
    assert out[..., 1].tolist() == [[0, 128, 255]]
    wide = np.array([[-10.0, 0.0, 30.0]], dtype=np.float32)
    out = load_image(_save(Image.fromarray(wide, "F"), tmp_path / "wide.tif"))
    assert out[..., 0].tolist() == [[0, 64, 255]]  # stretched from min..max
    ints = np.array([[0, 65535, 257 * 100]], dtype=np.int32)
    out = load_image(_save(Image.fromarray(ints, "I"), tmp_path / "ints.tif"))
    assert out[..., 0].tolist() == [[0, 255, 100]]


def test_unicode_path(tmp_path: Path):
    pixels = _rgb_pattern()
    path = _save(Image.fromarray(pixels), tmp_path / "données" / "画像 ü.png")
    assert np.array_equal(load_image(path), pixels)
    assert image_size(str(path)) == (6, 4)
    assert content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert list_images(tmp_path) == [path]


# -- bad files ------------------------------------------------------------------------------


def _jpeg_bytes(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return _save(Image.fromarray(noise), tmp_path / "whole.jpg", quality=95).read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_refused(tmp_path: Path, keep: float):
    data = _jpeg_bytes(tmp_path)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageError, match=r"cannot read image '.*cut\.jpg': file is truncated"):
        load_image(path)


def test_truncated_png_is_refused(tmp_path: Path):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(noise), tmp_path / "whole.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png"):
        load_image(path)


def test_corrupt_bytes_in_the_middle(tmp_path: Path):
    data = bytearray(_save(Image.fromarray(_rgb_pattern(32, 32)), tmp_path / "ok.png")
                     .read_bytes())
    data[60:80] = b"\x00" * 20  # inside the image data: the CRC no longer matches
    path = tmp_path / "broken.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"broken\.png"):
        load_image(path)


def test_empty_missing_text_and_folder(tmp_path: Path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"'.*empty\.jpg': file is empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(ImageError, match=r"'.*nope\.png': file not found"):
        load_image(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match=r"'.*notes\.png': not an image"):
        load_image(text)
    with pytest.raises(ImageError, match="not an image"):
        image_size(text)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)
    with pytest.raises(ImageError, match="file not found"):
        content_hash(tmp_path / "nope.png")


def _png_claiming(tmp_path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width x height (its pixel data does not match)."""
    data = bytearray(_save(Image.new("L", (1, 1)), tmp_path / "tiny.png").read_bytes())
    ihdr = bytes(data[12:29])  # b"IHDR" + 13 bytes
    ihdr = ihdr[:4] + struct.pack(">II", width, height) + ihdr[12:]
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    path = tmp_path / f"claims_{width}x{height}.png"
    path.write_bytes(bytes(data))
    return path


def test_decompression_bombs_are_refused_but_big_images_allowed(tmp_path: Path):
    assert image_size(_png_claiming(tmp_path, 8000, 8000)) == (8000, 8000)
    assert image_size(_png_claiming(tmp_path, 20000, 20000)) == (20000, 20000)
    with pytest.raises(ImageError, match=r"claims_20001x20000\.png': image is too large"):
        image_size(_png_claiming(tmp_path, 20001, 20000))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(_png_claiming(tmp_path, 60000, 60000))
    with pytest.raises(ImageError, match=r"claims_8000x8000\.png': file is"):
        load_image(_png_claiming(tmp_path, 8000, 8000))  # header fine, data missing


def test_other_images_still_load_after_a_bad_one(tmp_path: Path):
    (tmp_path / "a1.png").write_bytes(b"garbage")
    good = _save(Image.fromarray(_rgb_pattern()), tmp_path / "a2.png")
    results = {}
    for path in list_images(tmp_path):
        try:
            results[path.name] = load_image(path).shape
        except ImageError as exc:
            results[path.name] = str(exc)
    assert "a1.png" in results["a1.png"] and results[good.name] == (4, 6, 3)


# -- bytes, formats, sides ------------------------------------------------------------------


def test_decode_image_is_load_image_for_bytes(tmp_path: Path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (4, 1))  # 16-bit grayscale
    for pixels, name in [(_rgb_pattern(), "rgb.png"), (ramp, "ramp16.png")]:
        path = _save(Image.fromarray(pixels), tmp_path / name)
        assert np.array_equal(decode_image(path.read_bytes(), name), load_image(path))
    assert decode_image((tmp_path / "ramp16.png").read_bytes(), "x").mean() == pytest.approx(127.5)
    with pytest.raises(ImageError, match="'upload': file is empty"):
        decode_image(b"", "upload")
    with pytest.raises(ImageTooLargeError, match="limit is 10 pixels"):
        decode_image((tmp_path / "rgb.png").read_bytes(), "small", max_pixels=10)


@pytest.mark.parametrize("fmt, kwargs", [("EPS", {}), ("TGA", {}), ("PCX", {}), ("ICO", {}),
                                         ("PPM", {})])
def test_only_the_allowed_formats_are_decoded(tmp_path: Path, fmt: str, kwargs: dict):
    """EPS would run Ghostscript; Pillow's other readers are not needed either."""
    path = tmp_path / f"image.{fmt.lower()}"
    if fmt == "EPS":
        path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    else:
        Image.fromarray(_rgb_pattern(16, 16)).save(path, format=fmt, **kwargs)
    with pytest.raises(ImageError, match="not an image, or a format that is not read"):
        load_image(path)
    with pytest.raises(ImageError, match="accepted: JPEG, PNG"):
        decode_image(path.read_bytes(), path.name)
    assert fmt not in IMAGE_FORMATS and sniff_format(path.read_bytes()[:16]) is None


def test_gif_and_the_sniffed_formats(tmp_path: Path):
    path = _save(Image.fromarray(_rgb_pattern()).convert("P"), tmp_path / "a.gif")
    assert load_image(path).shape == (4, 6, 3)
    for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"):
        out = tmp_path / f"a.{fmt.lower()}"
        Image.fromarray(_rgb_pattern()).save(out, format=fmt)
        assert sniff_format(out.read_bytes()[:16]) == fmt


@pytest.mark.parametrize("width, height, problem", [
    (1, 1_000_000, "longest side may be at most 65,535"),
    (60_000, 1, "one side may be at most 100 times the other"),
    (99, 10_000, "one side may be at most 100 times the other"),
])
def test_too_long_or_too_thin_images_are_refused_before_decoding(
        tmp_path: Path, width: int, height: int, problem: str):
    """Few pixels, but sides that make the model's resize need gigabytes."""
    path = _png_claiming(tmp_path, width, height)
    with pytest.raises(ImageTooLargeError, match=problem):
        image_size(path)
    with pytest.raises(ImageTooLargeError, match=problem):
        decode_image(path.read_bytes(), "strip.png")
    assert check_dimensions(100, 10_000) is None and check_dimensions(6000, 4000) is None


# -- hashes and listings --------------------------------------------------------------------


def test_content_hash_streams_big_files(tmp_path: Path):
    data = np.random.default_rng(2).integers(0, 256, 3 * (1 << 20) + 17, dtype=np.uint8)
    path = tmp_path / "big.bin"
    path.write_bytes(data.tobytes())
    assert content_hash(path) == hashlib.sha256(data.tobytes()).hexdigest()


def test_array_hash():
    a = _rgb_pattern()
    assert array_hash(a) == array_hash(a.copy())
    assert array_hash(a) == array_hash(np.asfortranarray(a))  # same pixels, other layout
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert array_hash(a) != array_hash(b)
    assert array_hash(a) != array_hash(a.reshape(6, 4, 3))  # same bytes, other shape
    assert len(array_hash(a)) == 64


def test_list_images_natural_order_and_filters(tmp_path: Path):
    names = ["img10.png", "img2.JPG", "img1.jpeg", "b/img3.tif", "b/c/x.webp", "a.bmp",
             "notes.txt", ".hidden.png", ".cache/img0.png", "b/img20.tiff"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listed = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert listed == ["a.bmp", "b/c/x.webp", "b/img3.tif", "b/img20.tiff",
                      "img1.jpeg", "img2.JPG", "img10.png"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.bmp", "img1.jpeg", "img2.JPG", "img10.png"]
    assert {".jpg", ".png", ".tif", ".webp"} <= IMAGE_EXTENSIONS
    with pytest.raises(ImageError, match="folder not found"):
        list_images(tmp_path / "missing")
