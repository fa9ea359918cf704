"""The kinds of undoable edit: add, delete, reshape, relabel, merge, set status, batch.

Each command changes the store through ``Project`` methods and records what it needs to undo
itself (snapshots, old geometry, assigned ids); ``@register`` makes its kind readable from
the history. The undo stack that runs and persists them is ``app.core.commands.UndoStack``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.core.command_base import (
    Command,
    command_from_dict,
    command_to_dict,
    find_label,
    geom_in,
    geom_out,
    instance_in,
    instance_out,
    label_for,
    register,
    resolve_instance,
    restore_instance,
    union_geometry,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.types import Geometry, ImageStatus, Instance, InstanceOrigin


@register
@dataclass
class AddInstance(Command):
    """Add an instance; after ``do``, ``instance.id`` is its id (redo brings back the same id)."""

    instance: Instance
    kind: ClassVar[str] = "add"

    @property
    def image_id(self) -> int:  # type: ignore[override]
        return self.instance.image_id

    @property
    def text(self) -> str:
        return f"Add {self.instance.label}"

    def do(self, project: Project) -> None:
        self.instance = restore_instance(project, self.instance)

    def undo(self, project: Project) -> None:
        if self.instance.id is None:
            raise ProjectError("cannot undo an add that was never done")
        project.delete_instance(self.instance.id)

    def resolve(self, project: Project) -> None:
        self.instance = resolve_instance(project, self.instance)

    def to_dict(self) -> dict[str, Any]:
        return {"instance": instance_out(self.instance)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AddInstance:
        return cls(instance_in(data["instance"]))


@register
@dataclass
class DeleteInstance(Command):
    """Delete an instance; undo brings it back under the same id."""

    instance_id: int
    removed: Instance | None = None
    kind: ClassVar[str] = "delete"

    @property
    def image_id(self) -> int | None:  # type: ignore[override]
        return self.removed.image_id if self.removed else None

    @property
    def text(self) -> str:
        return f"Delete {self.removed.label if self.removed else 'instance'}"

    def do(self, project: Project) -> None:
        self.removed = project.instance(self.instance_id)
        project.delete_instance(self.instance_id)

    def undo(self, project: Project) -> None:
        if self.removed is None:
            raise ProjectError("cannot undo a delete that was never done")
        self.removed = restore_instance(project, self.removed)

    def resolve(self, project: Project) -> None:
        if self.removed is not None:
            self.removed = resolve_instance(project, self.removed)

    def to_dict(self) -> dict[str, Any]:
        removed = instance_out(self.removed) if self.removed else None
        return {"instance_id": self.instance_id, "removed": removed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeleteInstance:
        removed = instance_in(data["removed"]) if data.get("removed") else None
        return cls(data["instance_id"], removed)


@register
@dataclass
class EditGeometry(Command):
    """Replace an instance's geometry (a refined mask, moved vertices, a brush stroke)."""

    instance_id: int
    new: Geometry
    old: Geometry | None = None
    image_id: int | None = None
    old_origin: InstanceOrigin = InstanceOrigin.ANCHOR  # a propagated one becomes an anchor
    kind: ClassVar[str] = "edit"

    @property
    def text(self) -> str:
        return "Edit shape"

    def do(self, project: Project) -> None:
        current = project.instance(self.instance_id)
        self.image_id = current.image_id
        if self.old is None:
            self.old = current.geometry
            self.old_origin = current.origin
        project.update_geometry(self.instance_id, self.new)

    def undo(self, project: Project) -> None:
        if self.old is None:
            raise ProjectError("cannot undo an edit that was never done")
        project.update_geometry(self.instance_id, self.old, self.old_origin)

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "image_id": self.image_id,
                "new": geom_out(self.new), "old": geom_out(self.old) if self.old else None,
                "old_origin": str(self.old_origin)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditGeometry:
        old = geom_in(data["old"]) if data.get("old") else None
        return cls(data["instance_id"], geom_in(data["new"]), old, data.get("image_id"),
                   InstanceOrigin(data.get("old_origin", InstanceOrigin.ANCHOR)))


