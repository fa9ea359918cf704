"""export_project -> import_into_project round trips through real project files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from formats_data import Sample, best_ious

from app.core.errors import Cancelled, FormatError
from app.core.formats import (
    EXPORT_FORMATS,
    FORMATS,
    export_project,
    import_into_project,
)
from app.core.geometry import geometry_to_mask
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.types import ImageRecord, Instance

THRESHOLD = {"coco": 0.99, "labelme": 0.99, "masks": 0.99, "yolo": 0.98}


def make_project(sample: Sample, path: Path, *, annotated: bool = True) -> Project:
    project = Project.create(path, sample.image_root)
    for label in sample.labels:
        project.add_label(label)
    for record, instances in sample.items:
        digest = hashlib.sha256((sample.image_root / record.path).read_bytes()).hexdigest()
        stored = project.insert_image(ImageRecord(record.path, record.width, record.height,
                                                  digest))
        if annotated:
            for inst in instances:
                project.add_instance(Instance(int(stored.id or 0), inst.label, inst.geometry,
                                              inst.score))
    return project


def project_masks(project: Project, rel: str) -> list[tuple[str, object]]:
    record = project.image_by_path(rel)
    assert record is not None and record.id is not None
    return [(i.label, geometry_to_mask(i.geometry, record.height, record.width))
            for i in project.instances(record.id)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_every_instance(sample: Sample, tmp_path: Path, fmt: str):
    with make_project(sample, tmp_path / "src.maskloop") as src:
        report = export_project(src, fmt, tmp_path / "out")
        assert report.images == 5 and report.instances == 8 and not report.warnings
    with make_project(sample, tmp_path / "dst.maskloop", annotated=False) as dst:
        steps: list[tuple[int, int]] = []
        result = import_into_project(dst, fmt, tmp_path / "out",
                                     progress=lambda d, t, m: steps.append((d, t)))
        assert result.images_matched == 5 and result.images_added == 0
        assert result.instances_added == 8 and not result.warnings
        assert steps[-1] == (5, 5)
        assert [lab.name for lab in dst.labels()] == [lab.name for lab in sample.labels]
        for record, instances in sample.items:
            found = project_masks(dst, record.path)
            assert len(found) == len(instances)
            assert min(best_ious(sample.truth(record), found)) >= THRESHOLD[fmt]
        again = import_into_project(dst, fmt, tmp_path / "out")
        assert again.instances_added == 0 and again.duplicates_skipped == 8


def test_import_creates_labels_and_adds_unknown_images(sample: Sample, tmp_path: Path):
    with make_project(sample, tmp_path / "src.maskloop") as src:
        export_project(src, "labelme", tmp_path / "out")
    empty_root = tmp_path / "elsewhere"
    empty_root.mkdir()
    with Project.create(tmp_path / "new.maskloop", empty_root) as dst:
        result = import_into_project(dst, "labelme", tmp_path / "out")
        assert result.images_added == 5 and result.images_matched == 0
        assert sorted(result.labels_created) == ["blob", "holey", "object", "pair"]
        assert result.instances_added == 8
        assert len(dst.images()) == 5


def test_selection_options_and_missing_files(sample: Sample, tmp_path: Path):
    with make_project(sample, tmp_path / "src.maskloop") as src:
        teddy = src.image_by_path("grabcut/teddy.jpg")
        moon = src.image_by_path("grabcut/fullmoon.png")
        assert teddy is not None and moon is not None
        (sample.image_root / "grabcut" / "teddy.jpg").unlink()
        report = export_project(src, "yolo", tmp_path / "y", image_ids=[teddy.id, moon.id],
                                val_fraction=0.0, copy_mode="hardlink")
        assert report.images == 1 and report.instances == 1
        assert any("teddy.jpg" in w for w in report.warnings)
        coco = export_project(src, "coco", tmp_path / "c", file_name="x.json", rle=True)
        assert coco.images == 5 and (tmp_path / "c" / "x.json").is_file()
        overlay = export_project(src, "overlay", tmp_path / "o")
        assert overlay.images == 4 and any("teddy.jpg" in w for w in overlay.warnings)
        with pytest.raises(FormatError, match="no option"):
            export_project(src, "masks", tmp_path / "m", val_fraction=0.2)
        with pytest.raises(FormatError, match="unknown export format"):
            export_project(src, "voc", tmp_path / "v")
        with pytest.raises(FormatError, match="no image with id"):
            export_project(src, "coco", tmp_path / "c", image_ids=[999])
        with pytest.raises(FormatError, match="no such file"):
            import_into_project(src, "coco", tmp_path / "missing.json")
        token = CancelToken()
        token.cancel()
        with pytest.raises(Cancelled):
            export_project(src, "masks", tmp_path / "m", cancel=token)
    assert "overlay" in EXPORT_FORMATS
