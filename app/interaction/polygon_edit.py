"""Polygon editing: select an instance, drag a vertex, insert a vertex on an edge (double
click), delete a vertex (right click or Delete), drag the inside to move the whole shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from shapely.geometry import Point as ShapelyPoint

from app.core import geometry_edit as edit
from app.core.geometry_edit import Shape, VertexRef
from app.core.types import Geometry
from app.interaction.events import Button, PointerEvent


class EditKind(Enum):
    NONE = "none"
    SELECT = "select"  # instance_id chosen (None = deselect)
    PREVIEW = "preview"  # geometry changed while dragging (not yet committed)
    COMMIT = "commit"  # a finished edit: store geometry for instance_id (None geometry = delete)


@dataclass
class EditAction:
    kind: EditKind
    instance_id: int | None = None
    geometry: Geometry | None = None


@dataclass
class PolygonEditor:
    """State machine for editing the selected instance's polygon(s)."""

    instances: dict[int, Geometry] = field(default_factory=dict)  # id -> geometry, top last
    selected: int | None = None
    hover_vertex: VertexRef | None = None
    _shape: Shape | None = None
    _drag_vertex: VertexRef | None = None
    _move_from: tuple[float, float] | None = None
    _moved = False

    def set_instances(self, instances: dict[int, Geometry]) -> None:
        """Replace the editable instances (after any change in the project)."""
        self.instances = dict(instances)
        if self.selected not in self.instances:
            self.selected = None
        self._shape = None if self.selected is None else edit.to_shape(
            self.instances[self.selected])
        self._drag_vertex = None
        self._move_from = None

    def select(self, instance_id: int | None) -> None:
        self.selected = instance_id if instance_id in self.instances else None
        self._shape = None if self.selected is None else edit.to_shape(
            self.instances[self.selected])
        self.hover_vertex = None

    def shape(self) -> Shape | None:
        """Vertex lists of the selected instance as currently shown (including a live drag)."""
        return self._shape

    def instance_at(self, x: float, y: float) -> int | None:
        """The topmost instance containing (x, y)."""
        pt = ShapelyPoint(x, y)
        for iid in reversed(list(self.instances)):
            if self.instances[iid].covers(pt):
                return iid
        return None

    # -- pointer ---------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> EditAction:
        shape = self._shape
        if shape is not None:
            ref = edit.nearest_vertex(shape, ev.x, ev.y, ev.radius)
            if ref is not None:
                if ev.button == Button.RIGHT:
                    return self._commit(edit.delete_vertex(shape, ref))
                if ev.button == Button.LEFT:
                    self._drag_vertex = ref
                    self._moved = False
                    return EditAction(EditKind.NONE)
        if ev.button != Button.LEFT:
            return EditAction(EditKind.NONE)
        hit = self.instance_at(ev.x, ev.y)
        if hit is not None and hit == self.selected:
            self._move_from = (ev.x, ev.y)
            self._moved = False
            return EditAction(EditKind.NONE)
        self.select(hit)
        return EditAction(EditKind.SELECT, hit)

    def move(self, ev: PointerEvent) -> EditAction:
        shape = self._shape
        if shape is None:
            return EditAction(EditKind.NONE)
        if self._drag_vertex is not None:
            self._shape = edit.move_vertex(shape, self._drag_vertex, ev.x, ev.y)
            self._moved = True
            return EditAction(EditKind.PREVIEW, self.selected, edit.to_geometry(self._shape))
        if self._move_from is not None:
            fx, fy = self._move_from
            self._shape = edit.translate(shape, ev.x - fx, ev.y - fy)
            self._move_from = (ev.x, ev.y)
            self._moved = True
            return EditAction(EditKind.PREVIEW, self.selected, edit.to_geometry(self._shape))
        self.hover_vertex = edit.nearest_vertex(shape, ev.x, ev.y, ev.radius)
        return EditAction(EditKind.NONE)

    def release(self, ev: PointerEvent) -> EditAction:
        dragging = self._drag_vertex is not None or self._move_from is not None
        self._drag_vertex = None
        self._move_from = None
        if dragging and self._moved and self._shape is not None:
            self._moved = False
            return self._commit(self._shape)
        return EditAction(EditKind.NONE)

    def double_click(self, ev: PointerEvent) -> EditAction:
        """Insert a vertex on the edge under the pointer."""
        shape = self._shape
        if shape is None or edit.nearest_vertex(shape, ev.x, ev.y, ev.radius) is not None:
            return EditAction(EditKind.NONE)
        hit = edit.nearest_edge(shape, ev.x, ev.y, ev.radius)
        if hit is None:
            return EditAction(EditKind.NONE)
        ref, (px, py) = hit
        return self._commit(edit.insert_vertex(shape, ref, px, py))

    def delete_hovered_vertex(self) -> EditAction:
        """Delete key: remove the vertex under the pointer, if any."""
        if self._shape is None or self.hover_vertex is None:
            return EditAction(EditKind.NONE)
        ref, self.hover_vertex = self.hover_vertex, None
        return self._commit(edit.delete_vertex(self._shape, ref))

    def _commit(self, shape: Shape) -> EditAction:
        geom = edit.to_geometry(shape)
        iid = self.selected
        if geom is None:
            return EditAction(EditKind.COMMIT, iid, None)
        self._shape = edit.to_shape(geom)
        if iid is not None:
            self.instances[iid] = geom
        return EditAction(EditKind.COMMIT, iid, geom)
