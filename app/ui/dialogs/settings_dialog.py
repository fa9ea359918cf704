"""Settings: backend (local SAM2, classical, a MaskLoop server, Roboflow, Roboflow SAM3, fal,
Segmind),
model (with a Download button), checkpoint file, device, server URL, key and mode, hosted-API
keys, cache size, tiles on large images (local backends), simplification default, the label
popup and the hover preview (the keys
are in F1's table). Only the rows of the chosen backend are shown; it fits a 1366 x 768
screen. Keys live in the system keyring, or in the settings file where there is none (see
app.ui.settings), never in logs or the status bar."""

from __future__ import annotations

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
from app.predict.models.registry import REGISTRY, installed_checkpoint
from app.ui import secrets
from app.ui.dialogs.fit import fit_to_screen
from app.ui.settings import GuiSettings, settings_path
from app.ui.tasks import Task, TaskRunner

BACKENDS = [("auto", "Best available (SAM2 if installed, else classical)"),
            ("sam2", "SAM2 (local)"), ("classical", "Classical (GrabCut, no model)"),
            ("server", "MaskLoop server (maskloop serve)"),
            ("roboflow", "Roboflow (SAM2 clicks, SAM3 'find all' by text)"),
            ("roboflow-sam3", "Roboflow SAM3 (SAM3 clicks, boxes and 'find all' by text)"),
            ("fal", "fal (SAM2)"), ("segmind", "Segmind (SAM2, 'find all' by text)")]
LOCAL_BACKENDS = ("auto", "sam2", "classical")  # the ones that tiles on large images wrap
DEVICES = ["auto", "cpu", "cuda", "mps"]
REMOTE_MODES = [("server", "server decodes clicks"),
                ("hybrid", "hybrid: embedding from the server, clicks decoded here")]
# the key rows, one per key: (settings field of the key, environment variable used when it
# is empty); both Roboflow backends use the "roboflow" row (secrets.HOSTED_KEY_FIELDS)
HOSTED_KEYS = {"roboflow": ("roboflow_key", "API_KEY"), "fal": ("fal_key", "FAL_KEY"),
               "segmind": ("segmind_key", "SEGMIND_API_KEY")}


def key_row(backend: str) -> str | None:
    """The key row (a name in HOSTED_KEYS) of ``backend``; None if it takes no hosted key."""
    field = secrets.key_field(backend)
    return next((name for name, (attr, _) in HOSTED_KEYS.items() if attr == field), None)


def _short(backend: str) -> str:
    """The backend's name without its explanation: "Roboflow SAM3"."""
    return dict(BACKENDS)[backend].split(" (")[0]


