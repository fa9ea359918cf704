"""The low-peak decoder of large plain 8-bit images (issue 16): the same pixels as Pillow's
path for every format and orientation it takes, Pillow for everything else, truncated files
still refused, and the decode holding one copy of the pixels."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from app.core import image_decode
from app.core.errors import ImageError
from app.core.image_decode import complete, orient, plain_8bit, plain_tiff
from app.core.images import decode_image, load_image


def _photo(w: int = 97, h: int = 61, seed: int = 0) -> np.ndarray:
    """Smooth colour fields plus noise (odd sides: chroma upsampling at the edges)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 8), max(2, w // 8), 3), np.uint8)
    smooth = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(smooth, rng.integers(0, 50, (h, w, 3), np.uint8))


class _Spy:
    """Counts the images that the low-peak decoder decoded (not None)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.decoded = 0
        self.calls = 0
        real = image_decode.decode_plain

        def spy(*args: Any) -> np.ndarray | None:
            self.calls += 1
            out = real(*args)
            self.decoded += out is not None
            return out

        monkeypatch.setattr(image_decode, "decode_plain", spy)


def _both_paths(monkeypatch: pytest.MonkeyPatch, read: Callable[[], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, _Spy]:
    """``read()`` through Pillow (threshold out of reach) and through the low-peak path
    (threshold 0), and the spy of the second."""
    monkeypatch.setattr(image_decode, "LOW_PEAK_PIXELS", 10**12)
    pillow = read()
    monkeypatch.setattr(image_decode, "LOW_PEAK_PIXELS", 0)
    spy = _Spy(monkeypatch)
    return pillow, read(), spy


_FORMATS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("jpeg-420", ".jpg", "RGB", {"quality": 90}),
    ("jpeg-444-q100", ".jpg", "RGB", {"quality": 100, "subsampling": 0}),
    ("jpeg-422-progressive", ".jpg", "RGB", {"quality": 75, "subsampling": 1,
                                             "progressive": True}),
    ("jpeg-grey", ".jpg", "L", {"quality": 85}),
    ("png-rgb", ".png", "RGB", {}),
    ("png-grey", ".png", "L", {"compress_level": 1}),
    ("webp-lossy", ".webp", "RGB", {"quality": 80}),
    ("webp-lossless", ".webp", "RGB", {"lossless": True}),
]


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("kind", "suffix", "mode", "options"), _FORMATS,
                         ids=[f[0] for f in _FORMATS])
def test_low_peak_path_gives_pillows_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            kind: str, suffix: str, mode: str,
                                            options: dict[str, Any], orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"{kind}-{orientation}{suffix}"
    Image.fromarray(_photo()).convert(mode).save(path, exif=exif, **options)
    data = path.read_bytes()
    for read in (lambda: load_image(path), lambda: decode_image(data, "upload")):
        pillow, fast, spy = _both_paths(monkeypatch, read)
        assert spy.decoded == 1, "the low-peak path was not taken"
        assert fast.dtype == np.uint8 and fast.flags.c_contiguous
        assert fast.shape == pillow.shape
        assert np.array_equal(fast, pillow)  # bit-identical, JPEG and lossy WebP included
        swapped = orientation in (5, 6, 7, 8)
        assert fast.shape[:2] == ((97, 61) if swapped else (61, 97))


@pytest.mark.parametrize(("name", "options"), [
    ("plain.tif", {}), ("lzw.tif", {"compression": "tiff_lzw"}),
    ("deflate.tif", {"compression": "tiff_adobe_deflate"}), ("plain.bmp", {}),
])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_tiff_and_bmp_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                          options: dict[str, Any], mode: str) -> None:
    path = tmp_path / name
    Image.fromarray(_photo()).convert(mode).save(path, **options)
    pillow, fast, spy = _both_paths(monkeypatch, lambda: load_image(path))
    # a grey BMP is a palette image to Pillow: it stays with Pillow
    assert spy.decoded == (0 if (name.endswith(".bmp") and mode == "L") else 1)
    assert np.array_equal(fast, pillow)


def _save(img: Image.Image, path: Path, **options: Any) -> Path:
    img.save(path, **options)
    return path


def test_images_that_are_not_plain_stay_with_pillow(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rgb = Image.fromarray(_photo())
    exif = Image.Exif()
    exif[0x0112] = 6
    files = [
        _save(rgb.convert("RGBA"), tmp_path / "rgba.png"),
        _save(rgb.convert("P"), tmp_path / "palette.png"),
        _save(rgb, tmp_path / "trns.png", transparency=(1, 2, 3)),
        _save(rgb.convert("I;16"), tmp_path / "grey16.png"),
        _save(rgb.convert("CMYK"), tmp_path / "cmyk.jpg"),
        _save(rgb.convert("1"), tmp_path / "bits.png"),
        _save(rgb, tmp_path / "turned.tif", exif=exif),  # Pillow turns TIFFs its own way
        _save(rgb, tmp_path / "anim.png", save_all=True,
              append_images=[rgb.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]),
    ]
    for path in files:
        pillow, other, spy = _both_paths(monkeypatch, lambda path=path: load_image(path))
        assert spy.decoded == 0, path.name
        assert np.array_equal(other, pillow), path.name


def test_small_images_keep_pillows_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    path = _save(Image.fromarray(_photo(300, 200)), tmp_path / "small.jpg")
    spy = _Spy(monkeypatch)
    assert load_image(path).shape == (200, 300, 3)
    assert spy.calls == 0 and image_decode.LOW_PEAK_PIXELS == 4096 * 4096


@pytest.mark.parametrize(("suffix", "options"), [
    (".jpg", {}), (".jpg", {"progressive": True}), (".png", {}), (".webp", {"quality": 80}),
])
def test_truncated_files_are_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           suffix: str, options: dict[str, Any]) -> None:
    whole = io.BytesIO()
    Image.fromarray(_photo(400, 300)).save(whole, Image.registered_extensions()[suffix],
                                           **options)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) * 2 // 3])
    monkeypatch.setattr(image_decode, "LOW_PEAK_PIXELS", 0)
    spy = _Spy(monkeypatch)
    with pytest.raises(ImageError, match=r"cut\.") as caught:
        load_image(path)
    assert "truncated" in str(caught.value) or "corrupt" in str(caught.value)
    assert spy.decoded == 0


def test_complete_reads_the_formats_end_marks() -> None:
    jpeg, png = b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d"
    assert complete("JPEG", jpeg, b" data \xff\xd9", 100)
    assert not complete("JPEG", jpeg, b" data \xff", 100)
    assert complete("PNG", png, b"\x00\x00\x00\x00IEND\xaeB`\x82", 100)
    assert not complete("PNG", png, b"\x00\x00\x00\x00IEND\xaeB`", 100)
    riff = b"RIFF" + (92).to_bytes(4, "little") + b"WEBP"
    assert complete("WEBP", riff, b"", 100) and not complete("WEBP", riff, b"", 99)
    assert complete("TIFF", b"II*\x00", b"", 10) and not complete("GIF", b"GIF89a", b";", 7)


def test_a_decode_that_opencv_leaves_unfinished_goes_to_pillow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cv2.imread(path, dst)`` gives ``dst`` back as it was when it fails (a file gone,
    a decoder error): the marked rows tell, and Pillow decodes (or names the problem)."""
    path = _save(Image.fromarray(_photo()), tmp_path / "a.jpg", quality=90)
    expected = load_image(path)
    monkeypatch.setattr(image_decode, "LOW_PEAK_PIXELS", 0)
    spy = _Spy(monkeypatch)
    real_imread = cv2.imread

    def stops_half_way(name: str, dst: np.ndarray, flags: int) -> np.ndarray:
        whole = real_imread(name, flags)
        dst[: len(dst) // 2] = whole[: len(dst) // 2]
        return dst

    monkeypatch.setattr(image_decode.cv2, "imread", stops_half_way)
    assert np.array_equal(load_image(path), expected)
    assert spy.calls == 1 and spy.decoded == 0
    monkeypatch.setattr(image_decode.cv2, "imread", lambda name, dst, flags: dst)
    assert np.array_equal(load_image(path), expected) and spy.decoded == 0


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_opencv_without_rgb_output_swaps_the_channels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """OpenCV before 4.11 has no IMREAD_COLOR_RGB: BGR is turned in place, in bands."""
    path = _save(Image.fromarray(_photo(300, 200)), tmp_path / f"a{suffix}")
    monkeypatch.setattr(image_decode, "_RGB", None)
    data = path.read_bytes()
    for read in (lambda: load_image(path), lambda: decode_image(data, "upload")):
        pillow, fast, spy = _both_paths(monkeypatch, read)
        assert spy.decoded == 1 and np.array_equal(fast, pillow)


def test_plain_8bit_and_plain_tiff_read_the_headers(tmp_path: Path) -> None:
    def head(img: Image.Image, fmt: str) -> bytes:
        out = io.BytesIO()
        img.save(out, fmt)
        return out.getvalue()[:64]

    rgb = Image.fromarray(_photo())
    assert plain_8bit("PNG", head(rgb, "PNG")) and plain_8bit("PNG", head(rgb.convert("L"),
                                                                          "PNG"))
    assert not plain_8bit("PNG", head(rgb.convert("RGBA"), "PNG"))
    assert not plain_8bit("PNG", head(rgb.convert("I;16"), "PNG"))
    png = head(rgb, "PNG")
    assert not plain_8bit("PNG", png[:28] + b"\x01" + png[29:])  # Adam7 (Pillow writes none)
    assert plain_8bit("BMP", head(rgb, "BMP")) and not plain_8bit("BMP", head(rgb.convert("P"),
                                                                              "BMP"))
    assert not plain_8bit("GIF", head(rgb, "GIF"))
    tags = {256: 6, 257: 4, 258: (8, 8, 8), 259: 5, 262: 2, 277: 3, 284: 1}
    assert plain_tiff(tags)
    for change in ({274: 6}, {258: (16, 16, 16)}, {262: 0}, {284: 2}, {338: (2,)}, {259: 7},
                   {277: 4}):
        assert not plain_tiff(tags | change), change


@pytest.mark.parametrize("orientation", range(0, 10))
def test_orient_is_pillows_transposition(orientation: int) -> None:
    pixels = _photo(7, 5)
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    img = Image.fromarray(pixels)
    expected = np.asarray(img.transpose(method) if method is not None else img)
    assert np.array_equal(orient(pixels.copy(), orientation), expected)


def test_the_decode_holds_one_copy_of_the_pixels(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's allocations (OpenCV's arrays included) at the peak: the one RGB array that
    OpenCV decodes the file into (not the file's bytes, no second array)."""
    path = tmp_path / "big.png"
    Image.fromarray(np.tile(_photo(500, 400), (2, 2, 1))).save(path, compress_level=1)
    monkeypatch.setattr(image_decode, "LOW_PEAK_PIXELS", 0)
    load_image(path)  # the first call imports Pillow's plugins: not the decode's memory
    spy = _Spy(monkeypatch)
    tracemalloc.start()
    try:
        pixels = load_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pixels.shape == (800, 1000, 3) and spy.decoded == 1
    assert peak <= pixels.nbytes + 500_000
