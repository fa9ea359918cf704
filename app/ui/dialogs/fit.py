"""Dialogs that fit the screen: no taller or wider than its free area (a 1366 x 768 laptop
keeps the task bar and the title bar), content in a scroll area where it could be longer."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QLayout, QScrollArea, QVBoxLayout, QWidget

SMALL_SCREEN = QSize(1366, 768)
TITLE_BAR = 40  # pixels the window manager's frame takes


def available(widget: QWidget) -> QRect:
    """The free area of the screen ``widget`` is on (the smallest screen we design for
    when Qt knows none, or a larger one: offscreen tests)."""
    screen = widget.screen() or QGuiApplication.primaryScreen()
    area = screen.availableGeometry() if screen is not None else QRect()
    if area.isEmpty():
        return QRect(0, 0, SMALL_SCREEN.width(), SMALL_SCREEN.height())
    return area


def fit_to_screen(dialog: QWidget) -> None:
    """Shrink ``dialog`` to the screen's free area (minus the title bar)."""
    area = available(dialog)
    limit = QSize(area.width() - 20, area.height() - TITLE_BAR - 20)
    size = dialog.size().expandedTo(dialog.minimumSizeHint()).boundedTo(limit)
    dialog.setMaximumSize(limit.expandedTo(QSize(320, 240)))
    dialog.resize(size)


def scrolling(layout: QLayout) -> QScrollArea:
    """``layout`` in a frameless scroll area (vertical only), to put in a dialog."""
    inner = QWidget()
    inner.setLayout(layout)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    return area


def wrap_in_scroll(dialog: QWidget, layout: QLayout, max_height: int = 700) -> QScrollArea:
    """Give ``dialog`` a scroll area holding ``layout`` (its rows), as tall as its content
    up to ``max_height`` and the screen."""
    area = scrolling(layout)
    outer = QVBoxLayout(dialog)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    hint = layout.sizeHint()
    limit = min(max_height, available(dialog).height() - TITLE_BAR - 20)
    area.setMinimumWidth(hint.width() + 24)
    dialog.resize(hint.width() + 30, min(hint.height() + 12, limit))
    return area
