"""Undoable edits of a project and a per-image undo stack persisted in the project file.

Each command changes the store through ``Project`` methods and records what it needs to undo
itself (snapshots, old geometry, assigned ids). ``UndoStack.push/undo/redo`` run the command
and update the ``history`` table in ONE transaction, so a crash never leaves the instances and
the history out of step, and undo/redo keep working after the project is closed and reopened.

Commands are stored as JSON (geometry as WKB hex) and refer to labels by id, so undo and
redo follow a label that was renamed meanwhile. An instance brought back by undo keeps its
old id (instance ids are never reused), so later commands that name it stay valid. If the
store was changed behind the stack's back (e.g. an instance deleted without a command), undo or
redo of a command that needs it raises ProjectError and changes nothing.

The command kinds are defined in ``app.core.edit_commands`` and, for decisions on proposals,
``app.core.proposal_commands`` (their base and JSON form in ``app.core.command_base``) and
re-exported here; importing this module registers them all.
"""

from __future__ import annotations

import json

from app.core.command_base import (
    COMMANDS,
    Command,
    command_from_dict,
    command_json,
    command_to_dict,
    union_geometry,
)
from app.core.edit_commands import (
    AddInstance,
    Batch,
    DeleteInstance,
    EditGeometry,
    Merge,
    Relabel,
    SetStatus,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.project_schema import now
from app.core.proposal_commands import AcceptAll, AcceptProposal, RejectProposal

__all__ = [
    "COMMANDS", "AcceptAll", "AcceptProposal", "AddInstance", "Batch", "Command",
    "DeleteInstance", "EditGeometry", "Merge", "RejectProposal", "Relabel", "SetStatus",
    "UndoStack", "command_from_dict", "command_to_dict", "union_geometry",
]

DEFAULT_LIMIT = 500  # commands kept per image (older ones are dropped)


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
        return rows[0]["seq"], self._read(rows[0]["command"])

    def _read(self, text: str) -> Command:
        """A command from its history row, its labels under their current names and ids."""
        command = command_from_dict(json.loads(text))
        command.resolve(self.project)
        return command

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
        return [(self._read(r["command"]), bool(r["undone"])) for r in rows]

    def clear(self) -> None:
        """Forget this image's history (the instances stay as they are)."""
        self.project.execute("DELETE FROM history WHERE image_id = ?", (self.image_id,))

