"""Reading an external detector's boxes (COCO results, YOLO labels) for a project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.errors import FormatError
from app.core.formats.detections import Detection, read_detections
from app.core.types import ImageRecord

RECORDS = [ImageRecord("train/0001.jpg", 200, 100, "h1", id=1),
           ImageRecord("train/cat.png", 50, 40, "h2", id=2),
           ImageRecord("val/cat.png", 50, 40, "h3", id=3),
           ImageRecord("106024.jpg", 50, 40, "h4", id=4)]


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_coco_results_matched_by_stem_or_path(tmp_path: Path) -> None:
    file = write(tmp_path / "dets.json", [
        {"image_id": 1, "category_id": 2, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": "val/cat.png", "category_id": 1, "bbox": [40, 30, 20, 20]},
        {"image_id": "cat", "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1},  # 2 cats
        {"image_id": 7, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.1}])
    found = read_detections(file, RECORDS)
    assert found.by_image == {
        1: [Detection((10.0, 20.0, 40.0, 60.0), 0.9, "2")],  # stem "0001" is image_id 1
        3: [Detection((40.0, 30.0, 50.0, 40.0), None, "1")]}  # clipped to 50 x 40
    assert found.unmatched == ["cat", "7"] and found.count == 2 and len(found.digest) == 64


def test_coco_dataset_gives_file_names_and_class_names(tmp_path: Path) -> None:
    dataset = write(tmp_path / "gt.json", {
        "images": [{"id": 5, "file_name": "train/cat.png"}],
        "categories": [{"id": 1, "name": "cat"}], "annotations": []})
    dets = write(tmp_path / "dets.json", [{"image_id": 5, "category_id": 1,
                                           "bbox": [1, 2, 3, 4], "score": 0.5}])
    found = read_detections(dets, RECORDS, coco_dataset=dataset)
    assert found.by_image == {2: [Detection((1.0, 2.0, 4.0, 6.0), 0.5, "cat")]}
    assert found.digest != read_detections(dets, RECORDS).digest  # the dataset counts too
    # a COCO dataset file as the detections: its own tables
    own = write(tmp_path / "own.json", {
        "images": [{"id": 5, "file_name": "train/cat.png"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 3, 4]}]})
    assert read_detections(own, RECORDS).by_image == {
        2: [Detection((1.0, 2.0, 4.0, 6.0), None, "cat")]}


@pytest.mark.parametrize(("data", "message"), [
    ({"not": "a list"}, "expected a list of detections"),
    ([{"image_id": 1}], "detection 0: needs image_id and bbox"),
    ([{"image_id": 1, "bbox": [1, 2, 3]}], r"detection 0: bbox must be \[x, y, width, height\]"),
    ([{"image_id": 1, "bbox": [1, 2, 0, 3]}], "width and height must be positive"),
    ([{"image_id": 1, "bbox": [1, 2, "3", 3]}], "bbox must be a number"),
    ([{"image_id": 1, "bbox": [500, 2, 3, 3]}], "lies outside the image train/0001.jpg"),
])
def test_bad_coco_results_name_the_file_and_entry(tmp_path: Path, data: object,
                                                  message: str) -> None:
    file = write(tmp_path / "dets.json", data)
    with pytest.raises(FormatError, match=message) as info:
        read_detections(file, RECORDS)
    assert "dets.json" in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(FormatError, match="broken.json: not a readable JSON file"):
        read_detections(tmp_path / "broken.json", RECORDS)
    with pytest.raises(FormatError, match="nope.json: no such detections file"):
        read_detections(tmp_path / "nope.json", RECORDS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="empty: no YOLO label files"):
        read_detections(tmp_path / "empty", RECORDS)


def test_yolo_labels_with_names_from_data_yaml(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (tmp_path / "data.yaml").write_text("names: [person, dog]\n")
    (labels / "0001.txt").write_text("1 0.5 0.5 0.2 0.4 0.75\n\n0 0.1 0.1 0.2 0.2\n")
    (labels / "other.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "106024.txt").write_text("0 0.5 0.5 0.2 0.5\n")
    found = read_detections(labels, RECORDS)
    assert found.by_image == {1: [Detection((80.0, 30.0, 120.0, 70.0), 0.75, "dog"),
                                  Detection((0.0, 0.0, 40.0, 20.0), None, "person")],
                              4: [Detection((20.0, 10.0, 30.0, 30.0), None, "person")]}
    assert found.unmatched == ["other.txt"]
    (labels / "0001.txt").write_text("0 0.5 0.5 20 40\n")
    with pytest.raises(FormatError, match=r"0001.txt:1: box values must be normalised"):
        read_detections(labels, RECORDS)
    (labels / "0001.txt").write_text("zero 0.5 0.5 0.2 0.2\n")
    with pytest.raises(FormatError, match=r"0001.txt:1: invalid literal"):
        read_detections(labels, RECORDS)
