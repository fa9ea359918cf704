"""Settings: backend, model (with a Download button), checkpoint file, device, server URL
and key, cache size, simplification default; the shortcuts are listed."""

from __future__ import annotations

from PySide6.QtWidgets import (
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
from app.predict.models import REGISTRY, installed_checkpoint
from app.ui.settings import GuiSettings
from app.ui.tasks import Task, TaskRunner

BACKENDS = [("auto", "Best available (SAM2 if installed, else classical)"),
            ("sam2", "SAM2 (local)"), ("classical", "Classical (GrabCut, no model)"),
            ("server", "MaskLoop server")]
DEVICES = ["auto", "cpu", "cuda", "mps"]


class SettingsDialog(QDialog):
    def __init__(self, settings: GuiSettings, tasks: TaskRunner, backend_text: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.settings, self.tasks = settings, tasks
        self.download_task: Task | None = None
        self.backend = QComboBox()
        for key, text in BACKENDS:
            self.backend.addItem(text, key)
        self.backend.setCurrentIndex(max(0, [k for k, _ in BACKENDS].index(settings.backend)
                                         if settings.backend in dict(BACKENDS) else 0))
        self.model = QComboBox()
        for name in REGISTRY:
            self.model.addItem(name, name)
        self.model.setCurrentText(settings.model)
        self.model_state = QLabel()
        self.download_button = QPushButton("Download")
        self.download_button.clicked.connect(self.download)
        self.download_progress = QProgressBar()
        self.download_progress.setVisible(False)
        self.model.currentTextChanged.connect(lambda _: self._model_state())
        model_row = QHBoxLayout()
        for wgt in (self.model, self.model_state, self.download_button):
            model_row.addWidget(wgt)
        self.checkpoint = QLineEdit(settings.checkpoint)
        self.checkpoint.setPlaceholderText("or a checkpoint file of your own")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_checkpoint)
        ckpt_row = QHBoxLayout()
        ckpt_row.addWidget(self.checkpoint)
        ckpt_row.addWidget(browse)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.device.setCurrentText(settings.device)
        self.server_url = QLineEdit(settings.server_url)
        self.server_url.setPlaceholderText("http://127.0.0.1:8000")
        self.server_key = QLineEdit(settings.server_key)
        self.server_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.cache_mb = QSpinBox()
        self.cache_mb.setRange(64, 65536)
        self.cache_mb.setSuffix(" MB")
        self.cache_mb.setValue(settings.cache_mb)
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.0, 10.0)
        self.tolerance.setSingleStep(0.1)
        self.tolerance.setSuffix(" px")
        self.tolerance.setValue(settings.tolerance)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("Now using", QLabel(backend_text))
        form.addRow("Backend", self.backend)
        form.addRow("SAM2 model", model_row)
        form.addRow(self.download_progress)
        form.addRow("Checkpoint", ckpt_row)
        form.addRow("Device", self.device)
        form.addRow("Server URL", self.server_url)
        form.addRow("Server key", self.server_key)
        form.addRow("Embedding cache", self.cache_mb)
        form.addRow("Simplification", self.tolerance)
        if parent is not None and hasattr(parent, "actions_by_name"):
            from app.ui.keys import shortcut_table

            keys = QLabel("\n".join(f"{k}: {n}" for n, k in shortcut_table(parent)))  # type: ignore[arg-type]
            keys.setWordWrap(True)
            form.addRow("Shortcuts", keys)
        form.addRow(buttons)
        self._model_state()

    def _model_state(self) -> None:
        name = self.model.currentText()
        installed = installed_checkpoint(name) is not None
        self.model_state.setText("installed" if installed else "not installed")
        self.download_button.setEnabled(not installed and self.download_task is None)

    def _choose_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM2 checkpoint", "",
                                              "Checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.checkpoint.setText(path)

    def download(self) -> None:
        """Download the chosen model off the GUI thread, with progress and Cancel."""
        from app.predict.models import download

        self.download_progress.setVisible(True)
        self.download_button.setEnabled(False)
        self.download_task = self.tasks.start(
            download, self.model.currentText(), with_progress=True,
            on_result=lambda _: self._downloaded(None),
            on_error=self._downloaded, on_progress=self._progress)

    def _progress(self, done: int, total: int, message: str) -> None:
        if total:
            self.download_progress.setMaximum(total)
            self.download_progress.setValue(done)

    def _downloaded(self, exc: BaseException | None) -> None:
        self.download_task = None
        if exc is None:
            self.model_state.setText("installed")
        elif isinstance(exc, Cancelled):
            self.model_state.setText("download cancelled")
        else:
            self.model_state.setText(f"download failed: {exc}")
        if exc is None:
            self._model_state()
        else:
            self.download_button.setEnabled(True)

    def accept(self) -> None:
        s = self.settings
        s.backend = self.backend.currentData()
        s.model = self.model.currentText()
        s.checkpoint = self.checkpoint.text().strip()
        s.device = self.device.currentText()
        s.server_url = self.server_url.text().strip()
        s.server_key = self.server_key.text()
        s.cache_mb = self.cache_mb.value()
        s.tolerance = self.tolerance.value()
        super().accept()

    def reject(self) -> None:
        if self.download_task is not None:
            self.download_task.cancel()
        super().reject()
