"""Images whose header reads but whose pixels do not (a truncated JPEG): found, remembered
per file version, and left out of exports with a warning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from app.core import image_checks
from app.core.errors import ImageError
from app.core.formats import export_project
from app.core.image_checks import check_complete, check_images, known_problems
from app.core.project import Project
from app.core.types import Instance


def noise(seed: int = 0, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def save(path: Path, fmt: str | None = None, seed: int = 0) -> Path:
    noise(seed).save(path, fmt)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.webp", "a.bmp", "a.tif"])
def test_complete_files_pass_and_cut_ones_are_refused(tmp_path: Path, name: str) -> None:
    path = save(tmp_path / name)
    check_complete(path)
    truncate(path)
    with pytest.raises(ImageError, match=r"a\.\w+'"):
        check_complete(path)


def test_bytes_after_the_end_of_a_jpeg_are_no_problem(tmp_path: Path) -> None:
    path = save(tmp_path / "trailer.jpg")
    path.write_bytes(path.read_bytes() + b"\x00" * 16 + b"camera trailer")
    check_complete(path)  # does not end with the EOI marker: decoded, and fine


def project_with(tmp_path: Path) -> Project:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(["a.jpg", "b.jpg", "c.png"]):
        save(folder / name, seed=i)
    truncate(folder / "b.jpg")  # listed, sized and hashed like the others
    project = Project.create(tmp_path / "p.maskloop", folder)
    report = project.add_images(folder)
    assert len(report.added) == 3 and not report.skipped_errors
    return project


def test_check_images_finds_the_truncated_one_and_remembers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = project_with(tmp_path)
    b = project.image_by_path("b.jpg")
    problems = check_images(project)
    assert list(problems) == [b.id] and "file is truncated" in problems[b.id]
    assert known_problems(project) == problems
    # remembered: nothing is read again while the files stay as they are
    calls: list[Path] = []
    monkeypatch.setattr(image_checks, "check_complete", lambda p: calls.append(p))
    assert check_images(project) == problems and calls == []
    project.close()
    with Project.open(project.path) as reopened:
        assert known_problems(reopened) == problems
        # the file is replaced by a whole one: checked again, and fine now
        path = reopened.image_path(b)
        save(path, seed=7)
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        monkeypatch.undo()
        assert check_images(reopened) == {} and known_problems(reopened) == {}
        # a missing file is not "unreadable" (its annotations can still be exported)
        path.unlink()
        assert check_images(reopened) == {}


def test_export_leaves_out_unreadable_images_with_a_warning(tmp_path: Path) -> None:
    project = project_with(tmp_path)
    for record in project.images():
        if record.path != "b.jpg":
            project.add_instance(Instance(record.id, "thing", box(5, 5, 20, 20)))
    report = export_project(project, "coco", tmp_path / "coco")
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == ["a.jpg", "c.png"]
    assert report.images == 2
    assert any("b.jpg" in w and "truncated" in w for w in report.warnings)
    report = export_project(project, "yolo", tmp_path / "yolo")
    assert report.images == 2 and any("b.jpg" in w for w in report.warnings)
    assert not list((tmp_path / "yolo").rglob("b.*"))
    project.close()