def _secret(text: str) -> QLineEdit:
    edit = QLineEdit(text)
    edit.setEchoMode(QLineEdit.EchoMode.Password)
    return edit


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
        self.server_key = _secret(settings.server_key)
        self.server_key.setPlaceholderText("empty: $MASKLOOP_API_KEY, or none")
        self.remote_mode = QComboBox()
        for key, text in REMOTE_MODES:
            self.remote_mode.addItem(text, key)
        self.remote_mode.setCurrentIndex(max(0, self.remote_mode.findData(settings.remote_mode)))
        self.hosted_url = QLineEdit(settings.hosted_url)
        self.hosted_url.setPlaceholderText("empty: the provider's public API")
        self.hosted_keys: dict[str, QLineEdit] = {}
        for name, (attr, env) in HOSTED_KEYS.items():
            self.hosted_keys[name] = _secret(getattr(settings, attr))
            self.hosted_keys[name].setPlaceholderText(f"empty: ${env}")
        where = (f"in the system keyring ({secrets.backend_name()})" if secrets.available()
                 else f"in {settings_path()} (readable only by you; no system keyring found)")
        self.key_note = QLabel(f"API keys are stored {where}; they are never logged or shown.")
        self.key_note.setWordWrap(True)
        self.shared_key_note = QLabel()  # a backend using another one's key says so
        self.shared_key_note.setWordWrap(True)
        self.cache_mb = QSpinBox()
        self.cache_mb.setRange(64, 65536)
        self.cache_mb.setSuffix(" MB")
        self.cache_mb.setValue(settings.cache_mb)
        self.tiled = QCheckBox("Full-resolution tiles on large images")
        self.tiled.setToolTip(
            "Images over twice the model's input side (2048 px for SAM2) are encoded in "
            "tiles at native resolution, and a mask that spans tiles is stitched into one: "
            "sharper masks of small objects on aerial, microscopy and very large photos.\n"
            "Off by default: it multiplies the encode work (4 or more encodes instead of one) "
            "on ordinary camera photos. Local backends (SAM2, classical) only.")
        self.tiled.setChecked(settings.tiled)
        self.tolerance = QDoubleSpinBox()
        self.tolerance.setRange(0.0, 10.0)
        self.tolerance.setSingleStep(0.1)
        self.tolerance.setSuffix(" px")
        self.tolerance.setValue(settings.tolerance)
        self.label_popup = QCheckBox("Ask for the label when a mask is accepted (Enter)")
        self.label_popup.setToolTip("Off: Enter stores the current label (keys 1-9) at once")
        self.label_popup.setChecked(settings.label_popup)
        self.hover_preview = QCheckBox("Preview the mask under the pointer (fast backends)")
        self.hover_preview.setChecked(settings.hover_preview)
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
        form.addRow("Server mode", self.remote_mode)
        for name, edit in self.hosted_keys.items():
            form.addRow(f"{_short(name)} API key", edit)
        form.addRow(self.shared_key_note)
        form.addRow("Hosted API URL", self.hosted_url)
        form.addRow(self.key_note)
        form.addRow("Embedding cache", self.cache_mb)
        form.addRow(self.tiled)
        form.addRow("Simplification", self.tolerance)
        form.addRow(self.label_popup)
        form.addRow(self.hover_preview)
        form.addRow(QLabel("Every key: Help > Keys and mouse (F1)"))
        form.addRow(buttons)
        self.form = form
        self.backend.currentIndexChanged.connect(lambda _: self._show_backend_rows())
        self._show_backend_rows()
        self._model_state()
        fit_to_screen(self)

    def _show_backend_rows(self) -> None:
        """Show the remote rows of the chosen backend only."""
        chosen = self.backend.currentData()
        for wgt in (self.server_url, self.server_key, self.remote_mode):
            self.form.setRowVisible(wgt, chosen == "server")
        row = key_row(chosen)
        for name, edit in self.hosted_keys.items():
            self.form.setRowVisible(edit, name == row)
        shared = row is not None and row != chosen
        if shared:
            self.shared_key_note.setText(
                f"{_short(chosen)} uses your {_short(row or '')} API key: the same key as the "
                f"{_short(row or '')} backend, stored once for both.")
        self.form.setRowVisible(self.shared_key_note, shared)
        self.form.setRowVisible(self.hosted_url, row is not None)
        self.form.setRowVisible(self.key_note, chosen == "server" or row is not None)
        self.form.setRowVisible(self.tiled, chosen in LOCAL_BACKENDS)

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
        from app.predict.models.registry import download

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
        s.server_key = self.server_key.text().strip()
        s.remote_mode = self.remote_mode.currentData()
        s.hosted_url = self.hosted_url.text().strip()
        for name, (attr, _) in HOSTED_KEYS.items():
            setattr(s, attr, self.hosted_keys[name].text().strip())
        s.cache_mb = self.cache_mb.value()
        s.tiled = self.tiled.isChecked()
        s.tolerance = self.tolerance.value()
        s.label_popup = self.label_popup.isChecked()
        s.hover_preview = self.hover_preview.isChecked()
        super().accept()

    def reject(self) -> None:
        if self.download_task is not None:
            self.download_task.cancel()
        super().reject()
