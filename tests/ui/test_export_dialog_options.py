"""Issue 13, item 5: the export dialog offers the command line's options (format, which
images, validation split, RLE, overlays, how images are placed), with a progress bar and the
result's summary; an image that cannot be read is left out with a warning."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, open_window, scene_image

from app.cli.project_cmds import _export_options, register
from app.core.project import Project
from app.core.types import ImageStatus, Instance
from app.ui.dialogs.export_dialog import ExportDialog
from app.ui.tasks import TaskRunner


@pytest.fixture
def project(image_folder: Path) -> Iterator[Project]:
    """Three images with a "cat" each; the first done; a fourth, truncated, JPEG."""
    from PIL import Image

    cut = image_folder / "zcut.jpg"
    Image.fromarray(scene_image(seed=4)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:2000])  # its header reads: it is registered
    with Project.create(image_folder / "photos.maskloop", image_folder) as p:
        p.add_images(image_folder)
        for record in p.images():
            p.add_instance(Instance(int(record.id or 0), "cat", box(10, 10, 60, 50)))
        p.set_status(int(p.images()[0].id or 0), ImageStatus.DONE)
        yield p


def cli_options(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return _export_options(parser.parse_args(["export", "p.maskloop", "--out", "x", *argv]))


def choose(dlg: ExportDialog, combo: str, data: object) -> None:
    box_ = getattr(dlg, combo)
    index = box_.findData(data)
    assert index >= 0, (combo, data)
    box_.setCurrentIndex(index)


def run(qtbot: QtBot, dlg: ExportDialog, folder: Path) -> None:
    dlg.folder.setText(str(folder))
    dlg.export_button.click()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=TIMEOUT)


def test_the_options_are_the_command_lines(qtbot: QtBot, project: Project) -> None:
    dlg = ExportDialog(project, TaskRunner())
    qtbot.addWidget(dlg)
    formats = [dlg.format.itemData(i) for i in range(dlg.format.count())]
    assert formats == ["coco", "yolo", "labelme", "masks", "overlay"]
    assert dlg.options() == cli_options(["--format", "coco"])
    dlg.rle.setChecked(True)
    dlg.val_fraction.setValue(0.25)
    dlg.seed.setValue(3)
    choose(dlg, "placing", "copy")
    assert dlg.options() == cli_options(["--format", "coco", "--rle", "--val-fraction", "0.25",
                                         "--seed", "3", "--copy-images", "copy"])
    choose(dlg, "format", "yolo")
    assert not dlg.rle.isVisibleTo(dlg) and dlg.val_fraction.isVisibleTo(dlg)
    choose(dlg, "placing", "symlink")
    assert dlg.options() == cli_options(["--format", "yolo", "--val-fraction", "0.25",
                                         "--seed", "3", "--copy-images", "symlink"])
    choose(dlg, "format", "labelme")
    assert not dlg.val_fraction.isVisibleTo(dlg)
    choose(dlg, "placing", "reference")
    assert dlg.options() == {"images": "reference"}
    choose(dlg, "format", "masks")
    assert not dlg.placing.isVisibleTo(dlg) and dlg.options() == {}
    choose(dlg, "format", "overlay")
    assert dlg.alpha.isVisibleTo(dlg) and not dlg.verify.isEnabled()
    assert dlg.options() == cli_options(["--format", "overlay", "--alpha", "0.45"])
    dlg.close()


def test_which_images_split_overlays_and_the_summary(qtbot: QtBot, tmp_path: Path,
                                                    project: Project) -> None:
    records = project.images()
    ids = [int(r.id or 0) for r in records]
    tasks = TaskRunner()
    dlg = ExportDialog(project, tasks, shown_ids=ids[:2], selected_ids=ids[1:3])
    qtbot.addWidget(dlg)
    texts = [dlg.images.itemText(i) for i in range(dlg.images.count())]
    assert texts == ["All images (4)", "Done images (1)",
                     "Images shown in the list (its filter) (2)",
                     "Images selected in the list (2)"]
    # all images, YOLO with a validation split and review overlays: the truncated JPEG is
    # left out with a warning (not exported as an empty negative)
    choose(dlg, "format", "yolo")
    dlg.val_fraction.setValue(0.34)
    dlg.with_overlays.setChecked(True)
    out = tmp_path / "yolo"
    run(qtbot, dlg, out)
    assert dlg.status.text().startswith("Exported"), dlg.status.text()
    assert dlg.progress.value() == dlg.progress.maximum()
    summary = dlg.summary.text()
    assert summary.startswith("3 image(s), 3 instance(s) as yolo")
    assert "3 overlay(s) in overlays/" in summary
    assert "zcut.jpg: left out" in summary and "⚠" in summary
    labels = sorted(p.name for p in out.rglob("*.txt") if p.parent.name in ("train", "val"))
    assert len(labels) == 3 and {p.parent.name for p in out.rglob("labels/*/*.txt")} == {
        "train", "val"}
    assert not any("zcut" in p.name for p in out.rglob("*"))
    assert len(list((out / "overlays").glob("*.jpg"))) == 3
    assert dlg.fidelity is not None and dlg.fidelity.min_iou == 1.0
    assert dlg.open_button.isVisible() or not dlg.isVisible()
    # done images only, COCO with RLE: one image
    choose(dlg, "format", "coco")
    choose(dlg, "images", "done")
    dlg.rle.setChecked(True)
    dlg.val_fraction.setValue(0)  # one annotations.json (a split: instances_<split>.json)
    dlg.with_overlays.setChecked(False)
    run(qtbot, dlg, tmp_path / "coco")
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [records[0].path]
    assert all(isinstance(a["segmentation"], dict) for a in coco["annotations"])  # RLE
    manifest = json.loads((tmp_path / "coco" / "maskloop-export.json").read_text())
    assert manifest["options"]["rle"] is True and manifest["options"]["image_ids"] == ids[:1]
    # the images selected in the list, labelme
    choose(dlg, "format", "labelme")
    choose(dlg, "images", "selected")
    run(qtbot, dlg, tmp_path / "labelme")
    assert sorted(p.stem for p in (tmp_path / "labelme").glob("*.json")
                  if p.name != "maskloop-export.json") == sorted(
        Path(r.path).stem for r in records[1:3])
    dlg.close()
    tasks.wait()


def test_the_window_passes_the_list_to_the_dialog(qtbot: QtBot, image_folder: Path,
                                                  classical_bridge: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:

    seen: dict[str, object] = {}

    def fake_exec(self: ExportDialog) -> int:
        seen["texts"] = [self.images.itemText(i) for i in range(self.images.count())]
        return 0

    monkeypatch.setattr(ExportDialog, "exec", fake_exec)
    w = open_window(qtbot, image_folder, classical_bridge)
    w.images_panel.filter_text.setText("img1")
    w.images_panel.list.item(2).setSelected(True)
    w.export()
    assert seen["texts"] == ["All images (3)", "Done images (0)",
                             "Images shown in the list (its filter) (1)"]
    w.images_panel.filter_text.setText("")
    w.images_panel.list.item(0).setSelected(True)
    w.images_panel.list.item(2).setSelected(True)
    w.export()
    assert seen["texts"][-1] == "Images selected in the list (2)"
    w.close()
