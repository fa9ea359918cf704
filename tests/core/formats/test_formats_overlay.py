from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from formats_data import Sample
from shapely.geometry import box

from app.core.formats.overlay import render_overlay, write_overlays
from app.core.geometry import geometry_to_mask
from app.core.types import Instance


def test_render_tints_inside_and_leaves_far_pixels_alone():
    image = np.full((100, 120, 3), 128, dtype=np.uint8)
    inst = Instance(1, "cat", box(40, 40, 90, 80))
    out = render_overlay(image, [inst], {"cat": "#ff0000"}, alpha=0.5, captions=False)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[60, 65]) == (192, 64, 64)  # half red over grey
    assert (out[:30] == 128).all()  # far from the instance: untouched
    outlined = render_overlay(image, [inst], {"cat": "#ff0000"}, alpha=0.0, captions=False)
    assert (outlined[60, 65] == 128).all() and (outlined[40, 60] != 128).any()
    captioned = render_overlay(image, [inst], {"cat": "#ff0000"}, alpha=0.0, outline=0)
    assert (captioned[:40] != 128).any()  # the caption box sits above the object


def test_overlays_are_written_and_differ_where_masks_are(sample: Sample, tmp_path: Path):
    out = tmp_path / "ov"
    report = write_overlays(sample.items, sample.labels, out, image_root=sample.image_root,
                            image_format="png")
    assert report.images == 5 and not report.warnings
    for record, instances in sample.items:
        name = {"synthetic/a.png": "synthetic__a", "other/a.png": "other__a"}.get(
            record.path, Path(record.path).stem)
        overlay = cv2.imread(str(out / f"{name}.png"))
        original = cv2.imread(str(sample.image_root / record.path))
        assert overlay.shape == original.shape
        inside = np.zeros(overlay.shape[:2], dtype=bool)
        for inst in instances:
            inside |= geometry_to_mask(inst.geometry, record.height, record.width)
        changed = np.abs(overlay.astype(int) - original.astype(int)).sum(axis=2) > 0
        assert changed[inside].mean() > 0.9
        # pixels far from every instance are unchanged (PNG is lossless)
        far = cv2.dilate(inside.astype(np.uint8), np.ones((15, 15), np.uint8)) == 0
        for inst in instances:  # the caption sits just above the object's top-left corner
            x0, y0 = (int(v) for v in inst.geometry.bounds[:2])
            far[max(0, y0 - 40):y0 + 5, max(0, x0 - 5):x0 + 150] = False
        assert changed[far].mean() < 0.01


def test_jpeg_default_and_missing_image_warns(sample: Sample, tmp_path: Path):
    (sample.image_root / "grabcut" / "teddy.jpg").unlink()
    report = write_overlays(sample.items, sample.labels, tmp_path / "ov",
                            image_root=sample.image_root)
    assert report.images == 4
    assert any("teddy.jpg" in w for w in report.warnings)
    assert sorted(p.suffix for p in (tmp_path / "ov").iterdir()) == [".jpg"] * 4
