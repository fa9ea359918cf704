"""The application's shared state: each setting that several parts of the window use has
one owner here, with a signal that panels, tools and dialogs observe instead of being kept in
step by hand. The values themselves live in ``GuiSettings`` (saved between runs)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.ui.settings import GuiSettings


class AppState(QObject):
    tolerance_changed = Signal(float)  # polygon simplification, pixels

    def __init__(self, settings: GuiSettings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings

    @property
    def tolerance(self) -> float:
        """Simplification tolerance (pixels) of new instances and of the slider."""
        return self.settings.tolerance

    def set_tolerance(self, pixels: float) -> None:
        """Change the tolerance (from the slider or the settings dialog) and tell observers."""
        self.settings.tolerance = pixels
        self.tolerance_changed.emit(pixels)
