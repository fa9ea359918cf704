"""Imports decode only the allowed image formats: an EPS hidden in a labelme file's imageData
or named as a mask PNG is refused without running Ghostscript (issue 12, item 2)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from app.core.errors import FormatError
from app.core.formats.labelme import read_embedded_image
from app.core.formats.masks import _read_png, _read_semantic
from app.core.formats.readers import b64_png_to_array, read_png

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
       b"newpath 0 0 moveto 8 0 lineto 8 8 lineto closepath fill\nshowpage\n%%EOF\n")


def test_an_eps_embedded_in_a_labelme_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"shapes": [], "imagePath": "a.eps", "imageHeight": 8,
                                "imageWidth": 8,
                                "imageData": base64.b64encode(EPS).decode()}))
    with pytest.raises(FormatError, match="imageData"):
        read_embedded_image(path)
    with pytest.raises(OSError):
        b64_png_to_array(base64.b64encode(EPS).decode())


def test_an_eps_named_as_a_mask_png_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    path.write_bytes(EPS)
    with pytest.raises(FormatError):
        _read_png(path)
    with pytest.raises(FormatError):
        _read_semantic(path)
    with pytest.raises(ValueError):
        read_png(path)
