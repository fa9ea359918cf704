"""``maskloop export`` never touches the user's images (issue 9, section 2): output folders that
hold the images are refused, non-empty folders need ``--overwrite``, which removes only what an
earlier export's manifest lists, and a re-export leaves no stale file. Through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from app.cli import main
from app.core.project import Project
from app.core.types import Instance

MANIFEST_NAME = "maskloop-export.json"  # documented in the README
COPY_MODES = [[], ["--copy-images", "copy"], ["--copy-images", "hardlink"],
              ["--copy-images", "symlink"]]


def write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path)


def snapshot(folder: Path) -> dict[str, tuple[bool, str]]:
    """Every entry under ``folder``: (is a link, sha256 of its bytes or '' when unreadable)."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        result[path.relative_to(folder).as_posix()] = (path.is_symlink(), digest)
    return result


def make_project(path: Path, images: Path) -> Path:
    assert main(["new", str(path), "--images", str(images), "-q"]) == 0
    with Project.open(path) as project:
        for record in project.images():
            project.add_instance(Instance(int(record.id or 0), "bird", box(4, 4, 30, 28)))
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for i in range(5):
        write_png(folder / f"img{i}.png", seed=i)
    return folder


@pytest.fixture
def project_path(tmp_path: Path, photos: Path) -> Path:
    return make_project(tmp_path / "birds.maskloop", photos)


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".maskloop-" in p.name]


def export(project: Path, fmt: str, out: Path, *extra: str) -> int:
    return main(["export", str(project), "--format", fmt, "--out", str(out), "-q", *extra])


# --- refused: the output folder holds the images -------------------------------------------


