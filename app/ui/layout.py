"""Small and large screens: the side panels collapse to icons on a narrow window and come
back when it is wide again; a panel can be opened (or closed) from its icon at any time.
The canvas refits the image after a resize unless the person zoomed (canvas/view.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QDockWidget, QToolBar

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

COMPACT_BELOW = 1200  # window width: the right panels collapse below it
NARROW_BELOW = 900  # and the images panel too
PANEL_MIN_WIDTH = 150
COMPACT_IMAGES_WIDTH = 200  # the images panel on a compact window


def letter_icon(letter: str, colour: str = "#5a8dd6") -> QIcon:
    """A round icon with a letter (no icon files to ship)."""
    pm = QPixmap(32, 32)
    pm.fill(QColor(0, 0, 0, 0))
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(colour))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(2, 2, 28, 28, 7, 7)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(14 if len(letter) > 1 else 17)
    p.setFont(font)
    p.setPen(QColor("white"))
    p.drawText(pm.rect(), Qt.AlignmentFlag.AlignCenter, letter)
    p.end()
    return QIcon(pm)


class ResponsivePanels(QObject):
    """Watches the window's width; ``panel_bar`` holds an icon per panel (checked: shown)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.docks = {d.objectName(): d for d in window.findChildren(QDockWidget)}
        bar = self.panel_bar = QToolBar("Panels", window)
        bar.setObjectName("toolbar_panels")
        bar.setIconSize(QSize(22, 22))
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        window.addToolBar(Qt.ToolBarArea.RightToolBarArea, bar)
        for dock in self.docks.values():
            dock.setMinimumWidth(PANEL_MIN_WIDTH)
            action = dock.toggleViewAction()
            title = dock.windowTitle()
            action.setIcon(letter_icon(title[:2]))
            action.setToolTip(f"{title} panel (shown / hidden)")
            bar.addAction(action)
        self.mode: str | None = None  # "wide" | "compact" | "narrow"
        self._auto_hidden: set[str] = set()
        window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.w and event.type() == QEvent.Type.Resize:
            self.apply(self.w.width())
        return False

    def apply(self, width: int) -> None:
        """Collapse or restore the panels for a window ``width`` pixels wide."""
        mode = "narrow" if width < NARROW_BELOW else "compact" if width < COMPACT_BELOW \
            else "wide"
        if mode == self.mode:
            return
        self.mode = mode
        hide = {"narrow": {"dock_images", "dock_labels", "dock_instances", "dock_video"},
                "compact": {"dock_labels", "dock_instances"}, "wide": set()}[mode]
        for name, dock in self.docks.items():
            if name in hide and not dock.isHidden() and not dock.isFloating():
                dock.hide()
                self._auto_hidden.add(name)
            elif name not in hide and name in self._auto_hidden:
                dock.show()
                self._auto_hidden.discard(name)
        images = self.docks.get("dock_images")
        if mode == "compact" and images is not None and not images.isHidden():
            self.w.resizeDocks([images], [COMPACT_IMAGES_WIDTH], Qt.Orientation.Horizontal)

    def collapsed(self) -> list[str]:
        return sorted(n for n, d in self.docks.items() if not d.isVisible())
