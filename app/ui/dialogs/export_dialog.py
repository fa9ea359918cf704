"""Export dialog: format, folder, "replace an earlier export", "check with the training tools'
readers", progress bar and Cancel; the export runs off the GUI thread
(app.core.formats.export_project). A refused export (a folder that holds the images, a
non-empty folder) is shown as its one-line message. When checked, the export is read back as
pycocotools / Ultralytics / labelme / cv2 read it and the summary (min / mean IoU against the
project's masks, the worst instances) is shown under the status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from app.core.errors import Cancelled
from app.core.project import Project
from app.ui.opening import export_dir
from app.ui.tasks import Task, TaskRunner

if TYPE_CHECKING:
    from app.core.formats.fidelity import FidelityReport

FORMATS = [("coco", "COCO (instances JSON, polygons with holes as RLE)"),
           ("yolo", "YOLO segmentation"), ("labelme", "labelme JSON"),
           ("masks", "PNG masks")]


class ExportDialog(QDialog):
    def __init__(self, project: Project, tasks: TaskRunner,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.project, self.tasks = project, tasks
        self.task: Task | None = None
        self.report: object = None
        self.format = QComboBox()
        for key, text in FORMATS:
            self.format.addItem(text, key)
        self.folder = QLineEdit(str(export_dir(project.path)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder)
        row.addWidget(browse)
        self.overwrite = QCheckBox("Replace an earlier export in this folder")
        self.overwrite.setToolTip("Export into a folder that is not empty: only the files an "
                                  "earlier MaskLoop export there lists in its manifest are "
                                  "removed; images and other files are never touched.")
        self.verify = QCheckBox("Check the export with the training tools' readers")
        self.verify.setChecked(True)
        self.verify.setToolTip("Read the files back as pycocotools (COCO), Ultralytics (YOLO), "
                               "labelme or OpenCV (PNG masks) draw them and compare each "
                               "instance with the project's mask.")
        self.format.currentIndexChanged.connect(self._format_changed)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a refusal names the folder and the reason
        self.check = QLabel("")  # the verification's summary
        self.check.setWordWrap(True)
        self.check.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fidelity: FidelityReport | None = None
        self.buttons = QDialogButtonBox()
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel)
        form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Folder", row)
        form.addRow(self.overwrite)
        form.addRow(self.verify)
        form.addRow(self.progress)
        form.addRow(self.status)
        form.addRow(self.check)
        form.addRow(self.buttons)

    def _format_changed(self) -> None:
        from app.core.formats.fidelity import READERS

        self.verify.setEnabled(self.format.currentData() in READERS)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def start(self) -> None:
        """Run the export on the pool; progress and the result come back here."""
        from app.core.formats import export_project

        fmt = self.format.currentData()
        out = Path(self.folder.text()).expanduser()
        self.export_button.setEnabled(False)
        self.status.setText("Exporting…")
        self.check.setText("")
        self.fidelity = None
        verify = self.verify.isChecked() and self.verify.isEnabled()
        self.task = self.tasks.start(
            export_project, self.project, fmt, out, overwrite=self.overwrite.isChecked(),
            verify=verify, with_progress=True, on_result=self._done, on_error=self._failed,
            on_progress=self._progress)

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        if message:
            self.status.setText(message)

    def _done(self, report: object) -> None:
        self.task = None
        self.report = report
        self.progress.setValue(self.progress.maximum())
        self.status.setText(f"Exported to {self.folder.text()}")
        self.fidelity = getattr(report, "fidelity", None)
        if self.fidelity is not None:
            verdict = "as in the project" if self.fidelity.passed() else "CHECK the worst"
            self.check.setText("Read back: " + "\n".join(self.fidelity.summary()) +
                               f"\n({verdict})")
        self.export_button.setEnabled(True)
        self.cancel_button.setText("Close")

    def _failed(self, exc: BaseException) -> None:
        self.task = None
        self.export_button.setEnabled(True)
        self.status.setText("Cancelled" if isinstance(exc, Cancelled) else f"Failed: {exc}")

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.reject()

    def reject(self) -> None:
        if self.task is not None:
            self.task.cancel()
        super().reject()
