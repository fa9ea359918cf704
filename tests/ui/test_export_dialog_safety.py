"""The export dialog gets the core's protection of the user's images: a refused export is a
one-line message in the dialog (no traceback), and "Replace an earlier export" is --overwrite."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT

from app.core.project import Project
from app.core.types import Instance
from app.ui.dialogs.export_dialog import ExportDialog
from app.ui.opening import export_dir
from app.ui.tasks import TaskRunner


def digests(folder: Path) -> dict[str, str]:
    """The images of ``folder`` (the project's own files change as it is used)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()
            if p.suffix == ".png" or p.is_symlink()}


@pytest.fixture
def project(image_folder: Path) -> Iterator[Project]:
    with Project.create(image_folder / "photos.maskloop", image_folder) as p:
        p.add_images(image_folder)
        for record in p.images():
            p.add_instance(Instance(int(record.id or 0), "cat", box(10, 10, 60, 50)))
        yield p


def run_export(qtbot: QtBot, dlg: ExportDialog, fmt: str, folder: Path) -> str:
    dlg.format.setCurrentIndex(dlg.format.findData(fmt))
    dlg.folder.setText(str(folder))
    dlg.report = None
    dlg.export_button.click()
    qtbot.waitUntil(lambda: dlg.task is None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not dlg.tasks.busy(), timeout=TIMEOUT)  # its relay is gone too
    return dlg.status.text()


def test_refusals_are_messages_and_replace_is_overwrite(qtbot: QtBot, image_folder: Path,
                                                        project: Project) -> None:
    before = digests(image_folder)
    tasks = TaskRunner()
    dlg = ExportDialog(project, tasks)
    qtbot.addWidget(dlg)
    assert not dlg.overwrite.isChecked()
    # labelme into the image folder: refused, shown as the one-line reason
    dlg.overwrite.setChecked(True)
    status = run_export(qtbot, dlg, "labelme", image_folder)
    assert status.startswith("Failed: ") and "refused" in status and "\n" not in status
    assert "Traceback" not in status and dlg.report is None
    assert digests(image_folder) == before and dlg.export_button.isEnabled()
    # the default folder (inside the image folder) is fine; again needs "Replace"
    out = export_dir(project.path)
    dlg.overwrite.setChecked(False)
    assert run_export(qtbot, dlg, "yolo", out).startswith("Exported")
    status = run_export(qtbot, dlg, "yolo", out)
    assert status.startswith("Failed: ") and "not empty" in status
    dlg.overwrite.setChecked(True)
    assert run_export(qtbot, dlg, "yolo", out).startswith("Exported")
    assert dlg.report is not None and (out / "maskloop-export.json").is_file()
    assert digests(image_folder) == before
    dlg.close()
    tasks.wait()
