"""Scene items drawn over the image: the live SAM mask, instances, vertex handles, prompt
marks and drawing previews. All sizes that should not grow with zoom are cosmetic."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QPixmapCache,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QStyleOptionGraphicsItem,
    QWidget,
)

from app.core.geometry_edit import Shape
from app.core.types import Box, Geometry, Point
from app.ui.canvas.convert import LiveOverlay, geometry_path, live_overlay
from app.ui.canvas.shades import outline_colour

Z_INSTANCES, Z_MASK, Z_HANDLES, Z_MARKS = 1, 2, 3, 4


def cosmetic_pen(colour: QColor, width: float = 1.5, style: Qt.PenStyle = Qt.PenStyle.SolidLine
                 ) -> QPen:
    pen = QPen(colour, width, style)
    pen.setCosmetic(True)
    return pen


class MaskLayer:
    """The live candidate mask: one pixmap of the mask's bounding box, and its outline
    (a white halo under a line of the label's colour, so it shows on any background)."""

    def __init__(self, scene: QGraphicsScene) -> None:
        self.item = QGraphicsPixmapItem()
        self.item.setZValue(Z_MASK)
        self.item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        scene.addItem(self.item)
        self.halo = QGraphicsPathItem()
        self.line = QGraphicsPathItem()
        halo = QColor(255, 255, 255, 210)
        self.halo.setPen(cosmetic_pen(halo, 3.5))
        for z, path_item in enumerate((self.halo, self.line), start=1):
            path_item.setZValue(Z_MASK + 0.1 * z)
            path_item.setBrush(Qt.BrushStyle.NoBrush)
            scene.addItem(path_item)
        self.pixels = 0  # mask area, for tests and the status bar

    def set_mask(self, mask: np.ndarray | None, colour: QColor) -> None:
        """Build the overlay here and show it (``show`` takes one built elsewhere)."""
        self.show(None if mask is None else live_overlay(mask, colour), colour)

    def show(self, overlay: LiveOverlay | None, colour: QColor) -> None:
        if overlay is None:
            self.clear()
            return
        self.item.setPixmap(QPixmap.fromImage(overlay.image))
        self.item.setPos(overlay.x, overlay.y)
        self.item.setScale(overlay.step)
        self.item.setVisible(True)
        self.line.setPen(cosmetic_pen(QColor(colour), 1.5))
        for path_item in (self.halo, self.line):
            path_item.setPath(overlay.outline)
            path_item.setVisible(True)
        self.pixels = overlay.pixels

    def outline(self) -> QPainterPath:
        return self.line.path()

    def clear(self) -> None:
        self.item.setPixmap(QPixmap())
        self.item.setVisible(False)
        for path_item in (self.halo, self.line):
            path_item.setPath(QPainterPath())
            path_item.setVisible(False)
        self.pixels = 0


class InstanceItem(QGraphicsPathItem):
    """An instance: its shade's translucent fill (this item, no pen), then a thin outline
    over a light halo (visible on any background); the selected ones a wider line and a
    dashed ring. Each line is a child path item with a cosmetic pen sharing this item's path
    (implicitly shared, no copy): Qt draws them all, no Python ``paint`` runs per frame.
    In the scene only while selected; otherwise ``InstancePicture`` draws it (same path,
    brush and pens) into its cached pixmap."""

    def __init__(self, path: QPainterPath) -> None:
        super().__init__(path)
        self.setPen(Qt.PenStyle.NoPen)
        self.pens: list[QPen] = []
        self.lines: list[QGraphicsPathItem] = []
        self.extent = _extent(path)  # the path's control point rectangle, as floats

    def set_pens(self, pens: list[QPen]) -> None:
        """The outline's pens, bottom first (each one child item)."""
        self.pens = pens
        while len(self.lines) < len(pens):
            line = QGraphicsPathItem(self.path(), self)
            line.setBrush(Qt.BrushStyle.NoBrush)
            line.setFlag(QGraphicsItem.GraphicsItemFlag.ItemStacksBehindParent, False)
            self.lines.append(line)
        while len(self.lines) > len(pens):
            line = self.lines.pop()
            if line.scene() is not None:
                line.scene().removeItem(line)  # and from this item's children
            else:  # this item is drawn by the instance picture, not in the scene
                line.setParentItem(None)  # type: ignore[arg-type]  # None is allowed
        for line, pen in zip(self.lines, pens, strict=True):
            line.setPen(pen)

    def set_path(self, path: QPainterPath) -> None:
        self.setPath(path)
        self.extent = _extent(path)
        for line in self.lines:
            line.setPath(path)


def _extent(path: QPainterPath) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the path's control points: the picture tests every
    instance against the exposed rectangle on each paint, in plain floats (no Qt call)."""
    rect = path.controlPointRect()
    return rect.left(), rect.top(), rect.right(), rect.bottom()


OUTLINE_REACH = 3.0  # screen pixels: half the widest baked outline (2.6) and antialiasing
PIXMAP_CACHE_KIB = 128 * 1024  # the instance picture of a 4K canvas is ~33 MiB


class InstancePicture(QGraphicsItem):
    """The instances that are not being edited, painted as one item that Qt keeps as a
    pixmap in device coordinates (``DeviceCoordinateCache``). Any repaint over them (the
    live mask, the busy ring, the hover preview) blits that pixmap instead of rasterising
    every instance's fill and outlines again, which grew with their number (issue 16); a
    change repaints only the changed instance's rectangle into the pixmap."""

    def __init__(self, items: dict[int, InstanceItem], baked: Callable[[int], bool]) -> None:
        super().__init__()
        self.setZValue(Z_INSTANCES)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.items, self.baked = items, baked  # the layer's: drawing order = its order
        self._area = QRectF()  # the scene's rectangle
        self._rect = QRectF()  # how far the instances reach (inside the area, normally)
        self.painted = 0  # instance paths drawn into the pixmap (for tests and the benchmark)

    def set_area(self, rect: QRectF) -> None:
        """The scene's rectangle (the image and the margin the view can show): the picture
        covers it all, so an accept never resizes the picture (which would drop its pixmap
        and paint every instance again). Qt caches only the part in the viewport."""
        if rect != self._area:
            self.prepareGeometryChange()
            self._area = QRectF(rect)

    def changed(self, rect: QRectF) -> None:
        """Repaint this scene rectangle (an instance's old or new bounds) into the pixmap;
        an instance beyond the scene's rectangle grows the picture (repainted whole)."""
        if rect.isEmpty():
            return
        padded = _padded(rect, self._reach())
        if not self.boundingRect().contains(padded):
            self.prepareGeometryChange()
            self._rect = self._rect.united(rect) if not self._rect.isEmpty() else QRectF(rect)
            self.update()
        else:
            self.update(padded)

    def reset(self) -> None:
        """Nothing baked any more (another image): forget how far instances reached."""
        if not self._rect.isEmpty():
            self.prepareGeometryChange()
            self._rect = QRectF()

    def _reach(self) -> float:
        """How far (scene units) an outline reaches beyond its path at the smallest zoom of
        the views showing the picture: the outlines are cosmetic (screen pixels)."""
        scene = self.scene()
        scales = [abs(v.transform().m11()) for v in scene.views()] if scene else []
        return OUTLINE_REACH / max(min(scales, default=1.0), 1e-3)

    def boundingRect(self) -> QRectF:  # noqa: N802
        if self._rect.isEmpty():
            return QRectF(self._area)
        # an instance beyond the scene's rectangle (rare): room for outlines down to 1/50 zoom
        pad = max(3.0, 0.02 * max(self._rect.width(), self._rect.height()))
        return self._area.united(_padded(self._rect, pad))

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        exposed: QRectF = option.exposedRect  # type: ignore[attr-defined]
        if exposed.width() <= 0 or exposed.height() <= 0:
            return
        # an instance is drawn when its rectangle, padded by the outline's reach, meets the
        # exposed one: tested in floats first, as a repaint of one instance's area (an
        # accept) should cost little per instance not drawn
        margin = self._reach()
        ex0, ey0 = exposed.left() - margin, exposed.top() - margin
        ex1, ey1 = exposed.right() + margin, exposed.bottom() + margin
        for iid, item in self.items.items():
            x0, y0, x1, y1 = item.extent
            if x0 >= ex1 or ex0 >= x1 or y0 >= ey1 or ey0 >= y1:
                continue
            if not item.isVisible() or not self.baked(iid):
                continue
            path = item.path()
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(item.brush())
            painter.drawPath(path)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for pen in item.pens:
                painter.setPen(pen)
                painter.drawPath(path)
            self.painted += 1


def _padded(rect: QRectF, margin: float) -> QRectF:
    return rect.adjusted(-margin, -margin, margin, margin)


class InstanceLayer:
    """One filled, outlined path per instance; holes show through (odd-even fill). Each
    instance has its own shade of its label's colour (see shades.py).

    ``set_instances`` is incremental: an instance whose geometry, colour and visibility are
    unchanged keeps its item untouched, so an accept costs one new item, not a rebuild of
    all (``created`` and ``reshaped`` count the items made and the paths replaced).

    ``cached`` (the default): the instances are drawn by one ``InstancePicture``; only the
    selected ones (being edited: live previews, dashed outline) are items of the scene, over
    it. Not cached: every instance is an item of the scene (what the benchmark compares)."""

    def __init__(self, scene: QGraphicsScene, cached: bool = True) -> None:
        self.scene = scene
        self.cached = cached
        self.items: dict[int, InstanceItem] = {}
        self.opacity = 0.4
        self.selected: set[int] = set()
        self.all_hidden = False  # H: every instance hidden (the list's ticks are kept)
        self._colours: dict[int, QColor] = {}
        self._visible: dict[int, bool] = {}
        self._geoms: dict[int, Geometry] = {}
        self._given: dict[int, str | QColor] = {}  # the colour object passed last, as it is
        self.created = 0  # items made (for tests and the benchmark)
        self.reshaped = 0  # paths replaced on existing items
        self.picture = InstancePicture(self.items, self.baked)
        if cached:
            if QPixmapCache.cacheLimit() < PIXMAP_CACHE_KIB:  # Qt keeps the picture there
                QPixmapCache.setCacheLimit(PIXMAP_CACHE_KIB)
            scene.addItem(self.picture)
            self.picture.set_area(scene.sceneRect())
            scene.sceneRectChanged.connect(self.picture.set_area)

    def baked(self, iid: int) -> bool:
        """Drawn by the picture (not an item of the scene of its own)."""
        return self.cached and iid not in self.selected

    def set_instances(self, rows: Iterable[tuple[int, Geometry, str | QColor, bool]]) -> None:
        """Show exactly these rows of (instance id, geometry, colour, visible): new ones get
        an item, changed ones a new path or style, gone ones lose theirs. A row of the very
        objects (geometry, colour) shown last time costs a look-up."""
        seen: set[int] = set()
        for iid, geom, colour, visible in rows:
            seen.add(iid)
            item = self.items.get(iid)
            if (item is not None and self._geoms.get(iid) is geom
                    and self._given.get(iid) is colour and self._visible.get(iid) == visible):
                continue  # the very objects drawn last time: nothing to compare or redo
            self._given[iid] = colour
            if item is None:
                item = InstanceItem(geometry_path(geom))
                item.setZValue(Z_INSTANCES + 0.1)
                self.items[iid] = item
                if not self.baked(iid):
                    self.scene.addItem(item)
                self.created += 1
                restyle = dirty = True
            else:
                old = self._geoms.get(iid)
                dirty = old is not geom and not _same_geometry(old, geom)
                if dirty:
                    self._changed(iid)  # where it was
                    item.set_path(geometry_path(geom))
                    self.reshaped += 1
                restyle = self._colours.get(iid) != QColor(colour)
            self._geoms[iid] = geom
            self._colours[iid] = QColor(colour)
            if self._visible.get(iid) != visible or restyle:
                self._visible[iid] = visible
                item.setVisible(visible and not self.all_hidden)
                dirty = True
            if restyle:
                self._style(iid)
            if dirty:  # an unchanged instance costs the picture nothing
                self._changed(iid)
        for iid in [i for i in self.items if i not in seen]:
            self._changed(iid)
            item = self.items.pop(iid)
            if item.scene() is not None:
                self.scene.removeItem(item)
            self._colours.pop(iid, None)
            self._given.pop(iid, None)
            self._visible.pop(iid, None)
            self._geoms.pop(iid, None)
        if not self.items:
            self.picture.reset()

    def set_geometry(self, iid: int, geom: Geometry | None) -> None:
        """Live preview of an edit (not stored)."""
        item = self.items.get(iid)
        if item is not None:
            self._changed(iid)
            item.set_path(geometry_path(geom) if geom is not None else QPainterPath())
            self._changed(iid)
            self._geoms.pop(iid, None)  # the stored geometry is drawn again on refresh

    def set_opacity(self, opacity: float) -> None:
        self.opacity = opacity
        for iid in self.items:
            self._style(iid)
        self.picture.update()

    def set_selected(self, ids: Iterable[int]) -> None:
        new = set(ids)
        changed = new ^ self.selected
        self.selected = new
        for iid in changed:
            item = self.items.get(iid)
            if item is None:
                continue
            self._style(iid)
            if self.cached:  # the selected ones leave the picture, the others go back
                if iid in new and item.scene() is None:
                    self.scene.addItem(item)
                elif iid not in new and item.scene() is not None:
                    self.scene.removeItem(item)
                self.picture.changed(_bounds(item))

    def set_visible(self, iid: int, visible: bool) -> None:
        if iid in self.items:
            self._visible[iid] = visible
            self.items[iid].setVisible(visible and not self.all_hidden)
            self._changed(iid)

    def set_all_hidden(self, hidden: bool) -> None:
        self.all_hidden = hidden
        for iid, item in self.items.items():
            item.setVisible(self._visible.get(iid, True) and not hidden)
        self.picture.update()

    def colour(self, iid: int) -> QColor | None:
        return self._colours.get(iid)

    def _changed(self, iid: int) -> None:
        """The picture repaints where this instance is drawn (if the picture draws it)."""
        if self.baked(iid):
            self.picture.changed(_bounds(self.items[iid]))

    def _style(self, iid: int) -> None:
        item, colour = self.items[iid], QColor(self._colours[iid])
        selected = iid in self.selected
        fill = QColor(colour)
        fill.setAlphaF(min(1.0, self.opacity * (1.5 if selected else 1.0)))
        item.setBrush(QBrush(fill))
        line = outline_colour(colour)
        if selected:
            ants = cosmetic_pen(QColor(20, 20, 20), 1.5, Qt.PenStyle.DashLine)
            item.set_pens([cosmetic_pen(QColor(255, 255, 255), 4.5), cosmetic_pen(colour, 2.0),
                           ants])
        else:
            halo = QColor(255, 255, 255, 150)
            item.set_pens([cosmetic_pen(halo, 2.6), cosmetic_pen(line, 1.2)])


def _bounds(item: InstanceItem) -> QRectF:
    return item.path().controlPointRect()


def _same_geometry(a: Geometry | None, b: Geometry) -> bool:
    """The same shape, coordinate for coordinate (shapely's exact comparison, in C)."""
    if a is None or a.geom_type != b.geom_type:
        return False
    return bool(a.equals_exact(b, 0.0))


class BrushCursor(QGraphicsItem):
    """The brush (or eraser, red) circle under the pointer, of the brush's radius."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(Z_MARKS)
        self.setVisible(False)
        self.centre = QPointF()
        self.radius = 0.0  # image pixels
        self.erase = False

    def show_at(self, x: float, y: float, radius: float, erase: bool = False) -> None:
        self.prepareGeometryChange()
        self.centre, self.radius, self.erase = QPointF(x, y), radius, erase
        self.setVisible(True)
        self.update()

    def hide_cursor(self) -> None:
        self.setVisible(False)

    def boundingRect(self) -> QRectF:  # noqa: N802
        r = self.radius + 2.0
        return QRectF(self.centre.x() - r, self.centre.y() - r, 2 * r, 2 * r)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        inner = QColor(230, 40, 40) if self.erase else QColor(20, 20, 20)
        for colour, width in ((QColor(255, 255, 255), 3.0), (inner, 1.2)):
            painter.setPen(cosmetic_pen(colour, width))
            painter.drawEllipse(self.centre, self.radius, self.radius)


class HandlesItem(QGraphicsItem):
    """Square vertex handles of the selected shape (fixed screen size)."""

    SIZE = 7.0

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(Z_HANDLES)
        self._points: list[QPointF] = []
        self._rect = QRectF()
        self.hover: QPointF | None = None

    def set_shape(self, shape: Shape | None, hover: tuple[float, float] | None = None) -> None:
        self.prepareGeometryChange()
        self._points = [QPointF(x, y) for rings in (shape or []) for ring in rings
                        for x, y in ring]
        self.hover = QPointF(*hover) if hover else None
        if self._points:
            xs = [p.x() for p in self._points]
            ys = [p.y() for p in self._points]
            self._rect = QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        else:
            self._rect = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect.adjusted(-50, -50, 50, 50)  # room for handles at low zoom

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        if not self._points:
            return
        pen = cosmetic_pen(QColor(255, 255, 255), self.SIZE)
        pen.setCapStyle(Qt.PenCapStyle.SquareCap)
        painter.setPen(pen)
        painter.drawPoints(QPolygonF(self._points))
        pen = cosmetic_pen(QColor(20, 20, 20), self.SIZE - 3)
        pen.setCapStyle(Qt.PenCapStyle.SquareCap)
        painter.setPen(pen)
        painter.drawPoints(QPolygonF(self._points))
        if self.hover is not None:
            pen = cosmetic_pen(QColor(255, 200, 0), self.SIZE + 3)
            pen.setCapStyle(Qt.PenCapStyle.SquareCap)
            painter.setPen(pen)
            painter.drawPoint(self.hover)


class MarksItem(QGraphicsItem):
    """Prompt points (green positive, red negative), the prompt box, and a rubber band."""

    def __init__(self) -> None:
        super().__init__()
        self.setZValue(Z_MARKS)
        self.points: Sequence[Point] = ()
        self.box: Box | None = None
        self.band: Box | None = None
        self.polyline: list[tuple[float, float]] = []
        self._rect = QRectF()

    def set_marks(self, points: Sequence[Point] = (), box: Box | None = None,
                  band: Box | None = None, polyline: Sequence[tuple[float, float]] = ()) -> None:
        self.prepareGeometryChange()
        self.points, self.box, self.band, self.polyline = list(points), box, band, list(polyline)
        xs = [p.x for p in self.points] + [x for x, _ in self.polyline]
        ys = [p.y for p in self.points] + [y for _, y in self.polyline]
        for b in (box, band):
            if b is not None:
                xs += [b.x0, b.x1]
                ys += [b.y0, b.y1]
        self._rect = (QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
                      if xs else QRectF())
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        return self._rect.adjusted(-50, -50, 50, 50)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        for b, style in ((self.box, Qt.PenStyle.SolidLine), (self.band, Qt.PenStyle.DashLine)):
            if b is not None:
                painter.setPen(cosmetic_pen(QColor(255, 255, 0), 2, style))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(QRectF(b.x0, b.y0, b.width, b.height))
        if self.polyline:
            painter.setPen(cosmetic_pen(QColor(0, 255, 255), 2))
            painter.drawPolyline(QPolygonF([QPointF(x, y) for x, y in self.polyline]))
        for p in self.points:
            colour = QColor(40, 220, 60) if p.positive else QColor(230, 40, 40)
            outer = cosmetic_pen(QColor(255, 255, 255), 11)
            outer.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(outer)
            painter.drawPoint(QPointF(p.x, p.y))
            inner = cosmetic_pen(colour, 8)
            inner.setCapStyle(Qt.PenCapStyle.RoundCap)
            painter.setPen(inner)
            painter.drawPoint(QPointF(p.x, p.y))
