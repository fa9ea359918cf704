"""The export dialog reads the export back as the training tools read it and shows the
summary (issue 10)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from shapely.geometry import Point
from ui_helpers import TIMEOUT

from app.core.project import Project
from app.core.types import Instance
from app.ui.dialogs.export_dialog import ExportDialog
from app.ui.tasks import TaskRunner


@pytest.fixture
def project(image_folder: Path) -> Iterator[Project]:
    with Project.create(image_folder / "photos.maskloop", image_folder) as p:
        p.add_images(image_folder)
        for record in p.images():
            p.add_instance(Instance(int(record.id or 0), "cat", Point(30, 30).buffer(12.4)))
        yield p


def test_the_dialog_shows_what_the_reader_gets_back(qtbot: QtBot, tmp_path: Path,
                                                   project: Project) -> None:
    tasks = TaskRunner()
    dlg = ExportDialog(project, tasks)
    qtbot.addWidget(dlg)
    assert dlg.verify.isChecked()
    dlg.format.setCurrentIndex(dlg.format.findData("yolo"))
    dlg.folder.setText(str(tmp_path / "yolo"))
    dlg.export_button.click()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=TIMEOUT)
    assert dlg.status.text().startswith("Exported")
    assert dlg.fidelity is not None and dlg.fidelity.min_iou == 1.0
    assert "read by Ultralytics" in dlg.check.text() and "IoU min 1.0000" in dlg.check.text()
    dlg.format.setCurrentIndex(dlg.format.findData("masks"))
    assert dlg.verify.isEnabled()
    dlg.close()
    tasks.wait()
