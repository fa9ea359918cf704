"""The export's output folder (app.core.formats.output): staging beside the target and moving
in at the end, the manifest, refusals that protect the user's files, and a YOLO data.yaml that
trains from wherever the export is copied to."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from formats_data import Sample

from app.core.errors import Cancelled, FormatError
from app.core.formats import export_project, read_dataset
from app.core.formats import output as output_module
from app.core.formats.common import place_file
from app.core.formats.output import MANIFEST_NAME
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.types import ImageRecord, Instance


def make_project(sample: Sample, path: Path) -> Project:
    project = Project.create(path, sample.image_root)
    for label in sample.labels:
        project.add_label(label)
    for record, instances in sample.items:
        stored = project.insert_image(ImageRecord(record.path, record.width, record.height, ""))
        for inst in instances:
            project.add_instance(Instance(int(stored.id or 0), inst.label, inst.geometry))
    return project


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".maskloop-" in p.name]


def manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))


# --- staging, interruption ---------------------------------------------------------------------


def test_an_interrupted_export_leaves_the_old_one(sample: Sample, tmp_path: Path):
    out = tmp_path / "out"
    with make_project(sample, tmp_path / "p.maskloop") as project:
        export_project(project, "masks", out)
        before = snapshot(out)

        def power_cut(done: int, total: int, message: str) -> None:
            if done == 2:
                raise RuntimeError("power cut")

        with pytest.raises(RuntimeError, match="power cut"):
            export_project(project, "yolo", out, overwrite=True, progress=power_cut)
        assert snapshot(out) == before and manifest(out)["format"] == "masks"
        token = CancelToken()
        token.cancel()
        with pytest.raises(Cancelled):
            export_project(project, "labelme", tmp_path / "new", cancel=token)
    assert not (tmp_path / "new").exists()
    assert not leftovers(tmp_path)


def test_a_failed_swap_puts_the_old_export_back(sample: Sample, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out"
    real_rename = os.rename

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if ".maskloop-staging-" in str(src):
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    with make_project(sample, tmp_path / "p.maskloop") as project:
        export_project(project, "coco", out)
        before = snapshot(out)
        monkeypatch.setattr(output_module.os, "rename", rename)
        with pytest.raises(OSError, match="No space"):
            export_project(project, "coco", out, overwrite=True, rle=True)
    assert snapshot(out) == before and not leftovers(tmp_path)


def test_moving_in_beside_other_files_is_marked_incomplete_until_done(
        sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    real_replace = os.replace
    moved: list[str] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if ".maskloop-staging-" in str(src) and ".maskloop-staging-" not in str(dst):
            if len(moved) == 3:
                raise OSError(5, "Input/output error")
            moved.append(str(dst))
        real_replace(src, dst)

    with make_project(sample, tmp_path / "p.maskloop") as project:
        export_project(project, "labelme", out, overwrite=True)
        first = set(manifest(out)["files"])
        monkeypatch.setattr(output_module.os, "replace", replace)
        with pytest.raises(OSError, match="Input/output"):
            export_project(project, "masks", out, overwrite=True)
        broken = manifest(out)
        assert broken["complete"] is False and broken["format"] == "masks"
        assert first <= set(broken["files"])  # everything either export may have left
        monkeypatch.undo()
        export_project(project, "masks", out, overwrite=True)
    done = manifest(out)
    assert done["complete"] is True
    assert set(snapshot(out)) == set(done["files"]) | {"notes.txt", MANIFEST_NAME}
    assert (out / "notes.txt").read_text() == "mine"
    assert not leftovers(tmp_path)


# --- refusals ----------------------------------------------------------------------------------


def test_refusals_leave_everything_as_it_was(sample: Sample, tmp_path: Path):
    with make_project(sample, tmp_path / "p.maskloop") as project:
        images = snapshot(sample.image_root)
        # an unreadable manifest is not taken for a list of files to delete
        out = tmp_path / "bad"
        out.mkdir()
        (out / MANIFEST_NAME).write_text("garbage")
        with pytest.raises(FormatError, match="not empty"):
            export_project(project, "coco", out)
        with pytest.raises(FormatError, match="not a readable MaskLoop export manifest"):
            export_project(project, "coco", out, overwrite=True)
        # a link inside the folder that leads elsewhere is in the way, not written through
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        linked = tmp_path / "linked"
        linked.mkdir()
        (linked / "images").symlink_to(elsewhere, target_is_directory=True)
        with pytest.raises(FormatError, match="in the way"):
            export_project(project, "yolo", linked, overwrite=True)
        assert not any(elsewhere.iterdir())
        # a COCO file name must stay inside the folder
        with pytest.raises(FormatError, match="relative path inside"):
            export_project(project, "coco", tmp_path / "c", file_name="../outside.json")
        # a file where the folder should be
        (tmp_path / "file").write_text("x")
        with pytest.raises(FormatError, match="not a folder"):
            export_project(project, "coco", tmp_path / "file")
        assert snapshot(sample.image_root) == images
    assert not (tmp_path / "outside.json").exists() and not leftovers(tmp_path)


def test_a_manifest_cannot_make_an_export_delete_an_image(sample: Sample, tmp_path: Path):
    root = sample.image_root
    (root / MANIFEST_NAME).write_text(json.dumps({"complete": True, "files": [
        "synthetic/a.png", "grabcut/teddy.jpg", "../outside.txt"]}))
    (tmp_path / "outside.txt").write_text("keep")
    images = snapshot(root)
    with make_project(sample, tmp_path / "p.maskloop") as project:
        export_project(project, "coco", root, overwrite=True)  # JSON only: cannot collide
    after = snapshot(root)
    assert {k: after[k] for k in images if k != MANIFEST_NAME} == \
        {k: v for k, v in images.items() if k != MANIFEST_NAME}
    assert (tmp_path / "outside.txt").read_text() == "keep"
    assert manifest(root)["files"] == ["annotations.json"]


def test_place_file_never_replaces_its_source(tmp_path: Path):
    src = tmp_path / "photos" / "a.png"
    src.parent.mkdir()
    src.write_bytes(b"image bytes")
    alias = tmp_path / "alias"
    alias.symlink_to(src.parent, target_is_directory=True)
    for mode in ("copy", "hardlink", "symlink"):
        for dst in (src, alias / "a.png"):
            with pytest.raises(FormatError, match="is the image being exported"):
                place_file(src, dst, mode)
        assert src.read_bytes() == b"image bytes" and not src.is_symlink()
    link = tmp_path / "out" / "a.png"  # a link to the source is replaced, the source kept
    place_file(src, link, "symlink")
    place_file(src, link, "copy")
    assert not link.is_symlink() and link.read_bytes() == src.read_bytes() == b"image bytes"


# --- YOLO data.yaml ----------------------------------------------------------------------------


def ultralytics_split_dirs(yaml_arg: str, datasets_dir: Path) -> dict[str, Path]:
    """The train / val folders Ultralytics trains on for ``data=yaml_arg``, resolved as
    ``check_det_dataset`` in ultralytics/data/utils.py (ultralytics 8.3) does::

        file = check_file(dataset)                      # an existing local file: as given
        data = YAML.load(file, append_filename=True)    # data["yaml_file"] = str(file)
        path = Path(extract_dir or data.get("path") or Path(data.get("yaml_file", "")).parent)
        if not path.exists() and not path.is_absolute():
            path = (DATASETS_DIR / path).resolve()
        for k in "train", "val", "test", "minival":
            x = (path / data[k]).resolve()
            if not x.exists() and data[k].startswith("../"):
                x = (path / data[k][3:]).resolve()
    """
    data = yaml.safe_load(Path(yaml_arg).read_text(encoding="utf-8"))
    data["yaml_file"] = str(yaml_arg)
    path = Path(data.get("path") or Path(data.get("yaml_file", "")).parent)
    if not path.exists() and not path.is_absolute():
        path = (datasets_dir / path).resolve()
    result = {}
    for k in ("train", "val"):
        x = (path / data[k]).resolve()
        if not x.exists() and data[k].startswith("../"):
            x = (path / data[k][3:]).resolve()
        result[k] = x
    return result


def label_of(image: Path) -> Path:
    """Ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def test_yolo_export_trains_from_wherever_it_is_copied(sample: Sample, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "first" / "yolo"
    with make_project(sample, tmp_path / "p.maskloop") as project:
        export_project(project, "yolo", out, val_fraction=0.4)
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert "path" not in data and data["train"] == "images/train"
    moved = tmp_path / "second" / "copy of yolo"
    shutil.copytree(out, moved)
    shutil.rmtree(tmp_path / "first")  # the original is gone
    datasets_dir = tmp_path / "ultralytics-datasets"  # Ultralytics' settings folder
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    for cwd, arg in ((elsewhere, str(moved / "data.yaml")),
                     (moved.parent, "copy of yolo/data.yaml"),
                     (moved, "data.yaml")):
        monkeypatch.chdir(cwd)
        dirs = ultralytics_split_dirs(arg, datasets_dir)
        assert dirs == {"train": moved.resolve() / "images" / "train",
                        "val": moved.resolve() / "images" / "val"}
        found = [p for d in dirs.values() for p in d.iterdir()]
        assert len(found) == 5 and all(label_of(p).is_file() for p in found)
    assert len(read_dataset("yolo", moved).images) == 5  # and MaskLoop reads it back