@pytest.mark.parametrize("mode", COPY_MODES, ids=["default", "copy", "hardlink", "symlink"])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_labelme_into_the_image_folder_is_refused(project_path: Path, photos: Path,
                                                  mode: list[str], overwrite: list[str],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(photos)
    assert export(project_path, "labelme", photos, *mode, *overwrite) == 2
    captured = capsys.readouterr()
    assert "Exported" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "refused" in err and "project's images" in err
    assert snapshot(photos) == before  # not deleted, not linked to itself, nothing added
    assert not hidden_leftovers(photos.parent)


@pytest.mark.parametrize("mode", ["copy", "symlink"])
def test_coco_copy_images_into_the_dataset_folder_is_refused(tmp_path: Path, mode: str,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    # the usual COCO layout: dataset/annotations.json beside dataset/images/
    dataset = tmp_path / "dataset"
    for i in range(3):
        write_png(dataset / "images" / f"img{i}.png", seed=i)
    project = make_project(tmp_path / "p.maskloop", dataset / "images")
    before = snapshot(dataset)
    assert export(project, "coco", dataset, "--copy-images", mode, "--overwrite") == 2
    assert "refused" in capsys.readouterr().err
    assert snapshot(dataset) == before
    # the image root itself is not empty; with --overwrite, the copies go to a new images/
    # inside it, where they cannot collide with the images: accepted, the images untouched
    root = dataset / "images"
    assert export(project, "coco", root, "--copy-images", mode) == 2
    assert "not empty" in capsys.readouterr().err
    assert snapshot(dataset) == before
    assert export(project, "coco", root, "--copy-images", mode, "--overwrite") == 0
    after = snapshot(dataset)
    assert {k: after[k] for k in before} == before
    assert len([k for k in after if k.startswith("images/images/")]) == 3


@pytest.mark.parametrize("root", ["dataset", "dataset/images/train"])
@pytest.mark.parametrize("mode", COPY_MODES, ids=["default", "copy", "hardlink", "symlink"])
def test_yolo_into_the_folder_the_project_was_imported_from_is_refused(
        tmp_path: Path, root: str, mode: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    dataset = tmp_path / "dataset"  # a YOLO dataset from elsewhere
    for i in range(3):
        write_png(dataset / "images" / "train" / f"img{i}.png", seed=i)
        (dataset / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (dataset / "labels" / "train" / f"img{i}.txt").write_text(
            "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n")
    (dataset / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [bird]\n")
    project = tmp_path / "p.maskloop"
    assert main(["new", str(project), "--images", str(tmp_path / root), "-q"]) == 0
    assert main(["import", str(project), str(dataset), "--format", "yolo", "-q"]) == 0
    before = snapshot(dataset)
    for overwrite in ([], ["--overwrite"]):
        assert export(project, "yolo", dataset, *mode, *overwrite) == 2
        assert "refused" in capsys.readouterr().err
        assert snapshot(dataset) == before
    assert not hidden_leftovers(tmp_path)


# --- accepted: the layout cannot collide ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["coco", "yolo", "labelme", "masks", "overlay"])
def test_a_new_folder_inside_the_image_folder_is_accepted(project_path: Path, photos: Path,
                                                          fmt: str) -> None:
    before = snapshot(photos)
    out = photos / "birds-export"  # the app's default export folder lies there
    extra = ["--copy-images", "symlink"] if fmt in ("coco", "yolo", "labelme") else []
    assert export(project_path, fmt, out, *extra) == 0
    assert {k: v for k, v in snapshot(photos).items() if not k.startswith("birds-export/")} \
        == before
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["format"] == fmt


def test_coco_json_beside_the_images_is_accepted_with_overwrite(
        project_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(photos)
    assert export(project_path, "coco", photos) == 2
    assert "not empty" in capsys.readouterr().err
    assert export(project_path, "coco", photos, "--overwrite") == 0
    after = snapshot(photos)
    assert set(after) - set(before) == {"annotations.json", MANIFEST_NAME}
    assert {k: after[k] for k in before} == before
    data = json.loads((photos / "annotations.json").read_text())
    assert all((photos / img["file_name"]).is_file() for img in data["images"])


def test_a_folder_that_contains_the_image_folder_is_accepted_when_disjoint(
        tmp_path: Path, project_path: Path, photos: Path) -> None:
    def files() -> dict[str, tuple[bool, str]]:  # the project file changes as SQLite uses it
        return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("birds.")}

    before = files()
    assert export(project_path, "yolo", tmp_path, "--overwrite") == 0
    after = files()
    assert {k: after[k] for k in before} == before and project_path.is_file()
    assert len(list((tmp_path / "labels" / "train").glob("*.txt"))) == 5


# --- non-empty folders, --overwrite and stale files ----------------------------------------


def test_non_empty_folder_needs_overwrite_which_keeps_foreign_files(
        tmp_path: Path, project_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert export(project_path, "labelme", out) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert export(project_path, "labelme", out, "--overwrite") == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert len(list(out.glob("*.json"))) == 6  # 5 labelme files and the manifest
    # again, as masks: the labelme files go, notes.txt stays
    assert export(project_path, "masks", out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["notes.txt", "instances", "semantic", "classes.txt", "classes.json", "index.json",
         MANIFEST_NAME])


def test_overwrite_never_replaces_a_file_no_manifest_lists(
        tmp_path: Path, project_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "annotations.json").write_text("my own annotations")
    assert export(project_path, "coco", out, "--overwrite") == 2
    assert "no earlier MaskLoop export there lists it" in capsys.readouterr().err
    assert (out / "annotations.json").read_text() == "my own annotations"
    assert sorted(p.name for p in out.iterdir()) == ["annotations.json"]
    assert not hidden_leftovers(tmp_path)


def test_reexporting_yolo_leaves_no_stale_labels(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    for i in range(10):
        write_png(images / f"img{i}.png", seed=i)
    project = make_project(tmp_path / "p.maskloop", images)
    out = tmp_path / "yolo"
    assert export(project, "yolo", out) == 0
    assert len(list((out / "labels" / "train").glob("*.txt"))) == 10
    # a val split over a plain export: the val images are no longer in train as well
    assert export(project, "yolo", out, "--val-fraction", "0.2") == 2
    assert export(project, "yolo", out, "--val-fraction", "0.2", "--overwrite") == 0
    train = {p.stem for p in (out / "labels" / "train").glob("*.txt")}
    val = {p.stem for p in (out / "labels" / "val").glob("*.txt")}
    assert len(train) == 8 and len(val) == 2 and not train & val
    assert {p.stem for p in (out / "images" / "train").iterdir()} == train
    assert {p.stem for p in (out / "images" / "val").iterdir()} == val
    # two images over a ten-image export: two labels, not ten
    assert export(project, "yolo", out, "--images", "1", "2", "--overwrite") == 0
    assert "Exported 2 image(s)" in capsys.readouterr().out
    labels = sorted(p.relative_to(out).as_posix() for p in (out / "labels").rglob("*.txt"))
    assert len(labels) == 2 and not (out / "labels" / "val").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["options"]["image_ids"] == [1, 2]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
    assert set(manifest["files"]) == on_disk - {MANIFEST_NAME}
    assert not hidden_leftovers(tmp_path)


def test_symlink_export_links_point_at_the_images_and_reexport_keeps_them(
        tmp_path: Path, project_path: Path, photos: Path) -> None:
    before = snapshot(photos)
    out = tmp_path / "lm"
    for _ in range(2):
        extra = ["--overwrite"] if out.exists() else []
        assert export(project_path, "labelme", out, "--copy-images", "symlink", *extra) == 0
        links = sorted(out.glob("*.png"))
        assert len(links) == 5 and all(p.is_symlink() for p in links)
        assert {Path(os.readlink(p)) for p in links} == {(photos / p.name).resolve()
                                                         for p in links}
        assert snapshot(photos) == before


def test_manifest_lists_every_file_and_says_complete(tmp_path: Path,
                                                     project_path: Path) -> None:
    out = tmp_path / "c"
    assert export(project_path, "coco", out, "--copy-images", "copy", "--rle") == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["complete"] is True and manifest["format"] == "coco"
    assert manifest["options"] == {"rle": True, "copy_images": "copy"}
    assert manifest["images"] == 5 and manifest["instances"] == 5 and manifest["created"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {MANIFEST_NAME}
    # images copied: the common layout (annotations/instances_<split>.json, images/<split>/)
    assert "annotations/instances_train.json" in manifest["files"]


@pytest.mark.parametrize("inside", ["subfolder", "image root"])
def test_exported_images_are_never_scanned_as_images(tmp_path: Path, photos: Path,
                                                     project_path: Path, inside: str) -> None:
    """Copies, masks and overlays that an export wrote inside the image folder are left out
    when the folder is scanned again (a new project, or the app's rescan)."""
    from app.core.images import list_images

    originals = list_images(photos)
    if inside == "subfolder":
        assert export(project_path, "masks", photos / "masks-out") == 0
        assert export(project_path, "yolo", photos / "yolo-out", "--copy-images", "copy") == 0
    else:
        assert export(project_path, "coco", photos, "--copy-images", "copy", "--overwrite") == 0
        assert (photos / "images").is_dir()
    assert list_images(photos) == originals
    assert main(["new", str(tmp_path / "again.maskloop"), "--images", str(photos), "-q"]) == 0
    with Project.open(tmp_path / "again.maskloop") as project:
        assert len(project.images()) == len(originals)
