"""Export dialog: the command line's options (``maskloop export``): format, which images
(all / done / those shown in the list / those selected in it), validation split and its
seed, RLE (COCO), how images are placed (copy, hard link, symbolic link, or referenced),
overlays for review, "replace an earlier export" (--overwrite) and "check with the training
tools' readers" (--verify); a progress bar and Cancel; then the result's summary: counts,
the warnings (images that cannot be read are left out, named, never exported as empty
negatives) and the verification (min / mean IoU against the project's masks, the worst
instances). The export runs off the GUI thread (app.core.formats.export_project); a refused
export (a folder that holds the images, a non-empty folder) is its one-line message."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.core.errors import Cancelled
from app.core.project import Project
from app.core.types import ImageStatus
from app.ui.dialogs.fit import fit_to_screen
from app.ui.opening import export_dir
from app.ui.tasks import Task, TaskRunner

if TYPE_CHECKING:
    from app.core.formats.common import ExportReport
    from app.core.formats.fidelity import FidelityReport

FORMATS = [("coco", "COCO (instances JSON, polygons with holes as RLE)"),
           ("yolo", "YOLO segmentation (Ultralytics)"), ("labelme", "labelme JSON"),
           ("masks", "PNG masks (instance + semantic)"),
           ("overlay", "Overlays (images with their masks drawn, for review)")]
# format -> (export option, [(value, text)]): how the images are placed (--copy-images)
PLACING: dict[str, tuple[str, list[tuple[str | None, str]]]] = {
    "coco": ("copy_images", [(None, "referenced (file_name relative to the image folder)"),
                             ("copy", "copied (images/<split>/)"), ("hardlink", "hard links"),
                             ("symlink", "symbolic links")]),
    "yolo": ("copy_mode", [("copy", "copied"), ("hardlink", "hard links"),
                           ("symlink", "symbolic links")]),
    "labelme": ("images", [("copy", "copied beside the JSON"), ("hardlink", "hard links"),
                           ("symlink", "symbolic links"),
                           ("reference", "referenced (imagePath to the original)")]),
}
SPLIT_FORMATS = ("coco", "yolo")
# which frames of the project's videos are exported, written as images (--frames)
FRAMES = [("labelled", "frames with instances a person drew or edited"),
          ("all", "every frame with instances (also propagated, not reviewed)"),
          ("none", "none (plain images only)")]
FRAME_TYPES = [("jpg", "JPEG (quality 95)"), ("png", "PNG (lossless)")]
OVERLAY_FOLDER = "overlays"  # "also write overlays": a folder of its own inside the export
MAX_WARNINGS = 8


class ExportDialog(QDialog):
    def __init__(self, project: Project, tasks: TaskRunner, parent: QWidget | None = None,
                 *, shown_ids: list[int] | None = None,
                 selected_ids: list[int] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.project, self.tasks = project, tasks
        self.task: Task | None = None
        self.report: ExportReport | None = None
        self.overlay_report: ExportReport | None = None
        self.format = QComboBox()
        for key, text in FORMATS:
            self.format.addItem(text, key)
        self.images = QComboBox()
        records = project.images()
        done = [int(r.id or 0) for r in records if r.status == ImageStatus.DONE]
        choices = [("all", "All images", None, len(records)),
                   ("done", "Done images", done, len(done))]
        if shown_ids is not None and len(shown_ids) != len(records):
            choices.append(("shown", "Images shown in the list (its filter)", shown_ids,
                            len(shown_ids)))
        if selected_ids:
            choices.append(("selected", "Images selected in the list", selected_ids,
                            len(selected_ids)))
        self._image_ids: dict[str, list[int] | None] = {}
        for key, text, ids, count in choices:
            self.images.addItem(f"{text} ({count})", key)
            self._image_ids[key] = ids
        self.folder = QLineEdit(str(export_dir(project.path)))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder)
        row.addWidget(browse)
        self.placing = QComboBox()
        self.frames = QComboBox()  # shown when the project has videos
        for value, text in FRAMES:
            self.frames.addItem(text, value)
        self.frames.setToolTip("Frames of the project's videos go into the export as image "
                               "files, named <video>/<frame>.jpg; a selection of images "
                               "(done, shown, selected) exports only the frames in it.")
        self.frame_type = QComboBox()
        for value, text in FRAME_TYPES:
            self.frame_type.addItem(text, value)
        self.frame_row = frame_row = QHBoxLayout()
        frame_row.addWidget(self.frames, 1)
        frame_row.addWidget(self.frame_type)
        self.val_fraction = QDoubleSpinBox()
        self.val_fraction.setRange(0.0, 0.9)
        self.val_fraction.setSingleStep(0.05)
        self.val_fraction.setSpecialValueText("no split (all train)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("The same seed gives the same train/val split")
        self.split = split = QHBoxLayout()
        split.addWidget(self.val_fraction)
        split.addWidget(QLabel("seed"))
        split.addWidget(self.seed)
        self.rle = QCheckBox("Every mask as RLE (not only those with holes)")
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.05, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setValue(0.45)
        self.with_overlays = QCheckBox(f"Also write overlays for review (in {OVERLAY_FOLDER}/)")
        self.overwrite = QCheckBox("Replace an earlier export in this folder")
        self.overwrite.setToolTip("Export into a folder that is not empty: only the files an "
                                  "earlier MaskLoop export there lists in its manifest are "
                                  "removed; images and other files are never touched.")
        self.verify = QCheckBox("Check the export with the training tools' readers")
        self.verify.setChecked(True)
        self.verify.setToolTip("Read the files back as pycocotools (COCO), Ultralytics (YOLO), "
                               "labelme or OpenCV (PNG masks) draw them and compare each "
                               "instance with the project's mask.")
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)  # a refusal names the folder and the reason
        self.summary = QLabel("")  # counts and warnings
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check = QLabel("")  # the verification's summary
        self.check.setWordWrap(True)
        self.check.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fidelity: FidelityReport | None = None
        self.buttons = QDialogButtonBox()
        self.open_button = self.buttons.addButton("Open folder",
                                                  QDialogButtonBox.ButtonRole.ActionRole)
        self.open_button.setVisible(False)
        self.open_button.clicked.connect(self._open_folder)
        self.export_button = self.buttons.addButton("Export",
                                                    QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.export_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self._cancel)
        form = self.form = QFormLayout(self)
        form.addRow("Format", self.format)
        form.addRow("Images", self.images)
        form.addRow("Folder", row)
        form.addRow("Image files", self.placing)
        form.addRow("Video frames", frame_row)
        form.setRowVisible(frame_row, bool(project.sequences.all()))
        form.addRow("Validation split", split)
        form.addRow(self.rle)
        form.addRow("Mask opacity", self.alpha)
        form.addRow(self.with_overlays)
        form.addRow(self.overwrite)
        form.addRow(self.verify)
        form.addRow(self.progress)
        form.addRow(self.status)
        form.addRow(self.summary)
        form.addRow(self.check)
        form.addRow(self.buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        self._format_changed()
        self.setMinimumWidth(560)
        fit_to_screen(self)

    # -- options --------------------------------------------------------------------------
    def _format_changed(self) -> None:
        from app.core.formats.fidelity import READERS

        fmt = self.format.currentData()
        self.verify.setEnabled(fmt in READERS)
        self.placing.clear()
        for value, text in PLACING.get(fmt, ("", []))[1]:
            self.placing.addItem(text, value)
        self.form.setRowVisible(self.placing, fmt in PLACING)
        self.form.setRowVisible(self.split, fmt in SPLIT_FORMATS)
        self.form.setRowVisible(self.rle, fmt == "coco")
        self.form.setRowVisible(self.alpha, fmt == "overlay")
        self.form.setRowVisible(self.with_overlays, fmt != "overlay")

    def image_ids(self) -> list[int] | None:
        """The images to export (None: all)."""
        return self._image_ids.get(self.images.currentData())

    def options(self) -> dict[str, Any]:
        """The format's options, as ``maskloop export`` passes them."""
        fmt = self.format.currentData()
        options: dict[str, Any] = {}
        if fmt in PLACING:
            name = PLACING[fmt][0]
            if self.placing.currentData() is not None:
                options[name] = self.placing.currentData()
        if fmt in SPLIT_FORMATS and self.val_fraction.value() > 0:
            options["val_fraction"] = self.val_fraction.value()
            options["seed"] = self.seed.value()
        if fmt == "coco" and self.rle.isChecked():
            options["rle"] = True
        if fmt == "overlay":
            options["alpha"] = self.alpha.value()
        options.update(self.frame_options())
        return options

    def frame_options(self) -> dict[str, Any]:
        """Which frames of the project's videos to export and as what (none: no videos)."""
        if not self.project.sequences.all():
            return {}
        return {"frames": self.frames.currentData(),
                "frame_images": self.frame_type.currentData()}

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if folder:
            self.folder.setText(folder)

    # -- running --------------------------------------------------------------------------
    def start(self) -> None:
        """Run the export on the pool; progress and the result come back here."""
        from app.core.formats import export_project

        fmt = self.format.currentData()
        out = Path(self.folder.text()).expanduser()
        ids = self.image_ids()
        if ids is not None and not ids:
            self.status.setText("No image to export: choose other images")
            return
        self.export_button.setEnabled(False)
        self.open_button.setVisible(False)
        self.status.setText("Exporting…")
        self.summary.setText("")
        self.check.setText("")
        self.fidelity = None
        self.report = self.overlay_report = None
        verify = self.verify.isChecked() and self.verify.isEnabled()
        overlays = self.with_overlays.isChecked() and fmt != "overlay"
        overwrite = self.overwrite.isChecked()
        project, options, frame_options = self.project, self.options(), self.frame_options()

        def run(progress: Any = None, cancel: Any = None) -> tuple[Any, Any]:
            report = export_project(project, fmt, out, image_ids=ids, overwrite=overwrite,
                                    verify=verify, progress=progress, cancel=cancel,
                                    **options)
            extra = None
            if overlays:
                extra = export_project(project, "overlay", out / OVERLAY_FOLDER,
                                       image_ids=ids, overwrite=overwrite,
                                       progress=progress, cancel=cancel, **frame_options)
            return report, extra

        self.task = self.tasks.start(run, with_progress=True, on_result=self._done,
                                     on_error=self._failed, on_progress=self._progress)

    def _progress(self, done: int, total: int, message: str) -> None:
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(done)
        if message:
            self.status.setText(message)

    def _done(self, reports: tuple[ExportReport, ExportReport | None]) -> None:
        self.task = None
        self.report, self.overlay_report = reports
        report = self.report
        self.progress.setValue(self.progress.maximum())
        self.status.setText(f"Exported to {self.folder.text()}")
        lines = [f"{report.images} image(s), {report.instances} instance(s) as "
                 f"{self.format.currentData()}"]
        if report.frames:
            lines.append(f"{report.frames} of them video frame(s), written as images "
                         f"({report.frames_propagated} propagated instance(s) not reviewed)")
        if self.overlay_report is not None:
            lines.append(f"{self.overlay_report.images} overlay(s) in {OVERLAY_FOLDER}/")
        warnings = list(report.warnings)
        lines += [f"⚠ {w}" for w in warnings[:MAX_WARNINGS]]
        if len(warnings) > MAX_WARNINGS:
            lines.append(f"… and {len(warnings) - MAX_WARNINGS} more warning(s)")
        self.summary.setText("\n".join(lines))
        self.fidelity = getattr(report, "fidelity", None)
        if self.fidelity is not None:
            verdict = "as in the project" if self.fidelity.passed() else "CHECK the worst"
            self.check.setText("Read back: " + "\n".join(self.fidelity.summary()) +
                               f"\n({verdict})")
        self.export_button.setEnabled(True)
        self.open_button.setVisible(True)
        self.cancel_button.setText("Close")

    def _failed(self, exc: BaseException) -> None:
        self.task = None
        self.export_button.setEnabled(True)
        self.status.setText("Cancelled" if isinstance(exc, Cancelled) else f"Failed: {exc}")

    def _open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(self.folder.text()))

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.reject()

    def reject(self) -> None:
        if self.task is not None:
            self.task.cancel()
        super().reject()
