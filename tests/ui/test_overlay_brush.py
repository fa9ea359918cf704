"""The live SAM candidate's outline, and the brush radius keys with their circle cursor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import click, drag, key, open_window, view_pos, wait_mask

from app.core.types import Source
from app.ui.canvas.convert import OVERLAY_MAX_SIDE, live_overlay, mask_outline
from app.ui.tools.edit_tool import BRUSH_MAX, BRUSH_SCREEN_RADIUS, BRUSH_STEP


def test_outline_follows_the_mask_and_its_hole() -> None:
    mask = np.zeros((60, 80), bool)
    mask[10:50, 20:70] = True
    mask[25:35, 40:50] = False  # a hole
    path = mask_outline(mask)
    rect = path.boundingRect()
    assert (rect.left(), rect.top(), rect.right(), rect.bottom()) == (20.5, 10.5, 69.5, 49.5)
    assert path.elementCount() >= 8  # the outer ring and the hole's
    ov = live_overlay(mask, QColor("#00ff00"))
    assert ov is not None and ov.pixels == int(mask.sum()) and (ov.x, ov.y, ov.step) == (20, 10, 1)
    assert ov.outline.boundingRect() == rect
    assert live_overlay(np.zeros((5, 5), bool), QColor("#00ff00")) is None


def test_outline_of_a_subsampled_mask_is_in_image_coordinates() -> None:
    mask = np.zeros((OVERLAY_MAX_SIDE * 2, 64), bool)
    mask[1000:3000, 8:40] = True
    ov = live_overlay(mask, QColor("#ff0000"))
    assert ov is not None and ov.step == 2
    rect = ov.outline.boundingRect()
    assert 999 <= rect.top() <= 1003 and 2995 <= rect.bottom() <= 3000
    assert 7 <= rect.left() <= 10 and 37 <= rect.right() <= 40


def test_live_mask_has_an_outline(qtbot: QtBot, image_folder: Path,
                                  classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    click(qtbot, w, 70, 55)
    wait_mask(qtbot, w)
    assert w.mask_layer.pixels > 0 and w.mask_layer.line.isVisible()
    outline = w.mask_layer.outline().boundingRect()
    assert outline.contains(QPointF(70, 55)) and outline.width() > 20
    assert w.mask_layer.line.pen().color() == QColor(w.session.colour_of("object"))
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.mask_layer.outline().isEmpty() and not w.mask_layer.line.isVisible()
    w.close()


def test_brush_radius_keys_and_circle_cursor(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_instance(box(20, 20, 60, 60), Source.MANUAL)
    iid = w.session.instances()[0].id
    key(qtbot, w, Qt.Key.Key_V)
    click(qtbot, w, 30, 30)
    assert not w.brush_cursor.isVisible()
    key(qtbot, w, Qt.Key.Key_B)
    assert w.edit_tool.brush is not None and not w.edit_tool.erase
    # A hover move sent straight to the viewport: QTest's synthetic moves go through the
    # window system, which drops a move to where the (global, shared) pointer already is.
    vp = w.canvas.viewport()
    pos = QPointF(view_pos(w, 10, 40))
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, pos, vp.mapToGlobal(pos),
                                           Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                           Qt.KeyboardModifier.NoModifier))
    scale = w.canvas.scale_factor()
    assert w.brush_cursor.isVisible()
    assert w.brush_cursor.radius == pytest.approx(BRUSH_SCREEN_RADIUS / scale, rel=0.02)
    key(qtbot, w, Qt.Key.Key_BracketRight)
    key(qtbot, w, Qt.Key.Key_BracketRight)
    bigger = BRUSH_SCREEN_RADIUS * BRUSH_STEP**2
    assert w.edit_tool.brush_screen_radius == pytest.approx(bigger)
    assert w.brush_cursor.radius == pytest.approx(bigger / scale, rel=0.02)
    assert "Brush radius" in w.statusBar().currentMessage()
    # a bigger brush paints a wider stroke
    before = w.project.instance(iid).geometry.area
    drag(qtbot, w, (8, 40), (12, 40))
    grown = w.project.instance(iid).geometry.area - before
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    for _ in range(4):
        key(qtbot, w, Qt.Key.Key_BracketLeft)
    assert w.edit_tool.brush_screen_radius < BRUSH_SCREEN_RADIUS
    drag(qtbot, w, (8, 40), (12, 40))
    assert w.project.instance(iid).geometry.area - before < grown
    for _ in range(40):
        w.edit_tool.resize_brush(1)
    assert w.edit_tool.brush_screen_radius == BRUSH_MAX
    key(qtbot, w, Qt.Key.Key_V)  # leaving the brush hides the circle
    assert not w.brush_cursor.isVisible()
    w.close()
