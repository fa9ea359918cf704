"""The instance layer as one cached picture (issue 16): instances are drawn, a repaint over
them (a SAM answer) paints none of them again, an accept repaints only its neighbours, and
selection, vertex hover and live edits still work on the selected instance's own item."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, click, open_window, view_pos, wait_mask

from app.core.types import Source

A = box(5, 5, 25, 25)  # alone in the top left corner
OUTSIDE = (40.0, 100.0)  # covered by no instance


def pixel(w: object, x: float, y: float) -> QColor:
    """The canvas's colour at image point (x, y), painted now."""
    canvas = w.canvas  # type: ignore[attr-defined]
    return canvas.viewport().grab().toImage().pixelColor(view_pos(w, x, y))  # type: ignore[no-any-return]


def test_instances_drawn_by_one_picture_with_selection_and_hover(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    layer = w.instance_layer
    bare_a, bare_out = pixel(w, 15, 15), pixel(w, *OUTSIDE)
    w.session.add_instance(A, Source.MANUAL)
    for i in range(40):  # a pile of overlapping instances on the right
        w.session.add_instance(box(70 + i % 8 * 8, 10 + i // 8 * 10, 110 + i % 8 * 5,
                                   60 + i // 8 * 10), Source.MANUAL)
    qtbot.waitUntil(lambda: len(layer.items) == 41, timeout=TIMEOUT)
    a_id = min(layer.items)  # the first one: A
    assert layer.picture.scene() is w.canvas.scene()
    assert all(item.scene() is None for item in layer.items.values())  # none is an item
    # drawn: the instance's fill is over the image, the image elsewhere is untouched
    shown_a = pixel(w, 15, 15)
    assert shown_a != bare_a and pixel(w, *OUTSIDE) == bare_out
    # a SAM answer over the pile repaints the canvas without painting any instance again
    painted = layer.picture.painted
    click(qtbot, w, 90, 40)
    wait_mask(qtbot, w)
    assert w.mask_layer.pixels > 0
    pixel(w, 90, 40)
    assert layer.picture.painted == painted
    w.sam_tool.clear()
    # an accept paints the new instance and the few it overlaps, not the whole pile
    w.session.add_instance(box(8, 8, 12, 12), Source.MANUAL)
    qtbot.waitUntil(lambda: len(layer.items) == 42, timeout=TIMEOUT)
    pixel(w, 10, 10)
    assert 1 <= layer.picture.painted - painted <= 3
    # selection: the chosen instance leaves the picture for an item of its own, drawn with
    # a stronger fill and a dashed ring; the others stay in the picture
    w.set_tool("edit")
    click(qtbot, w, 20, 20)
    qtbot.waitUntil(lambda: w.app_state.selection == [a_id], timeout=TIMEOUT)
    item = layer.items[a_id]
    assert item.scene() is w.canvas.scene() and len(item.pens) == 3
    assert item.pens[2].style() == Qt.PenStyle.DashLine
    assert sum(i.scene() is not None for i in layer.items.values()) == 1
    selected_a = pixel(w, 20, 20)
    assert selected_a != shown_a and selected_a != bare_a
    # hover: the pointer on a corner of the selected instance marks that vertex
    qtbot.mouseMove(w.canvas.viewport(), view_pos(w, 25, 25))
    qtbot.waitUntil(lambda: w.handles.hover is not None, timeout=TIMEOUT)
    assert (w.handles.hover.x(), w.handles.hover.y()) == (25.0, 25.0)
    # a live edit (dragging that vertex) redraws the item only, not the picture
    painted = layer.picture.painted
    vp = w.canvas.viewport()
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=view_pos(w, 25, 25))
    qtbot.mouseMove(vp, view_pos(w, 35, 32))
    assert item.path().boundingRect().right() > 30  # the preview follows the pointer
    pixel(w, 30, 28)
    assert layer.picture.painted == painted
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=view_pos(w, 35, 32))
    qtbot.waitUntil(lambda: w.project.instance(a_id).geometry.bounds[2] > 30, timeout=TIMEOUT)
    # deselected, it goes back into the picture, with the edit drawn
    w.edit_tool.select(None)
    qtbot.waitUntil(lambda: item.scene() is None, timeout=TIMEOUT)
    assert pixel(w, 30, 28) != pixel(w, *OUTSIDE) and pixel(w, 15, 15) == shown_a
    # H hides every instance: the image alone
    w.instance_layer.set_all_hidden(True)
    assert pixel(w, 15, 15) == bare_a
    w.close()


def test_the_picture_looks_like_one_item_per_instance(qtbot: QtBot) -> None:
    """The cached picture and one scene item per instance give the same pixels (at most
    rounding apart), holes and overlaps included."""
    import numpy as np
    from PySide6.QtGui import QImage, QPixmap

    from app.bench.canvas_load import overlapping_instances
    from app.ui.canvas.layers import InstanceLayer
    from app.ui.canvas.shades import shade
    from app.ui.canvas.view import CanvasView

    shapes = overlapping_instances(25) + [box(10, 10, 60, 50).difference(box(20, 20, 40, 40))]
    frames = []
    for cached in (False, True):
        view = CanvasView()
        qtbot.addWidget(view)
        view.resize(480, 360)
        pixmap = QPixmap(160, 120)
        pixmap.fill(QColor(90, 110, 90))
        view.set_image(pixmap)
        view.show()
        spot = view.mapFromScene(QPointF(12, 12))  # inside the ring only
        layer = InstanceLayer(view.scene(), cached=cached)
        layer.set_instances((i, g, shade("#ff3b30", i % 12), True) for i, g in enumerate(shapes))
        assert (layer.picture.scene() is not None) == cached
        image = view.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), -1, 4)
        frames.append(rows[:, :image.width(), :3].astype(int))
    assert frames[0].shape == frames[1].shape
    differ = np.abs(frames[0] - frames[1]).max(axis=-1)
    assert differ.max() <= 8
    # and something was drawn: the ring's fill is not the image's colour
    x, y = spot.x(), spot.y()
    assert np.abs(frames[1][y, x] - np.array([90, 110, 90])).max() > 30