@register
@dataclass
class Relabel(Command):
    """Give an instance another label (created if unknown). ``new_id``/``old_id`` are the
    labels' ids once done (the names follow renames)."""

    instance_id: int
    new: str
    old: str | None = None
    image_id: int | None = None
    new_id: int | None = None
    old_id: int | None = None
    kind: ClassVar[str] = "relabel"

    @property
    def text(self) -> str:
        return f"Relabel as {self.new}"

    def do(self, project: Project) -> None:
        current = project.instance(self.instance_id)
        self.image_id = current.image_id
        if self.old is None:
            self.old, self.old_id = current.label, current.label_id
        label = label_for(project, self.new_id, self.new)
        self.new, self.new_id = label.name, label.id
        project.update_label_of(self.instance_id, label.name)

    def undo(self, project: Project) -> None:
        if self.old is None:
            raise ProjectError("cannot undo a relabel that was never done")
        label = label_for(project, self.old_id, self.old)
        self.old, self.old_id = label.name, label.id
        project.update_label_of(self.instance_id, label.name)

    def resolve(self, project: Project) -> None:
        new = find_label(project, self.new_id, self.new)
        self.new, self.new_id = (new.name, new.id) if new else (self.new, None)
        if self.old is not None:
            old = find_label(project, self.old_id, self.old)
            self.old, self.old_id = (old.name, old.id) if old else (self.old, None)

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "image_id": self.image_id,
                "new": self.new, "old": self.old, "new_id": self.new_id,
                "old_id": self.old_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Relabel:
        return cls(data["instance_id"], data["new"], data.get("old"), data.get("image_id"),
                   data.get("new_id"), data.get("old_id"))


@register
@dataclass
class Merge(Command):
    """Merge instances of one image into the first: it gets the union of their geometries (and
    keeps its label), the others are deleted. Undo restores all of them."""

    instance_ids: list[int]
    originals: list[Instance] = field(default_factory=list)
    kind: ClassVar[str] = "merge"

    @property
    def image_id(self) -> int | None:  # type: ignore[override]
        return self.originals[0].image_id if self.originals else None

    @property
    def text(self) -> str:
        return f"Merge {len(self.instance_ids)} instances"

    def do(self, project: Project) -> None:
        if len(set(self.instance_ids)) < 2:
            raise ProjectError("merging needs at least two different instances")
        originals = [project.instance(i) for i in self.instance_ids]
        if len({inst.image_id for inst in originals}) > 1:
            raise ProjectError("cannot merge instances of different images")
        merged = union_geometry([inst.geometry for inst in originals])
        project.update_geometry(self.instance_ids[0], merged)
        for inst_id in self.instance_ids[1:]:
            project.delete_instance(inst_id)
        self.originals = originals

    def undo(self, project: Project) -> None:
        if not self.originals:
            raise ProjectError("cannot undo a merge that was never done")
        target, *others = self.originals
        project.update_geometry(self.instance_ids[0], target.geometry)
        self.originals = [target, *(restore_instance(project, inst) for inst in others)]

    def resolve(self, project: Project) -> None:
        self.originals = [resolve_instance(project, inst) for inst in self.originals]

    def to_dict(self) -> dict[str, Any]:
        return {"instance_ids": self.instance_ids,
                "originals": [instance_out(i) for i in self.originals]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Merge:
        return cls(list(data["instance_ids"]), [instance_in(d) for d in data["originals"]])


@register
@dataclass
class SetStatus(Command):
    """Mark an image new / in progress / done / skipped."""

    image_id: int  # type: ignore[assignment]
    new: ImageStatus
    old: ImageStatus | None = None
    kind: ClassVar[str] = "status"

    @property
    def text(self) -> str:
        return f"Mark as {ImageStatus(self.new).value}"

    def do(self, project: Project) -> None:
        if self.old is None:
            self.old = project.image(self.image_id).status
        project.set_status(self.image_id, self.new)

    def undo(self, project: Project) -> None:
        if self.old is None:
            raise ProjectError("cannot undo a status change that was never done")
        project.set_status(self.image_id, self.old)

    def to_dict(self) -> dict[str, Any]:
        old = ImageStatus(self.old).value if self.old else None
        return {"image_id": self.image_id, "new": ImageStatus(self.new).value, "old": old}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SetStatus:
        old = ImageStatus(data["old"]) if data.get("old") else None
        return cls(data["image_id"], ImageStatus(data["new"]), old)


@register
@dataclass
class Batch(Command):
    """Several commands undone and redone as one (e.g. "accept all proposals")."""

    commands: list[Command]
    description: str = "Edit"
    kind: ClassVar[str] = "batch"

    @property
    def image_id(self) -> int | None:  # type: ignore[override]
        ids = {c.image_id for c in self.commands}
        return ids.pop() if len(ids) == 1 else None

    @property
    def text(self) -> str:
        return self.description

    def do(self, project: Project) -> None:
        for command in self.commands:
            command.do(project)

    def undo(self, project: Project) -> None:
        for command in reversed(self.commands):
            command.undo(project)

    def resolve(self, project: Project) -> None:
        for command in self.commands:
            command.resolve(project)

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description,
                "commands": [command_to_dict(c) for c in self.commands]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        return cls([command_from_dict(d) for d in data["commands"]], data["description"])
