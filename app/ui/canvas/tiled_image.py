"""The canvas item of a large image: the visible tiles of the pyramid level that matches the
zoom (``app/core/pyramid.py``), tiles made on the task pool, a coarser picture where they are
not there yet. Small images keep the one-pixmap item of ``CanvasView.set_image``.

``open_tiled`` is the whole path of opening a large image: a reduced JPEG decode for a first
picture (about 1.5 s for 20000 x 20000), then the full image (from the caller's loader: the
image store the encoder shares) and its pyramid's coarse levels, all off the GUI thread."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import shiboken6
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from app.core.jobs import CancelToken
from app.core.pyramid import (
    DEFAULT_BUDGET,
    TILE,
    Pyramid,
    TileKey,
    level_for_scale,
    release_free_memory,
    rgb_to_bgrx,
)
from app.ui.tasks import Task, TaskRunner

TILED_PIXELS = 4096 * 4096
"""Images with more pixels are shown tiled. At this size one pixmap costs 64 MiB (besides
the decoded image), its conversion on the pool ~0.15 s and the first paint of the whole image
scaled to the window ~0.1 s; above it both grow with the image (a 20000 x 20000 pixmap: 1.6
GB, seconds), while the tiled item costs a screenful of tiles whatever the image."""

BATCH = 6  # tiles made per pool task: new tiles arrive in small steps while panning


def bgrx_image(pixels: np.ndarray) -> QImage:
    """A QImage over a (h, w, 4) B, G, R, X array (no copy: keep the array alive)."""
    h, w = pixels.shape[:2]
    return QImage(pixels.data, w, h, int(pixels.strides[0]), QImage.Format.Format_RGB32)


class TiledImageItem(QGraphicsItem):
    """Draws a ``Pyramid`` (once given) over a preview (while there is one). Scene
    coordinates are image pixels, as for the pixmap item."""

    def __init__(self, width: int, height: int, runner: TaskRunner | None = None) -> None:
        super().__init__()
        self.width, self.height = int(width), int(height)
        self.runner = runner  # None: tiles are made while painting (tests, tools)
        self.pyramid: Pyramid | None = None
        self._preview: tuple[QImage, np.ndarray] | None = None
        self._base: tuple[QImage, np.ndarray] | None = None  # the coarsest level, whole
        self._loading: Task | None = None
        self._wanted: list[TileKey] = []
        self.drawn: list[TileKey] = []  # the tiles the last paint drew (for tests)
        self.missing: list[TileKey] = []  # the ones it wanted and did not have
        self.level = 0  # the level the last paint wanted
        self.setZValue(-10)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)

    # -- content ---------------------------------------------------------------------------
    def set_preview(self, rgb: np.ndarray) -> None:
        """A whole, reduced picture shown where tiles are missing (until the pyramid is
        built)."""
        pixels = rgb_to_bgrx(rgb)
        self._preview = (bgrx_image(pixels), pixels)
        self.update()

    def set_pyramid(self, pyramid: Pyramid) -> None:
        """The pyramid, its coarse levels built: the preview is no longer needed."""
        self.pyramid = pyramid
        top = pyramid.levels - 1
        base = pyramid.tile_pixels(top, 0, 0)
        if base is not None:
            base = base.copy()  # the cache may drop it
            self._base = (bgrx_image(base), base)
            self._preview = None
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return QRectF(0, 0, self.width, self.height)

    # -- drawing ---------------------------------------------------------------------------
    def tiles_for(self, visible: QRectF, scale: float) -> tuple[int, list[TileKey]]:
        """The level for ``scale`` (screen pixels per image pixel) and its tiles that meet
        ``visible`` (image coordinates), nearest the centre first."""
        pyr = self.pyramid
        if pyr is None:
            return 0, []
        level = level_for_scale(scale, pyr.levels)
        area = visible.intersected(self.boundingRect())
        if area.isEmpty():
            return level, []
        span = pyr.tile << level  # image pixels per tile
        cols, rows = pyr.tiles(level)
        tx0, ty0 = max(0, int(area.left() // span)), max(0, int(area.top() // span))
        tx1 = min(cols - 1, int((area.right() - 1e-6) // span))
        ty1 = min(rows - 1, int((area.bottom() - 1e-6) // span))
        cx, cy = area.center().x() / span - 0.5, area.center().y() / span - 0.5
        keys = [(level, tx, ty) for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]
        keys.sort(key=lambda k: (k[1] - cx) ** 2 + (k[2] - cy) ** 2)
        return level, keys

    def _image_rect(self, key: TileKey) -> QRectF:
        """Where tile ``key`` lies in image coordinates (clipped to the image: a last
        level pixel may stand for fewer image pixels than 2 ** level)."""
        assert self.pyramid is not None
        level, tx, ty = key
        x0, y0, x1, y1 = self.pyramid.tile_rect(level, tx, ty)
        f = float(1 << level)
        return QRectF(x0 * f, y0 * f, (x1 - x0) * f, (y1 - y0) * f).intersected(
            self.boundingRect())

    def _draw_tile(self, painter: QPainter, key: TileKey, pixels: np.ndarray) -> None:
        target = self._image_rect(key)
        f = float(1 << key[0])
        painter.drawImage(target, bgrx_image(pixels),
                          QRectF(0, 0, target.width() / f, target.height() / f))

    def _draw_from(self, painter: QPainter, image: QImage, target: QRectF) -> None:
        """Draw the part ``target`` (image coordinates) of a whole-image picture."""
        sx, sy = image.width() / self.width, image.height() / self.height
        source = QRectF(target.x() * sx, target.y() * sy, target.width() * sx,
                        target.height() * sy)
        painter.drawImage(target, image, source)

    def _draw_fallback(self, painter: QPainter, target: QRectF) -> None:
        pyr = self.pyramid
        if pyr is not None:
            level = self.level + 1
            while level < pyr.levels:  # a coarser tile that is cached already
                f = 1 << level
                span = pyr.tile * f
                key = (level, int(target.center().x() // span),
                       int(target.center().y() // span))
                pixels = pyr.cached(key)
                if pixels is not None:
                    rect = self._image_rect(key)
                    source = QRectF((target.x() - rect.x()) / f, (target.y() - rect.y()) / f,
                                    target.width() / f, target.height() / f)
                    painter.drawImage(target, bgrx_image(pixels), source)
                    return
                level += 1
        picture = self._base or self._preview
        if picture is not None:
            self._draw_from(painter, picture[0], target)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        exposed = option.exposedRect.intersected(self.boundingRect())  # type: ignore[attr-defined]
        scale = painter.worldTransform().m11()
        self.drawn, self.missing = [], []
        if self.pyramid is None:
            if self._preview is not None:
                self._draw_from(painter, self._preview[0], exposed)
            return
        self.level, keys = self.tiles_for(exposed, scale)
        for key in keys:
            target = self._image_rect(key)
            pixels = self.pyramid.cached(key)
            if pixels is None and self.runner is None:
                pixels = self.pyramid.tile_pixels(*key)
            if pixels is None:
                self.missing.append(key)
                self._draw_fallback(painter, target)
            else:
                self._draw_tile(painter, key, pixels)
                self.drawn.append(key)
        if self.missing:
            self._request(self.missing)

    # -- loading ---------------------------------------------------------------------------
    def _request(self, keys: list[TileKey]) -> None:
        self._wanted = list(keys)
        if self._loading is None and self.runner is not None:
            self._next()

    def _next(self) -> None:
        pyr, runner = self.pyramid, self.runner
        batch = [k for k in self._wanted if pyr is not None and pyr.ready(k[0])][:BATCH]
        self._wanted = []
        if not batch or pyr is None or runner is None:
            return
        self._loading = runner.start(_make_tiles, pyr, batch, on_result=self._made,
                                     on_error=self._made)

    def _made(self, _result: object) -> None:
        self._loading = None
        if shiboken6.isValid(self):  # its scene may be gone with its window meanwhile
            self.update()  # the next paint asks for what is still missing

    def cancel(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        self._wanted = []


def _make_tiles(pyramid: Pyramid, keys: list[TileKey]) -> int:
    """On the pool: make (and cache) the tiles of ``keys``."""
    for key in keys:
        pyramid.tile_pixels(*key)
    return len(keys)


def _build(load: Callable[[], np.ndarray], tile: int, budget: int, *,
           progress: Callable[..., None], cancel: CancelToken) -> Pyramid:
    pyramid = Pyramid(load(), tile, budget)
    cancel.raise_if_cancelled()
    pyramid.build(cancel)
    release_free_memory()  # the decoder's freed buffers (Pillow's 16 MB blocks stay mapped)
    return pyramid


class TiledOpening:
    """Opening one large image: a preview task and a pyramid task on ``runner``;
    ``on_first_picture`` runs (GUI thread) when there is something to show, ``on_error``
    if the image cannot be read. ``cancel`` when the person moves on."""

    def __init__(self, runner: TaskRunner, item: TiledImageItem, path: Path,
                 load: Callable[[], np.ndarray], on_first_picture: Callable[[], None],
                 on_error: Callable[[BaseException], None], *, tile: int = TILE,
                 budget: int = DEFAULT_BUDGET) -> None:
        from app.core.pyramid import quick_preview

        self.item = item
        self.shown = False
        self.cancelled = False
        self._on_first_picture, self._on_error = on_first_picture, on_error
        self._runner, self._load, self._tile, self._budget = runner, load, tile, budget
        self._build: Task | None = None
        # the reduced decode first, alone: on two cores a full decode beside it doubles the
        # time to the first picture (the encoder may still decode the image meanwhile)
        self._preview = runner.start(quick_preview, path, item.width, item.height,
                                     on_result=self._previewed,
                                     on_error=lambda _e: self._previewed(None))

    def _start_build(self) -> None:
        if self._build is None and not self.cancelled:
            self._build = self._runner.start(
                _build, self._load, self._tile, self._budget, with_progress=True,
                on_result=self._built, on_error=self._failed)

    def _first(self) -> None:
        if not self.shown and not self.cancelled:
            self.shown = True
            self._on_first_picture()

    def _previewed(self, rgb: np.ndarray | None) -> None:
        if rgb is not None and not self.cancelled and self.item.pyramid is None:
            self.item.set_preview(rgb)
            self._first()
        self._start_build()

    def _built(self, pyramid: Pyramid) -> None:
        if self.cancelled:
            return
        self.item.set_pyramid(pyramid)
        self._first()

    def _failed(self, exc: BaseException) -> None:
        if not self.cancelled:
            self._on_error(exc)

    def cancel(self) -> None:
        self.cancelled = True
        self._preview.cancel()
        if self._build is not None:
            self._build.cancel()
        self.item.cancel()
