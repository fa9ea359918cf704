from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from formats_data import Sample, best_ious
from PIL import Image
from shapely.geometry import box

from app.core.formats.masks import export_masks, read_masks
from app.core.geometry import geometry_to_mask
from app.core.types import ImageRecord, Instance, Label


def test_instance_and_semantic_pngs(sample: Sample, tmp_path: Path):
    out = tmp_path / "m"
    report = export_masks(sample.items, sample.labels, out)
    assert report.images == 5 and report.instances == 8
    assert (out / "classes.txt").read_text().split() == ["_background_", "blob", "holey",
                                                         "pair", "object"]
    classes = json.loads((out / "classes.json").read_text())
    assert classes[2] == {"index": 2, "name": "holey", "colour": "#00ff00"}
    record, instances = sample.items[0]
    ids = cv2.imread(str(out / "instances" / "synthetic__a.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint8 and ids.shape == (record.height, record.width)
    with Image.open(out / "semantic" / "synthetic__a.png") as sem_image:
        assert sem_image.mode == "P"
        assert sem_image.getpalette()[3:6] == [255, 0, 0]  # class 1 (blob) is red
        semantic = np.asarray(sem_image)
    assert len(instances) == 3
    for number, (label, mask) in enumerate(sample.truth(record), start=1):
        assert ((ids == number) == mask).all()
        assert (semantic[mask] == [lab.name for lab in sample.labels].index(label) + 1).all()
    assert (semantic[ids == 0] == 0).all()


def test_later_instances_lie_on_top_and_many_instances_need_uint16(tmp_path: Path):
    record = ImageRecord("x.png", 40, 30, "", id=1)
    overlapping = [Instance(1, "a", box(0, 0, 20, 20)), Instance(1, "b", box(10, 10, 30, 30))]
    export_masks([(record, overlapping)], [Label("a"), Label("b")], tmp_path / "o")
    ids = cv2.imread(str(tmp_path / "o" / "instances" / "x.png"), cv2.IMREAD_UNCHANGED)
    assert ids[15, 15] == 2 and ids[5, 5] == 1

    many = [Instance(1, "a", box(x, y, x + 1, y + 1)) for y in range(30) for x in range(10)]
    export_masks([(record, many)], [Label("a")], tmp_path / "u")
    ids = cv2.imread(str(tmp_path / "u" / "instances" / "x.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and ids.max() == 300
    data = read_masks(tmp_path / "u")
    assert len(data.instances) == 300


def test_read_back_keeps_every_instance(sample: Sample, tmp_path: Path):
    out = tmp_path / "m"
    export_masks(sample.items, sample.labels, out)
    data = read_masks(out)
    assert data.label_names() == ["blob", "holey", "pair", "object"]
    by_path = {r.path: r for r in data.images}
    for record, instances in sample.items:
        got = by_path[record.path]
        found = [(i.label, geometry_to_mask(i.geometry, got.height, got.width))
                 for i in data.instances if i.image_id == got.id]
        assert len(found) == len(instances)
        assert min(best_ious(sample.truth(record), found)) >= 0.99
