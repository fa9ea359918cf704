"""Dialogs: open, export, settings (backend, models), shortcuts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QFileDialog, QWidget

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def screen_area(widget: QWidget) -> QRect:
    """The free area of the screen ``widget`` is on."""
    from app.ui.dialogs.fit import available

    return available(widget)


def _open(w: MainWindow, path: Path) -> None:
    if w.open_path is None:
        w.show_message("Opening another project is not available here")
        return
    w.open_path(path)


def open_folder(w: MainWindow) -> None:
    folder = QFileDialog.getExistingDirectory(w, "Open a folder of images")
    if folder:
        _open(w, Path(folder))


def open_project(w: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(w, "Open a project", "",
                                          "MaskLoop projects (*.maskloop)")
    if path:
        _open(w, Path(path))


def open_recent(w: MainWindow, path: str) -> None:
    _open(w, Path(path))


def export(w: MainWindow) -> None:
    from app.ui.dialogs.export_dialog import ExportDialog

    panel = w.images_panel
    ExportDialog(w.project, w.tasks, w,
                 shown_ids=[int(r.id or 0) for r in panel.visible_records()],
                 selected_ids=[int(r.id or 0) for r in panel.selected_records()]).exec()


def settings(w: MainWindow) -> None:
    from app.ui.dialogs.settings_dialog import SettingsDialog

    dlg = SettingsDialog(w.settings, w.tasks, w.bridge.description, w)
    before = backend_choice(w.settings)
    if dlg.exec():
        apply_settings(w, before)


def backend_choice(s: object) -> tuple[object, ...]:
    return tuple(getattr(s, k) for k in ("backend", "model", "checkpoint", "device",
                                          "server_url", "server_key", "remote_mode",
                                          "hosted_url", "roboflow_key", "fal_key",
                                          "segmind_key"))


def apply_settings(w: MainWindow, before: tuple[object, ...]) -> None:
    """Save the settings; switch the backend when its choice changed."""
    w.settings.save()
    w.app_state.set_tolerance(w.settings.tolerance)
    w.hover.enabled = w.settings.hover_preview
    if backend_choice(w.settings) == before:
        w.show_message("Settings saved")
    elif w.switch_backend is not None:
        w.show_message("Loading the new backend…")
        w.switch_backend(w.settings)
    else:
        w.show_message("Settings saved; the new backend is used from the next start")


def shortcuts(w: MainWindow) -> None:
    """F1: the table of every key and mouse action."""
    from app.ui.help_dialog import show_help

    w.help_dialog = show_help(w)
