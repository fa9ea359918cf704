"""The base of undoable commands and their JSON form (geometry as WKB hex).

Commands refer to labels by id (``label_id`` next to the name), so an edit undone or redone
after its label was renamed puts the instance back under the renamed label. The name is kept
too: for the menu text, and to create the label again if it was removed meanwhile. Rows
written before ids were stored name their labels only; ``Command.resolve`` looks the names
up when such a row is read (and a project opened the first time by this version had its
rows resolved once, see ``project_schema``).

Concrete commands and the undo stack are in ``app.core.commands``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import shapely
from shapely.geometry import MultiPolygon, Polygon

from app.core.errors import ProjectError
from app.core.geometry import drop_slivers
from app.core.project_schema import check_geometry, geometry_from_wkb, geometry_to_wkb
from app.core.types import Geometry, Instance, InstanceOrigin, Label, Source

if TYPE_CHECKING:
    from app.core.project import Project

FORMAT_VERSION = 1


def geom_out(geom: Geometry) -> str:
    return geometry_to_wkb(geom).hex()


def geom_in(text: str) -> Geometry:
    return geometry_from_wkb(bytes.fromhex(text))


def instance_out(inst: Instance) -> dict[str, Any]:
    return {"id": inst.id, "image_id": inst.image_id, "label": inst.label,
            "label_id": inst.label_id, "geometry": geom_out(inst.geometry),
            "score": inst.score, "source": Source(inst.source).value,
            "track_id": inst.track_id, "origin": InstanceOrigin(inst.origin).value}


def instance_in(data: dict[str, Any]) -> Instance:
    return Instance(image_id=data["image_id"], label=data["label"],
                    geometry=geom_in(data["geometry"]), score=data["score"],
                    source=Source(data["source"]), id=data["id"],
                    label_id=data.get("label_id"), track_id=data.get("track_id"),
                    origin=InstanceOrigin(data.get("origin", InstanceOrigin.ANCHOR)))


def find_label(project: Project, label_id: int | None, name: str) -> Label | None:
    """The label ``label_id`` under its current name; by ``name`` when the id is unknown
    (an old history row) or the label was removed since; None when neither exists."""
    label = project.label_by_id(label_id) if label_id is not None else None
    return label if label is not None else project.label(name)


def label_for(project: Project, label_id: int | None, name: str) -> Label:
    """Like ``find_label``, creating a label called ``name`` when neither exists."""
    return find_label(project, label_id, name) or project.ensure_label(name)


def resolve_instance(project: Project, inst: Instance) -> Instance:
    """``inst`` with its label's current name and id (see ``find_label``)."""
    label = find_label(project, inst.label_id, inst.label)
    if label is None:
        return replace(inst, label_id=None)
    return replace(inst, label=label.name, label_id=label.id)


def restore_instance(project: Project, inst: Instance) -> Instance:
    """Store ``inst`` again (undo of a delete, redo of an add) under its label as it is
    called now; returns it as stored."""
    return project.add_instance(resolve_instance(project, inst))


def union_geometry(geoms: list[Geometry]) -> Geometry:
    """The union of polygons as one valid Polygon or MultiPolygon, without parts or holes
    smaller than a pixel (``drop_slivers``; a union that is all slivers stays as it is)."""
    merged = shapely.union_all(geoms)
    if not isinstance(merged, Polygon | MultiPolygon):  # drop stray lines and points
        parts = [g for g in shapely.get_parts(merged) if isinstance(g, Polygon)]
        merged = MultiPolygon(parts) if len(parts) > 1 else parts[0]
    return check_geometry(drop_slivers(merged) or merged, "merged geometry")


class Command:
    """One undoable edit of one image. ``do`` runs it (also for redo), ``undo`` reverts it;
    both are called inside a transaction. ``image_id`` is known once ``do`` has run."""

    kind: ClassVar[str] = ""
    image_id: int | None

    @property
    def text(self) -> str:
        """A short description for menus ("Undo Add bird")."""
        raise NotImplementedError

    def do(self, project: Project) -> None:
        raise NotImplementedError

    def undo(self, project: Project) -> None:
        raise NotImplementedError

    def resolve(self, project: Project) -> None:
        """Read back from the history: bring the label names and ids the command holds up
        to date (names of renamed labels; ids of labels an old row names)."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Command:
        raise NotImplementedError


COMMANDS: dict[str, type[Command]] = {}  # kind -> class, filled by ``register``

C = TypeVar("C", bound=type[Command])


def register(cls: C) -> C:
    """Class decorator: make a command kind readable from the history."""
    COMMANDS[cls.kind] = cls
    return cls


def command_to_dict(command: Command) -> dict[str, Any]:
    """The command as a JSON-able dict with its kind and the format version."""
    return {"kind": command.kind, "v": FORMAT_VERSION, **command.to_dict()}


def command_from_dict(data: dict[str, Any]) -> Command:
    kind = data.get("kind")
    if kind not in COMMANDS or data.get("v", 1) > FORMAT_VERSION:
        raise ProjectError(f"unknown command in history: {kind!r} (version {data.get('v')})")
    return COMMANDS[kind].from_dict(data)


def command_json(command: Command) -> str:
    return json.dumps(command_to_dict(command), separators=(",", ":"))
