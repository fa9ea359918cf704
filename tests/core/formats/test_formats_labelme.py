from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from formats_data import Sample, best_ious, has_holes
from PIL import Image

from app.core.errors import FormatError
from app.core.formats.labelme import export_labelme, read_labelme
from app.core.formats.readers import labelme_shape_to_mask
from app.core.geometry import geometry_to_mask

KEYS = {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"}
SHAPE_KEYS = {"label", "points", "group_id", "shape_type", "flags", "description", "mask"}


def test_one_json_per_image_beside_its_image(sample: Sample, tmp_path: Path):
    out = tmp_path / "lm"
    report = export_labelme(sample.items, sample.labels, out, image_root=sample.image_root)
    assert report.images == 5 and report.instances == 8 and not report.warnings
    jsons = sorted(p.name for p in out.glob("*.json"))
    assert jsons == ["106024.json", "fullmoon.json", "other__a.json", "synthetic__a.json",
                     "teddy.json"]
    for record, instances in sample.items:
        name = {"synthetic/a.png": "synthetic__a", "other/a.png": "other__a"}.get(
            record.path, Path(record.path).stem)
        data = json.loads((out / f"{name}.json").read_text())
        assert set(data) == KEYS
        assert data["imageData"] is None
        assert (data["imageWidth"], data["imageHeight"]) == (record.width, record.height)
        assert (out / data["imagePath"]).read_bytes() == \
            (sample.image_root / record.path).read_bytes()
        for shape in data["shapes"]:
            assert set(shape) == SHAPE_KEYS
        truth = sample.truth(record)
        # independently: polygons are exteriors; a mask shape is a base64 PNG of the box crop
        for (label, mask), inst in zip(truth, instances, strict=True):
            shapes = [s for s in data["shapes"] if s["label"] == label]
            if has_holes(inst.geometry):
                (shape,) = [s for s in shapes if s["shape_type"] == "mask"]
                (x1, y1), (x2, y2) = shape["points"]
                crop = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape["mask"]))))
                assert crop.dtype == np.uint8 and set(np.unique(crop)) <= {0, 1}
                full = np.zeros_like(mask)
                full[int(y1):int(y2) + 1, int(x1):int(x2) + 1] = crop.astype(bool)
                assert (full == mask).all()
        pair = [s for s in data["shapes"] if s["label"] == "pair"]
        if pair:
            assert len(pair) == 2 and pair[0]["group_id"] == pair[1]["group_id"] is not None


def test_read_back_keeps_every_instance(sample: Sample, tmp_path: Path):
    out = tmp_path / "lm"
    export_labelme(sample.items, sample.labels, out, image_root=sample.image_root)
    data = read_labelme(out)
    assert not data.warnings
    assert set(data.label_names()) == {"blob", "holey", "pair", "object"}
    by_name = {Path(r.path).name: r for r in data.images}
    for record, instances in sample.items:
        name = {"synthetic/a.png": "synthetic__a.png", "other/a.png": "other__a.png"}.get(
            record.path, Path(record.path).name)
        got = by_name[name]
        assert data.image_files[got.id] == (out / name).resolve()
        found = [(i.label, geometry_to_mask(i.geometry, got.height, got.width))
                 for i in data.instances if i.image_id == got.id]
        assert len(found) == len(instances)
        assert min(best_ious(sample.truth(record), found)) >= 0.99


def test_reference_mode_points_at_the_original(sample: Sample, tmp_path: Path):
    out = tmp_path / "lm"
    export_labelme(sample.items[:1], sample.labels, out, image_root=sample.image_root,
                   images="reference")
    data = json.loads((out / "a.json").read_text())
    assert (out / data["imagePath"]).resolve() == (sample.image_root / "synthetic/a.png").resolve()
    assert not (out / "a.png").exists()
    with pytest.raises(FormatError):
        export_labelme(sample.items, sample.labels, out, image_root=sample.image_root,
                       images="move")


def test_reads_rectangles_circles_and_windows_paths(tmp_path: Path):
    doc = {
        "version": "5.5.0", "flags": {}, "imagePath": "pics\\x.png", "imageData": None,
        "imageHeight": 100, "imageWidth": 120,
        "shapes": [
            {"label": "box", "points": [[50, 40], [10, 20]], "shape_type": "rectangle",
             "group_id": None, "flags": {}},
            {"label": "disc", "points": [[60, 50], [70, 50]], "shape_type": "circle",
             "group_id": None, "flags": {}},
            {"label": "dot", "points": [[5, 5]], "shape_type": "point", "group_id": None,
             "flags": {}},
        ],
    }
    (tmp_path / "x.json").write_text(json.dumps(doc))
    (tmp_path / "other.json").write_text(json.dumps({"not": "labelme"}))
    data = read_labelme(tmp_path)
    assert [r.path for r in data.images] == ["x.png"]
    assert [i.label for i in data.instances] == ["box", "disc"]
    # as labelme draws them (PIL, the outline's pixels included): pixels 10..50 x 20..40
    assert data.instances[0].geometry.bounds == (10, 20, 51, 41)
    assert data.instances[1].geometry.area == pytest.approx(np.pi * 10.5 ** 2, rel=0.03)
    drawn = labelme_shape_to_mask(100, 120, doc["shapes"][1]["points"], "circle")
    assert (geometry_to_mask(data.instances[1].geometry, 100, 120) == drawn).all()
    assert any("point" in w for w in data.warnings)
