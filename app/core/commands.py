"""Undoable edits of a project and a per-image undo stack persisted in the project file.

Each command changes the store through ``Project`` methods and records what it needs to undo
itself (snapshots, old geometry, assigned ids). ``UndoStack.push/undo/redo`` run the command
and update the ``history`` table in ONE transaction, so a crash never leaves the instances and
the history out of step, and undo/redo keep working after the project is closed and reopened.

Commands are stored as JSON (geometry as WKB hex). An instance brought back by undo keeps its
old id (instance ids are never reused), so later commands that name it stay valid. If the
store was changed behind the stack's back (e.g. an instance deleted without a command), undo or
redo of a command that needs it raises ProjectError and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.core.command_base import (
    COMMANDS,
    Command,
    command_from_dict,
    command_json,
    command_to_dict,
    geom_in,
    geom_out,
    instance_in,
    instance_out,
    register,
    union_geometry,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.project_schema import now
from app.core.types import Geometry, ImageStatus, Instance

__all__ = [
    "COMMANDS", "AddInstance", "Batch", "Command", "DeleteInstance", "EditGeometry", "Merge",
    "Relabel", "SetStatus", "UndoStack", "command_from_dict", "command_to_dict",
    "union_geometry",
]

DEFAULT_LIMIT = 500  # commands kept per image (older ones are dropped)


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
        self.instance = project.add_instance(self.instance)

    def undo(self, project: Project) -> None:
        if self.instance.id is None:
            raise ProjectError("cannot undo an add that was never done")
        project.delete_instance(self.instance.id)

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
        project.add_instance(self.removed)

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
    kind: ClassVar[str] = "edit"

    @property
    def text(self) -> str:
        return "Edit shape"

    def do(self, project: Project) -> None:
        current = project.instance(self.instance_id)
        self.image_id = current.image_id
        if self.old is None:
            self.old = current.geometry
        project.update_geometry(self.instance_id, self.new)

    def undo(self, project: Project) -> None:
        if self.old is None:
            raise ProjectError("cannot undo an edit that was never done")
        project.update_geometry(self.instance_id, self.old)

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "image_id": self.image_id,
                "new": geom_out(self.new), "old": geom_out(self.old) if self.old else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditGeometry:
        old = geom_in(data["old"]) if data.get("old") else None
        return cls(data["instance_id"], geom_in(data["new"]), old, data.get("image_id"))


@register
@dataclass
class Relabel(Command):
    """Give an instance another label (created if unknown)."""

    instance_id: int
    new: str
    old: str | None = None
    image_id: int | None = None
    kind: ClassVar[str] = "relabel"

    @property
    def text(self) -> str:
        return f"Relabel as {self.new}"

    def do(self, project: Project) -> None:
        current = project.instance(self.instance_id)
        self.image_id = current.image_id
        if self.old is None:
            self.old = current.label
        project.update_label_of(self.instance_id, self.new)

    def undo(self, project: Project) -> None:
        if self.old is None:
            raise ProjectError("cannot undo a relabel that was never done")
        project.update_label_of(self.instance_id, self.old)

    def to_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "image_id": self.image_id,
                "new": self.new, "old": self.old}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Relabel:
        return cls(data["instance_id"], data["new"], data.get("old"), data.get("image_id"))


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
        for inst in others:
            project.add_instance(inst)

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

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description,
                "commands": [command_to_dict(c) for c in self.commands]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Batch:
        return cls([command_from_dict(d) for d in data["commands"]], data["description"])


class UndoStack:
    """The undo/redo history of one image, kept in the project's ``history`` table.

    State lives in the file, not in this object: several stacks on the same image agree, and a
    stack made after reopening the project continues where the last session stopped.
    """

    def __init__(self, project: Project, image_id: int, limit: int = DEFAULT_LIMIT) -> None:
        project.image(image_id)  # raises if unknown
        self.project = project
        self.image_id = image_id
        self.limit = limit

    def _top(self, undone: bool) -> tuple[int, Command] | None:
        order = "ASC" if undone else "DESC"
        rows = self.project.query(
            f"SELECT seq, command FROM history WHERE image_id = ? AND undone = ? "
            f"ORDER BY seq {order} LIMIT 1", (self.image_id, int(undone)))
        if not rows:
            return None
        return rows[0]["seq"], command_from_dict(json.loads(rows[0]["command"]))

    def push(self, command: Command) -> Command:
        """Run ``command`` and record it; the redo list is dropped. Returns the command (with
        the ids it was given)."""
        with self.project.transaction():
            self.project.execute("DELETE FROM history WHERE image_id = ? AND undone = 1",
                                 (self.image_id,))
            command.do(self.project)
            if command.image_id != self.image_id:
                raise ProjectError(f"command {command.text!r} is not an edit of image "
                                   f"{self.image_id} (it edits image {command.image_id})")
            seq = self.project.query(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE image_id = ?",
                (self.image_id,))[0][0]
            self.project.execute(
                "INSERT INTO history (image_id, seq, command, undone, created_at) "
                "VALUES (?, ?, ?, 0, ?)", (self.image_id, seq, command_json(command), now()))
            self.project.execute("DELETE FROM history WHERE image_id = ? AND seq <= ?",
                                 (self.image_id, seq - self.limit))
        return command

    def undo(self) -> Command | None:
        """Revert the last command; returns it, or None when there is nothing to undo."""
        with self.project.transaction():
            top = self._top(undone=False)
            if top is None:
                return None
            seq, command = top
            command.undo(self.project)
            self._mark(seq, command, undone=True)
        return command

    def redo(self) -> Command | None:
        """Run again the last undone command; returns it, or None when there is none."""
        with self.project.transaction():
            top = self._top(undone=True)
            if top is None:
                return None
            seq, command = top
            command.do(self.project)
            self._mark(seq, command, undone=False)
        return command

    def _mark(self, seq: int, command: Command, undone: bool) -> None:
        self.project.execute(
            "UPDATE history SET undone = ?, command = ? WHERE image_id = ? AND seq = ?",
            (int(undone), command_json(command), self.image_id, seq))

    @property
    def can_undo(self) -> bool:
        return self._count(undone=False) > 0

    @property
    def can_redo(self) -> bool:
        return self._count(undone=True) > 0

    def _count(self, undone: bool) -> int:
        return self.project.query(
            "SELECT COUNT(*) FROM history WHERE image_id = ? AND undone = ?",
            (self.image_id, int(undone)))[0][0]

    @property
    def undo_text(self) -> str | None:
        top = self._top(undone=False)
        return top[1].text if top else None

    @property
    def redo_text(self) -> str | None:
        top = self._top(undone=True)
        return top[1].text if top else None

    def commands(self) -> list[tuple[Command, bool]]:
        """Every recorded command, oldest first, with whether it is undone."""
        rows = self.project.query(
            "SELECT command, undone FROM history WHERE image_id = ? ORDER BY seq",
            (self.image_id,))
        return [(command_from_dict(json.loads(r["command"])), bool(r["undone"])) for r in rows]

    def clear(self) -> None:
        """Forget this image's history (the instances stay as they are)."""
        self.project.execute("DELETE FROM history WHERE image_id = ?", (self.image_id,))

