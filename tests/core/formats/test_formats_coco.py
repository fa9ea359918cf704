from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from formats_data import Sample, best_ious, has_holes, iou
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from shapely.geometry import box

from app.core.errors import Cancelled, FormatError
from app.core.formats.coco import export_coco, read_coco
from app.core.geometry import geometry_to_mask
from app.core.jobs import CancelToken
from app.core.types import ImageRecord, Instance, Label

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _coco_masks(coco: COCO, image_id: int) -> list[tuple[str, np.ndarray]]:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    return [(names[a["category_id"]], coco.annToMask(a).astype(bool)) for a in anns]


def test_pycocotools_loads_the_export_and_gives_the_masks_back(sample: Sample, tmp_path: Path):
    out = tmp_path / "coco" / "annotations.json"
    report = export_coco(sample.items, sample.labels, out)
    assert report.images == len(sample.items)
    assert report.instances == sum(len(i) for _, i in sample.items)
    assert out in report.files

    coco = COCO(str(out))
    data = json.loads(out.read_text())
    assert [c["name"] for c in data["categories"]] == [lab.name for lab in sample.labels]
    assert [c["id"] for c in data["categories"]] == [1, 2, 3, 4]
    by_name = {img["file_name"]: img for img in data["images"]}
    for record, instances in sample.items:
        img = by_name[record.path]
        assert (img["width"], img["height"]) == (record.width, record.height)
        found = _coco_masks(coco, img["id"])
        assert len(found) == len(instances)
        truth = sample.truth(record)
        assert min(best_ious(truth, found)) >= 0.99
    for ann in data["annotations"]:
        mask = coco.annToMask(ann).astype(bool)
        assert ann["area"] == int(mask.sum())
        rows, cols = np.nonzero(mask)
        assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                               rows.max() - rows.min() + 1]
        assert ann["iscrowd"] == 0


def test_holes_are_rle_and_the_rest_polygons(sample: Sample, tmp_path: Path):
    out = tmp_path / "a.json"
    export_coco(sample.items, sample.labels, out)
    anns = json.loads(out.read_text())["annotations"]
    instances = [inst for _, insts in sample.items for inst in insts]
    assert len(anns) == len(instances)
    kinds = set()
    for ann, inst in zip(anns, instances, strict=True):
        seg = ann["segmentation"]
        holes = has_holes(inst.geometry)
        kinds.add(holes)
        if holes:
            assert isinstance(seg, dict) and isinstance(seg["counts"], str)
        else:
            assert isinstance(seg, list) and all(len(ring) >= 6 for ring in seg)
            assert len(seg) == len(getattr(inst.geometry, "geoms", [inst.geometry]))
    assert kinds == {True, False}

    export_coco(sample.items, sample.labels, out, rle=True)
    data = json.loads(out.read_text())
    assert all(isinstance(a["segmentation"], dict) for a in data["annotations"])
    assert COCO(str(out)).getAnnIds()


def test_polygon_corners_follow_the_pixel_edge_convention(tmp_path: Path):
    record = ImageRecord("x.png", 20, 10, "", id=1)
    out = tmp_path / "a.json"
    export_coco([(record, [Instance(1, "sq", box(2, 2, 8, 8))])], [Label("sq")], out)
    ann = json.loads(out.read_text())["annotations"][0]
    assert ann["area"] == 36 and ann["bbox"] == [2.0, 2.0, 6.0, 6.0]
    assert sorted(ann["segmentation"][0]) == sorted([2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0])


def test_read_back_keeps_every_instance(sample: Sample, tmp_path: Path):
    out = tmp_path / "a.json"
    export_coco(sample.items, sample.labels, out)
    data = read_coco(out)
    assert data.label_names() == [lab.name for lab in sample.labels]
    assert not data.warnings
    by_path = {r.path: r for r in data.images}
    for record, _ in sample.items:
        got = by_path[record.path]
        found = [(i.label, geometry_to_mask(i.geometry, got.height, got.width))
                 for i in data.instances if i.image_id == got.id]
        truth = sample.truth(record)
        assert len(found) == len(truth)
        assert min(best_ious(truth, found)) >= 0.99


def test_import_reads_uncompressed_rle_and_crowds(tmp_path: Path):
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 10:30] = True
    mask[9:13, 15:20] = False  # a hole
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    data = {
        "images": [{"id": 7, "file_name": "sub\\x.png", "width": 40, "height": 30}],
        "categories": [{"id": 3, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 1,
             "segmentation": {"size": [30, 40], "counts": runs}},
            {"id": 2, "image_id": 7, "category_id": 3, "iscrowd": 0,
             "segmentation": {"size": [30, 40], "counts": compressed["counts"].decode()}},
            {"id": 3, "image_id": 99, "category_id": 3, "segmentation": []},
        ],
    }
    path = tmp_path / "in.json"
    path.write_text(json.dumps(data))
    result = read_coco(path)
    assert result.images[0].path == "sub/x.png"
    assert len(result.instances) == 2
    for inst in result.instances:
        assert inst.label == "thing"
        assert iou(geometry_to_mask(inst.geometry, 30, 40), mask) >= 0.99
        assert inst.geometry.interiors  # the hole survived
    assert any("unknown image" in w for w in result.warnings)


def test_copied_images_are_found_again(sample: Sample, tmp_path: Path):
    out = tmp_path / "c" / "annotations.json"
    report = export_coco(sample.items, sample.labels, out, image_root=sample.image_root,
                         copy_images="copy")
    assert (tmp_path / "c" / "images" / "other" / "a.png").is_file()
    assert len(report.files) == 6
    data = read_coco(out)
    assert len(data.image_files) == 5
    assert all(p.is_relative_to(tmp_path / "c" / "images") for p in data.image_files.values())


def test_bad_file_is_a_format_error(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="bad.json"):
        read_coco(bad)


def test_cancel_leaves_no_file(sample: Sample, tmp_path: Path):
    token = CancelToken()
    out = tmp_path / "a.json"

    def progress(done: int, total: int, message: str) -> None:
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        export_coco(sample.items, sample.labels, out, progress=progress, cancel=token)
    assert list(tmp_path.iterdir()) == [tmp_path / "images"]
