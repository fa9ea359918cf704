"""Dialogs: open, export, settings (backend, models), shortcuts. Each function takes what it
needs (a parent widget, the application state, callables), never the window."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QRect
from PySide6.QtWidgets import QFileDialog, QWidget

if TYPE_CHECKING:
    from app.core.project import Project
    from app.ui.app_state import AppState
    from app.ui.settings import GuiSettings
    from app.ui.tasks import TaskRunner

SwitchBackend = Callable[["GuiSettings"], None]


def screen_area(widget: QWidget) -> QRect:
    """The free area of the screen ``widget`` is on."""
    from app.ui.dialogs.fit import available

    return available(widget)


def ask_folder(parent: QWidget) -> Path | None:
    """Ctrl+O: a folder of images to open (None: cancelled)."""
    folder = QFileDialog.getExistingDirectory(parent, "Open a folder of images")
    return Path(folder) if folder else None


def ask_project(parent: QWidget) -> Path | None:
    """Ctrl+Shift+O: a project file to open (None: cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open a project", "",
                                          "MaskLoop projects (*.maskloop)")
    return Path(path) if path else None


def export(parent: QWidget, project: Project, tasks: TaskRunner, *,
           shown_ids: list[int], selected_ids: list[int]) -> None:
    """Ctrl+E: the export dialog (its image choices: all, done, those the image list shows,
    those selected in it)."""
    from app.ui.dialogs.export_dialog import ExportDialog

    ExportDialog(project, tasks, parent, shown_ids=shown_ids,
                 selected_ids=selected_ids).exec()


def settings(parent: QWidget, state: AppState, tasks: TaskRunner,
             switch_backend: SwitchBackend | None) -> None:
    """Ctrl+,: the settings dialog; what it changed is applied through ``state``."""
    from app.ui.dialogs.settings_dialog import SettingsDialog

    dlg = SettingsDialog(state.settings, tasks, state.description, parent)
    before = backend_choice(state.settings)
    if dlg.exec():
        apply_settings(state, before, switch_backend)


def backend_choice(s: object) -> tuple[object, ...]:
    return tuple(getattr(s, k) for k in ("backend", "model", "checkpoint", "device",
                                          "server_url", "server_key", "remote_mode",
                                          "hosted_url", "roboflow_key", "fal_key",
                                          "segmind_key", "tiled"))


def apply_settings(state: AppState, before: tuple[object, ...],
                   switch_backend: SwitchBackend | None) -> None:
    """Save the settings (edited in ``state.settings``) and tell their observers; switch the
    backend when its choice changed."""
    s = state.settings
    s.save()
    state.set_tolerance(s.tolerance)
    state.set_hover_preview(s.hover_preview)
    if backend_choice(s) == before:
        state.say("Settings saved")
    elif switch_backend is not None:
        state.say("Loading the new backend…")
        switch_backend(s)
    else:
        state.say("Settings saved; the new backend is used from the next start")
