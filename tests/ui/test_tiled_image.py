"""Issue 16: large images are drawn as tiles of the pyramid level that matches the zoom,
made off the GUI thread; opening one shows a first picture before the fine tiles; an accept
touches only its own instance's item."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, open_window

from app.core.pyramid import Pyramid
from app.core.types import Source
from app.ui.canvas.tiled_image import TILED_PIXELS, TiledImageItem
from app.ui.canvas.view import CanvasView
from app.ui.tasks import TaskRunner


def textured(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (h // 16, w // 16, 3), np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def canvas_with(qtbot: QtBot, item: TiledImageItem) -> CanvasView:
    view = CanvasView()
    qtbot.addWidget(view)
    view.resize(400, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_tiled(item, item.width, item.height)
    qtbot.wait(10)
    return view


def look_at(view: CanvasView, x: float, y: float, scale: float) -> QRectF:
    """Show image point (x, y) at the centre at ``scale``; the visible image rect."""
    view.resetTransform()
    view.scale(scale, scale)
    view.centerOn(QPointF(x, y))
    view.viewport().repaint()
    return view.mapToScene(view.viewport().rect()).boundingRect()


def expected(rect: QRectF, level: int, tile: int, w: int, h: int) -> set[tuple[int, int, int]]:
    span = tile << level
    x0, y0 = max(0.0, rect.left()), max(0.0, rect.top())
    x1, y1 = min(float(w), rect.right()), min(float(h), rect.bottom())
    return {(level, tx, ty) for tx in range(int(x0 // span), int((x1 - 1e-6) // span) + 1)
            for ty in range(int(y0 // span), int((y1 - 1e-6) // span) + 1)}


def test_item_paints_the_visible_tiles_of_the_level_of_the_zoom(qtbot: QtBot) -> None:
    img = textured(2000, 3000)
    pyr = Pyramid(img, tile=256)
    pyr.build()
    item = TiledImageItem(3000, 2000)  # no runner: tiles made while painting
    item.set_pyramid(pyr)
    view = canvas_with(qtbot, item)
    for (x, y, scale, level) in [(1000, 700, 1.0, 0), (2900, 1900, 1.5, 0),
                                 (1500, 1000, 0.4, 1), (1500, 1000, 0.2, 2),
                                 (1500, 1000, 0.02, pyr.levels - 1)]:
        rect = look_at(view, x, y, scale)
        assert item.level == level, (x, y, scale)
        assert set(item.drawn) == expected(rect, level, 256, 3000, 2000), (x, y, scale)
        assert not item.missing
    # what is drawn is the image: a pixel of the screen equals the image's there
    look_at(view, 1000, 700, 1.0)
    shot = view.viewport().grab().toImage()
    p = view.mapFromScene(QPointF(1000.5, 700.5))
    c = shot.pixelColor(p)
    got = np.array([c.red(), c.green(), c.blue()])
    near = img[699:702, 999:1002].reshape(-1, 3).astype(int)  # smoothing at half pixels
    assert (got >= near.min(axis=0) - 3).all() and (got <= near.max(axis=0) + 3).all()


def test_missing_tiles_come_from_the_pool_with_a_coarser_picture_meanwhile(
        qtbot: QtBot) -> None:
    img = textured(2000, 3000)
    pyr = Pyramid(img, tile=256)
    pyr.build()
    runner = TaskRunner(1)
    item = TiledImageItem(3000, 2000, runner)
    item.set_pyramid(pyr)
    view = canvas_with(qtbot, item)
    rect = look_at(view, 1200, 800, 1.0)
    want = expected(rect, 0, 256, 3000, 2000)
    assert set(item.missing) == want and not item.drawn  # the first frame: the fallback
    qtbot.waitUntil(lambda: view.viewport().repaint() or set(item.drawn) == want,
                    timeout=TIMEOUT)
    assert all(pyr.cached(k) is not None for k in want)
    runner.wait()


def test_large_image_opens_without_blocking(qtbot: QtBot, tmp_path: Path) -> None:
    """The full decode is held back: the window shows the reduced JPEG decode at once (and
    keeps answering); the tiles come once the image and its pyramid are there."""
    from app.core.images import load_image
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.workers import ImageStore, PredictorBridge

    h, w = 3000, 6000
    assert w * h > TILED_PIXELS
    folder = tmp_path / "big"
    folder.mkdir()
    cv2.imwrite(str(folder / "big.jpg"), cv2.cvtColor(textured(h, w), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 90])
    release = threading.Event()

    def slow_load(path: Path) -> np.ndarray:
        release.wait(60)
        return load_image(path)

    bridge = PredictorBridge(ClassicalPredictor(), ImageStore(loader=slow_load))
    try:
        win = open_window(qtbot, folder, bridge)
        item = win.canvas.tiled_item
        assert isinstance(item, TiledImageItem)
        assert win.canvas.image_size == (w, h)
        assert item.pyramid is None  # the full image is not even decoded yet
        ticks: list[int] = []
        from PySide6.QtCore import QTimer
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(1))
        timer.start(10)
        qtbot.wait(200)
        assert len(ticks) >= 5  # the GUI thread answers
        shot = win.canvas.viewport().grab().toImage()
        p = win.canvas.mapFromScene(QPointF(w / 2, h / 2))
        assert shot.pixelColor(p).lightness() > 0 or shot.pixelColor(p).red() > 0
        assert (shot.pixelColor(p).red(), shot.pixelColor(p).green()) != (40, 40)
        release.set()
        qtbot.waitUntil(lambda: item.pyramid is not None, timeout=60000)
        win.canvas.viewport().repaint()
        qtbot.waitUntil(lambda: win.canvas.viewport().repaint() or (
            bool(item.drawn) and not item.missing), timeout=TIMEOUT)
        assert item.level >= 2  # fitted: a coarse level, not the full image
        win.close()
    finally:
        release.set()
        bridge.close()


def test_accept_touches_only_its_own_item(qtbot: QtBot, image_folder: Path,
                                          classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    layer = w.instance_layer
    for i in range(5):
        w.session.add_instance(box(10 * i, 10, 10 * i + 8, 30), Source.MANUAL)
    qtbot.waitUntil(lambda: len(layer.items) == 5, timeout=TIMEOUT)
    before = dict(layer.items)
    created, reshaped = layer.created, layer.reshaped
    w.session.add_instance(box(60, 40, 90, 70), Source.MANUAL)
    assert len(layer.items) == 6
    assert layer.created == created + 1 and layer.reshaped == reshaped  # one new item
    assert all(layer.items[i] is item for i, item in before.items())  # the others kept
    # an edit of one instance replaces only its path
    iid = sorted(before)[2]
    w.session.edit_geometry(iid, box(20, 10, 28, 40))
    assert layer.reshaped == reshaped + 1 and layer.created == created + 1
    assert layer.items[iid] is before[iid]
    assert layer.items[iid].path().boundingRect().height() == 30
    assert all(line.path() == layer.items[iid].path() for line in layer.items[iid].lines)
    # undo: the path comes back, nothing else is touched; delete removes one item
    w.session.undo()
    assert layer.reshaped == reshaped + 2 and layer.created == created + 1
    w.session.delete([iid])
    assert iid not in layer.items and len(layer.items) == 5
    w.close()
