"""The edit tool: select instances, drag vertices, insert/delete vertices, move shapes;
brush and eraser strokes added to / cut from the selected instance ([ and ] change the brush
radius, a circle under the pointer shows it)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.core.geometry_edit import vertex
from app.interaction.drawing import BrushStroke
from app.interaction.events import Button, PointerEvent
from app.interaction.polygon_edit import EditAction, EditKind, PolygonEditor
from app.ui.canvas.layers import BrushCursor, HandlesItem, InstanceLayer, MarksItem
from app.ui.canvas.view import HIT_PIXELS
from app.ui.session import AnnotationSession

BRUSH_SCREEN_RADIUS = 15.0  # default brush/eraser radius in screen pixels
BRUSH_MIN, BRUSH_MAX, BRUSH_STEP = 2.0, 200.0, 1.25  # [ and ] scale the radius by the step


class EditTool(QObject):
    """Plain clicks select and edit; Ctrl+click adds to the selection (for merge)."""

    selection_changed = Signal(list)
    message = Signal(str)

    def __init__(self, session: AnnotationSession, layer: InstanceLayer, handles: HandlesItem,
                 marks: MarksItem, parent: QObject | None = None, *,
                 brush_cursor: BrushCursor | None = None) -> None:
        super().__init__(parent)
        self.session, self.layer, self.handles, self.marks = session, layer, handles, marks
        self.editor = PolygonEditor()
        self.extra: list[int] = []  # Ctrl+click selection beyond the edited instance
        self.brush: BrushStroke | None = None  # set by the brush/eraser modes
        self.erase = False
        self.brush_screen_radius = BRUSH_SCREEN_RADIUS
        self.brush_cursor = brush_cursor
        self._pointer: tuple[float, float, float] | None = None  # x, y, image px per screen px

    # -- brush -----------------------------------------------------------------------------
    def set_brush(self, mode: str | None) -> None:
        """"brush", "eraser", or None (plain editing)."""
        self.brush = BrushStroke() if mode else None
        self.erase = mode == "eraser"
        self._show_cursor()

    def resize_brush(self, direction: int) -> float:
        """Grow (direction > 0, ]) or shrink ([) the brush; its new radius in screen px."""
        step = BRUSH_STEP if direction > 0 else 1.0 / BRUSH_STEP
        self.brush_screen_radius = min(BRUSH_MAX, max(BRUSH_MIN,
                                                      self.brush_screen_radius * step))
        self._show_cursor()
        self.message.emit(f"Brush radius {self.brush_screen_radius:.0f} px")
        return self.brush_screen_radius

    def _track(self, ev: PointerEvent) -> None:
        self._pointer = (ev.x, ev.y, ev.radius / HIT_PIXELS)
        self._show_cursor()

    def _show_cursor(self) -> None:
        if self.brush_cursor is None:
            return
        if self.brush is None or self._pointer is None:
            self.brush_cursor.hide_cursor()
            return
        x, y, per_px = self._pointer
        self.brush_cursor.show_at(x, y, self.brush_screen_radius * per_px, self.erase)

    def refresh(self) -> None:
        """The instances changed in the session: reload the editable copies."""
        self.editor.set_instances({i.id: i.geometry for i in self.session.instances()
                                   if i.id is not None and self.layer.items.get(i.id)
                                   and self.layer.items[i.id].isVisible()})
        self.extra = [i for i in self.extra if i in self.editor.instances]
        self._update_handles()

    def selected_ids(self) -> list[int]:
        ids = [self.editor.selected] if self.editor.selected is not None else []
        return ids + [i for i in self.extra if i not in ids]

    def select(self, iid: int | None) -> None:
        self.editor.select(iid)
        self.extra = []
        self._selection_changed()

    def follow_selection(self, ids: list[int]) -> None:
        """The application's selection changed (``AppState.selection_changed``, e.g. rows
        picked in the instance list): edit the first, keep the others for merge."""
        if ids == self.selected_ids():
            return
        self.editor.select(ids[0] if ids else None)
        self.extra = list(ids[1:])
        self.layer.set_selected(self.selected_ids())
        self._update_handles()  # not told back: the application's selection is the source

    # -- CanvasTool ------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> None:
        if self.brush is not None:
            self._track(ev)
        if self.brush is not None and self.editor.selected is None:
            self.message.emit("Select an instance first (Edit tool, V), then brush or erase")
        if self.brush is not None and self.editor.selected is not None:
            # the radius is on screen, so it does not change with the zoom
            self.brush.radius = self.brush_screen_radius / HIT_PIXELS * ev.radius
            self.brush.press(ev)
            return
        if ev.ctrl and ev.button == Button.LEFT:
            hit = self.editor.instance_at(ev.x, ev.y)
            if hit is not None and hit != self.editor.selected:
                if hit in self.extra:
                    self.extra.remove(hit)
                else:
                    self.extra.append(hit)
                self._selection_changed()
            return
        self._apply(self.editor.press(ev))

    def move(self, ev: PointerEvent) -> None:
        if self.brush is not None:
            self._track(ev)
        if self.brush is not None and self.brush.points:
            area = self.brush.move(ev)
            if area is not None:
                ring = list(area.exterior.coords) if hasattr(area, "exterior") else []
                self.marks.set_marks(polyline=ring)
            return
        self._apply(self.editor.move(ev))
        self._update_handles()

    def release(self, ev: PointerEvent) -> None:
        if self.brush is not None and self.brush.points:
            area = self.brush.release(ev)
            self.marks.set_marks()
            self._apply_stroke(area)
            return
        self._apply(self.editor.release(ev))

    def double_click(self, ev: PointerEvent) -> None:
        self._apply(self.editor.double_click(ev))

    # -- keys ------------------------------------------------------------------------------
    def delete_vertex_or_instance(self) -> None:
        """Delete: the vertex under the pointer, else the selected instances."""
        if self.editor.hover_vertex is not None:
            self._apply(self.editor.delete_hovered_vertex())
            return
        ids = self.selected_ids()
        if ids:
            self.select(None)
            self.session.delete(ids)

    # -- internals -------------------------------------------------------------------------
    def _apply(self, action: EditAction) -> None:
        if action.kind == EditKind.SELECT:
            self.extra = []
            self._selection_changed()
        elif action.kind == EditKind.PREVIEW and action.instance_id is not None:
            self.layer.set_geometry(action.instance_id, action.geometry)
        elif action.kind == EditKind.COMMIT and action.instance_id is not None:
            if action.geometry is None:
                self.select(None)
            self.session.edit_geometry(action.instance_id, action.geometry)

    def _apply_stroke(self, area: object) -> None:
        from app.core.geometry import difference, union

        iid = self.editor.selected
        if area is None or iid is None:
            return
        geom = self.editor.instances[iid]
        new = difference(geom, area) if self.erase else union(geom, area)
        self.session.edit_geometry(iid, new)

    def _selection_changed(self) -> None:
        self.layer.set_selected(self.selected_ids())
        self._update_handles()
        self.selection_changed.emit(self.selected_ids())

    def _update_handles(self) -> None:
        shape = self.editor.shape()
        hover = self.editor.hover_vertex
        self.handles.set_shape(shape, vertex(shape, hover) if shape and hover else None)
