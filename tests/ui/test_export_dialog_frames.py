"""Issue 15: the export dialog offers which frames of the project's videos to export (as the
command line's --frames / --frame-type), and the export writes them as images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from test_export_dialog_options import choose, cli_options, run

from app.core.project import Project
from app.core.types import Instance
from app.ui.dialogs.export_dialog import ExportDialog
from app.ui.tasks import TaskRunner


@pytest.fixture
def project(image_folder: Path) -> Iterator[Project]:
    """The three images (no instances) and a 3-frame folder sequence with an anchor on
    frame 2."""
    clip = image_folder / "clip"
    clip.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            clip / f"f{i}.png")
    with Project.create(image_folder / "photos.maskloop", image_folder) as p:
        p.add_images([f for f in sorted(image_folder.glob("*.png"))])
        record = p.sequences.add(clip)
        track = p.sequences.add_track(int(record.id or 0), "cat")
        frame = p.sequences.frame_image(int(record.id or 0), 2)
        p.add_instance(Instance(int(frame.id or 0), "cat", box(4, 4, 30, 30),
                                track_id=track.id))
        yield p


def test_the_frame_options_and_the_export(qtbot: QtBot, tmp_path: Path,
                                          project: Project) -> None:
    dlg = ExportDialog(project, TaskRunner())
    qtbot.addWidget(dlg)
    assert dlg.frames.isVisibleTo(dlg)
    assert dlg.options() == cli_options(["--format", "coco", "--frames", "labelled",
                                         "--frame-type", "jpg"])
    choose(dlg, "format", "yolo")
    choose(dlg, "frames", "all")
    choose(dlg, "frame_type", "png")
    assert dlg.options() == cli_options(["--format", "yolo", "--frames", "all",
                                         "--frame-type", "png", "--copy-images", "copy"])
    run(qtbot, dlg, tmp_path / "out")
    assert dlg.report is not None and dlg.report.frames == 1
    assert "1 of them video frame(s)" in dlg.summary.text()
    assert (tmp_path / "out" / "images" / "train" / "000002.png").is_file()
    dlg.close()


def test_no_frame_row_without_videos(qtbot: QtBot, image_folder: Path) -> None:
    with Project.create(image_folder / "plain.maskloop", image_folder) as p:
        p.add_images(image_folder)
        dlg = ExportDialog(p, TaskRunner())
        qtbot.addWidget(dlg)
        assert not dlg.frames.isVisibleTo(dlg)
        assert dlg.options() == cli_options(["--format", "coco"])
        dlg.close()
