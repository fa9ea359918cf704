from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from formats_data import Sample, best_ious
from shapely.geometry import MultiPolygon, Point, box

from app.core.errors import Cancelled, FormatError
from app.core.formats.bridges import bridged_path, even_odd_geometry
from app.core.formats.yolo import export_yolo, read_yolo, split_indices
from app.core.geometry import geometry_to_mask
from app.core.jobs import CancelToken

EXPECTED_NAMES = {"synthetic/a.png": "synthetic__a.png", "other/a.png": "other__a.png",
                  "grabcut/106024.jpg": "106024.jpg", "grabcut/teddy.jpg": "teddy.jpg",
                  "grabcut/fullmoon.png": "fullmoon.png"}


def fill_line(values: list[float], width: int, height: int, scale: int = 4) -> np.ndarray:
    """Rasterise one YOLO polygon independently: cv2.fillPoly at 4x resolution (pixel centres
    at (i + 0.5) / 4 in image pixels), then a majority vote per image pixel."""
    pts = np.asarray(values, dtype=float).reshape(-1, 2) * [width * scale, height * scale]
    canvas = np.zeros((height * scale, width * scale), dtype=np.uint8)
    fixed = np.round((pts - 0.5) * 256).astype(np.int32)
    cv2.fillPoly(canvas, [fixed], 1, lineType=cv2.LINE_8, shift=8)
    return canvas.reshape(height, scale, width, scale).mean(axis=(1, 3)) >= 0.5


def parse_labels(path: Path, names: dict[int, str], width: int,
                 height: int) -> list[tuple[str, np.ndarray]]:
    found = []
    for line in path.read_text().splitlines():
        fields = line.split()
        coords = fields[1:]
        assert len(coords) % 2 == 0 and len(coords) >= 6
        assert all(len(c.split(".")[1]) == 6 for c in coords)  # 6 decimals
        values = [float(c) for c in coords]
        assert all(0.0 <= v <= 1.0 for v in values)
        found.append((names[int(fields[0])], fill_line(values, width, height)))
    return found


def test_layout_yaml_and_labels_parsed_independently(sample: Sample, tmp_path: Path):
    out = tmp_path / "yolo"
    report = export_yolo(sample.items, sample.labels, out, image_root=sample.image_root,
                         val_fraction=0.4, seed=3)
    assert report.images == 5 and report.instances == 8 and not report.warnings

    data = yaml.safe_load((out / "data.yaml").read_text())
    assert "path" not in data  # the root is the yaml's folder: the export can be moved
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == {0: "blob", 1: "holey", 2: "pair", 3: "object"}

    placed = {p.name: p.parent.name for p in (out / "images").rglob("*") if p.is_file()}
    assert set(placed) == set(EXPECTED_NAMES.values())
    assert sorted(placed.values()).count("val") == 2
    for record, instances in sample.items:
        name = EXPECTED_NAMES[record.path]
        split = placed[name]
        copied = out / "images" / split / name
        assert copied.read_bytes() == (sample.image_root / record.path).read_bytes()
        label_file = out / "labels" / split / (Path(name).stem + ".txt")
        found = parse_labels(label_file, data["names"], record.width, record.height)
        assert len(found) == len(instances)  # one line per object, holes and parts included
        assert min(best_ious(sample.truth(record), found)) >= 0.98


def test_no_val_split_points_val_at_train(sample: Sample, tmp_path: Path):
    out = tmp_path / "yolo"
    export_yolo(sample.items, sample.labels, out, image_root=sample.image_root, copy_mode="symlink")
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["val"] == "images/train"
    assert not (out / "images" / "val").exists()
    assert all(p.is_symlink() for p in (out / "images" / "train").iterdir())


def test_split_is_deterministic():
    assert split_indices(10, 0.3, seed=1) == split_indices(10, 0.3, seed=1)
    assert len(split_indices(10, 0.3, seed=1)) == 3
    assert split_indices(10, 0.0, seed=1) == set()
    assert len(split_indices(3, 0.01, seed=0)) == 1
    with pytest.raises(FormatError):
        split_indices(3, 1.0, seed=0)


@pytest.mark.parametrize("geom", [
    box(20, 20, 100, 100).difference(box(40, 40, 60, 60)).difference(Point(80, 80).buffer(8)),
    MultiPolygon([Point(140, 40).buffer(20), Point(150, 120).buffer(15)]),
    MultiPolygon([box(10, 10, 190, 150).difference(box(50, 50, 150, 110)),
                  box(80, 70, 120, 90)]),
])
def test_bridged_path_is_one_ring_that_fills_the_object(geom):
    path = bridged_path(geom)
    truth = geometry_to_mask(geom, 160, 200)
    filled = fill_line((path / [200, 160]).reshape(-1).tolist(), 200, 160)
    assert (filled & truth).sum() / (filled | truth).sum() >= 0.99
    back = even_odd_geometry(path)
    assert back is not None and back.is_valid
    assert back.symmetric_difference(geom).area < 1e-6


def test_read_back_keeps_every_instance(sample: Sample, tmp_path: Path):
    out = tmp_path / "yolo"
    export_yolo(sample.items, sample.labels, out, image_root=sample.image_root, val_fraction=0.4)
    data = read_yolo(out)
    assert data.label_names() == ["blob", "holey", "pair", "object"]
    assert not data.warnings
    by_name = {Path(r.path).name: r for r in data.images}
    for record, instances in sample.items:
        got = by_name[EXPECTED_NAMES[record.path]]
        assert (got.width, got.height) == (record.width, record.height)
        found = [(i.label, geometry_to_mask(i.geometry, got.height, got.width))
                 for i in data.instances if i.image_id == got.id]
        assert len(found) == len(instances)
        assert min(best_ious(sample.truth(record), found)) >= 0.98


def test_missing_image_is_skipped_with_a_warning(sample: Sample, tmp_path: Path):
    (sample.image_root / "grabcut" / "teddy.jpg").unlink()
    report = export_yolo(sample.items, sample.labels, tmp_path / "y",
                         image_root=sample.image_root)
    assert report.images == 4
    assert any("teddy.jpg" in w for w in report.warnings)


def test_cancelled_export_has_no_data_yaml(sample: Sample, tmp_path: Path):
    token = CancelToken()

    def progress(done: int, total: int, message: str) -> None:
        if done == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        export_yolo(sample.items, sample.labels, tmp_path / "y", image_root=sample.image_root,
                    progress=progress, cancel=token)
    assert not (tmp_path / "y" / "data.yaml").exists()
    assert not list((tmp_path / "y").rglob("*.part*"))


def test_malformed_lines_and_unknown_classes_warn(tmp_path: Path):
    root = tmp_path / "ds"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "train" / "x.png"), np.zeros((50, 100, 3), np.uint8))
    (root / "labels" / "train" / "x.txt").write_text(
        "0 0.1 0.1 0.5 0.1 0.5 0.9\n"
        "0 0.1 0.2\n"
        "4 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [cat]\n")
    data = read_yolo(root)
    assert len(data.images) == 1 and len(data.instances) == 2
    assert data.instances[1].label == "class_4"
    assert data.instances[1].geometry.bounds == pytest.approx((40, 20, 60, 30))
    assert any("x.txt:2" in w for w in data.warnings)
    with pytest.raises(FormatError, match="data.yaml"):
        read_yolo(tmp_path / "nothing-here")
