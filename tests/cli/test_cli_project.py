"""``maskloop new | info | export | import`` on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import Polygon, box

import app.core.formats
from app.cli import main
from app.core.geometry import geometry_to_mask
from app.core.project import Project
from app.core.types import Instance


def write_png(path: Path, width: int = 160, height: int = 120, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    for i in range(3):
        write_png(folder / f"img{i}.png", seed=i)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture
def project_path(tmp_path: Path, images: Path) -> Path:
    """A project over ``images`` with a few instances (one with a hole)."""
    path = tmp_path / "birds.maskloop"
    assert main(["new", str(path), "--images", str(images), "-q"]) == 0
    with Project.open(path) as project:
        first, second, _ = project.images()
        holed = Polygon([(8, 8), (80, 8), (80, 80), (8, 80)],
                        [[(32, 32), (48, 32), (48, 48), (32, 48)]])
        project.add_instance(Instance(first.id, "bird", holed, 0.9))
        project.add_instance(Instance(first.id, "cat", box(88, 20, 140, 100)))
        project.add_instance(Instance(second.id, "bird", box(20, 20, 60, 60)))
    return path


def test_new_reports_added_and_skipped(tmp_path: Path, images: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.maskloop"
    assert main(["new", str(path), "--images", str(images), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 image(s) added" in out and "Skipped 1 file(s)" in out and "broken.jpg" in out
    with Project.open(path) as project:
        assert sorted(r.path for r in project.images()) == ["img0.png", "img1.png", "img2.png"]
        assert project.image_root == images


def test_new_refuses_to_overwrite_without_force(tmp_path: Path, images: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.maskloop"
    assert main(["new", str(path), "--images", str(images), "-q"]) == 0
    assert main(["new", str(path), "--images", str(images), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["new", str(path), "--images", str(images), "-q", "--force"]) == 0
    assert main(["new", str(tmp_path / "q.maskloop"), "--images", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "maskloop new: error:" in err and "nope: no such image folder" in err
    assert not (tmp_path / "q.maskloop").exists()


def test_new_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", str(tmp_path / "empty.maskloop")]) == 0
    assert "no images yet" in capsys.readouterr().out
    with Project.open(tmp_path / "empty.maskloop") as project:
        assert project.images() == [] and project.image_root == tmp_path


def test_info_text_and_json(project_path: Path, images: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["info", str(project_path)]) == 0
    out = capsys.readouterr().out
    assert "images:     3 (new 1, in progress 2, done 0, skipped 0)" in out
    assert "bird (" in out and "2 instance(s)" in out and "missing images: 0" in out
    (images / "img2.png").unlink()
    assert main(["info", str(project_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"]["total"] == 3 and summary["images"]["in progress"] == 2
    assert [(lab["name"], lab["instances"]) for lab in summary["labels"]] == [
        ("bird", 2), ("cat", 1)]
    assert summary["instances"] == 3
    assert summary["missing_images"] == ["img2.png"]


def test_unreadable_inputs_exit_2(tmp_path: Path, project_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    not_project = tmp_path / "notes.txt"
    not_project.write_text("hello" * 200)
    assert main(["info", str(not_project)]) == 2
    assert "not a MaskLoop project" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "missing.maskloop")]) == 2
    assert "no such project file" in capsys.readouterr().err
    assert main(["import", str(project_path), str(tmp_path / "nothing.json"),
                 "--format", "coco"]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    for argv in (["export", str(project_path), "--out", str(tmp_path)],  # no --format
                 ["export", str(project_path), "--format", "pdf", "--out", str(tmp_path)],
                 ["export", str(project_path), "--format", "yolo", "--out", str(tmp_path),
                  "--val-fraction", "1.5"],
                 ["info"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


def test_cli_runs_as_a_process(tmp_path: Path, project_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "app", "info", str(project_path), "--json"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["instances"] == 3
    bad = subprocess.run([sys.executable, "-m", "app", "info", str(tmp_path / "none.maskloop")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "maskloop info: error:" in bad.stderr


# --- export and import -------------------------------------------------------------------------


@pytest.fixture
def formats() -> object:
    return app.core.formats


def test_export_coco_selected_images(formats: object, tmp_path: Path, project_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "coco"
    assert main(["export", str(project_path), "--format", "coco", "--out", str(out), "-q",
                 "--images", "img0.png"]) == 0
    assert "Exported 1 image(s) and 2 instance(s)" in capsys.readouterr().out
    data = json.loads((out / "annotations.json").read_text())
    assert [img["file_name"] for img in data["images"]] == ["img0.png"]
    assert len(data["annotations"]) == 2
    with Project.open(project_path) as project:
        second = project.image_by_path("img1.png")
    assert main(["export", str(project_path), "--format", "coco", "--out", str(out), "-q",
                 "--images", str(second.id), "--overwrite"]) == 0
    assert main(["export", str(project_path), "--format", "coco", "--out", str(out), "-q",
                 "--images", "nope.png"]) == 2
    assert "nope.png: not an image of" in capsys.readouterr().err
    assert main(["export", str(project_path), "--format", "masks", "--out", str(out), "-q",
                 "--copy-images", "copy"]) == 2
    assert "--copy-images does not apply" in capsys.readouterr().err
    assert main(["export", str(project_path), "--format", "overlay", "--out",
                 str(tmp_path / "overlay"), "-q", "--alpha", "0.3"]) == 0
    assert len(list((tmp_path / "overlay").rglob("*.jpg"))) == 3


@pytest.mark.parametrize("fmt, extra", [
    ("coco", ["--rle"]), ("yolo", ["--val-fraction", "0.5", "--seed", "1"]), ("labelme", []),
    ("masks", []),
])
def test_export_then_import_round_trip(formats: object, tmp_path: Path, project_path: Path,
                                       images: Path, fmt: str, extra: list[str]) -> None:
    out = tmp_path / f"out-{fmt}"
    assert main(["export", str(project_path), "--format", fmt, "--out", str(out), "-q",
                 *extra]) == 0
    fresh = tmp_path / "fresh.maskloop"
    assert main(["new", str(fresh), "--images", str(images), "-q"]) == 0
    src = out / "annotations.json" if fmt == "coco" else out
    assert main(["import", str(fresh), str(src), "--format", fmt, "-q"]) == 0
    with Project.open(project_path) as before, Project.open(fresh) as after:
        assert after.instance_count() == before.instance_count() == 3
        assert sorted(after.label_counts().items()) == [("bird", 2), ("cat", 1)]
        for record in before.images():
            old = sorted(before.instances(record.id), key=lambda i: i.geometry.area)
            new_record = after.image_by_path(record.path)
            assert new_record is not None, record.path
            new = sorted(after.instances(new_record.id), key=lambda i: i.geometry.area)
            for a, b in zip(old, new, strict=True):  # compared as masks, as exports are
                mask_a = geometry_to_mask(a.geometry, record.height, record.width)
                mask_b = geometry_to_mask(b.geometry, record.height, record.width)
                iou = (mask_a & mask_b).sum() / (mask_a | mask_b).sum()
                assert a.label == b.label and iou >= 0.98
    # importing again adds nothing: duplicates are recognised
    assert main(["import", str(fresh), str(src), "--format", fmt, "-q"]) == 0
    with Project.open(fresh) as after:
        assert after.instance_count() == 3
