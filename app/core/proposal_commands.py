"""Undoable decisions on proposals: accept (possibly edited first), reject, accept all.

They are commands like every edit (``app.core.command_base``), pushed on the image's
``UndoStack`` and kept in its history, so a decision survives a restart and undo works after
reopening the project:

- ``AcceptProposal(proposal_id, label=None, geometry=None)``: makes an instance from a
  pending proposal (the proposal's label unless ``label`` is given; ``geometry`` when the
  person edited it first) with the proposal's score and the kind of backend that made it as
  its source, and marks the proposal accepted. Undo deletes that instance and marks the
  proposal pending again; redo brings the instance back under the same id.
- ``RejectProposal(proposal_id)``: marks it rejected; undo: pending again.
- ``AcceptAll(image_id, label=None)``: every pending proposal of the image that has a label
  (or all of them, ``label`` given to those without one), as ONE undoable step.

A decision on a proposal that is not pending raises ProjectError and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.core.command_base import (
    Command,
    command_from_dict,
    command_to_dict,
    geom_in,
    geom_out,
    instance_in,
    instance_out,
    register,
    resolve_instance,
    restore_instance,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.proposals import Proposal, ProposalStatus
from app.core.types import Geometry, Instance


def _pending(project: Project, proposal_id: int) -> Proposal:
    proposal = project.proposals.get(proposal_id)
    if proposal.status != ProposalStatus.PENDING:
        raise ProjectError(f"proposal {proposal_id} is already {proposal.status.value}")
    return proposal


@register
@dataclass
class AcceptProposal(Command):
    """Accept a proposal as an instance (see the module docstring). After ``do``,
    ``added`` is the instance made (its id is kept by redo)."""

    proposal_id: int
    label: str | None = None
    geometry: Geometry | None = None
    image_id: int | None = None
    added: Instance | None = None
    kind: ClassVar[str] = "accept"

    @property
    def text(self) -> str:
        name = self.added.label if self.added else self.label
        edited = " edited" if self.geometry is not None else ""
        return f"Accept{edited} {name or 'proposal'}"

    def do(self, project: Project) -> None:
        proposal = _pending(project, self.proposal_id)
        self.image_id = proposal.image_id
        if self.added is None:
            name = self.label or proposal.label
            if not name:
                raise ProjectError(f"proposal {self.proposal_id} has no label: give one to "
                                   "accept it")
            self.added = Instance(proposal.image_id, name, self.geometry or proposal.geometry,
                                  proposal.score, proposal.made_by)
        self.added = restore_instance(project, self.added)
        project.proposals.decide(self.proposal_id, ProposalStatus.ACCEPTED, self.added.id)

    def undo(self, project: Project) -> None:
        if self.added is None or self.added.id is None:
            raise ProjectError("cannot undo an accept that was never done")
        project.delete_instance(self.added.id)
        project.proposals.decide(self.proposal_id, ProposalStatus.PENDING)

    def resolve(self, project: Project) -> None:
        if self.added is not None:
            self.added = resolve_instance(project, self.added)

    def to_dict(self) -> dict[str, Any]:
        return {"proposal_id": self.proposal_id, "label": self.label,
                "geometry": geom_out(self.geometry) if self.geometry is not None else None,
                "image_id": self.image_id,
                "added": instance_out(self.added) if self.added else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcceptProposal:
        geometry = geom_in(data["geometry"]) if data.get("geometry") else None
        added = instance_in(data["added"]) if data.get("added") else None
        return cls(data["proposal_id"], data.get("label"), geometry, data.get("image_id"),
                   added)


@register
@dataclass
class RejectProposal(Command):
    """Reject a pending proposal; undo makes it pending again."""

    proposal_id: int
    image_id: int | None = None
    kind: ClassVar[str] = "reject"

    @property
    def text(self) -> str:
        return "Reject proposal"

    def do(self, project: Project) -> None:
        self.image_id = _pending(project, self.proposal_id).image_id
        project.proposals.decide(self.proposal_id, ProposalStatus.REJECTED)

    def undo(self, project: Project) -> None:
        project.proposals.decide(self.proposal_id, ProposalStatus.PENDING)

    def to_dict(self) -> dict[str, Any]:
        return {"proposal_id": self.proposal_id, "image_id": self.image_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RejectProposal:
        return cls(data["proposal_id"], data.get("image_id"))


@register
@dataclass
class AcceptAll(Command):
    """Accept every pending proposal of an image that has a label (``label`` names those
    without one) as one step; ``accepts`` holds the single accepts once done."""

    image_id: int  # type: ignore[assignment]
    label: str | None = None
    accepts: list[AcceptProposal] = field(default_factory=list)
    kind: ClassVar[str] = "accept-all"

    @property
    def text(self) -> str:
        return f"Accept {len(self.accepts)} proposals" if self.accepts else "Accept all"

    def do(self, project: Project) -> None:
        if not self.accepts:  # the first time: what is pending now
            pending = project.proposals.find(self.image_id, status=ProposalStatus.PENDING)
            self.accepts = [AcceptProposal(p.id) if p.label else AcceptProposal(p.id, self.label)
                            for p in pending if p.label or self.label]
            if not self.accepts:
                self.accepts = []
                raise ProjectError(f"image {self.image_id} has no pending proposal with a "
                                   "label to accept")
        for accept in self.accepts:
            accept.do(project)

    def undo(self, project: Project) -> None:
        for accept in reversed(self.accepts):
            accept.undo(project)

    def resolve(self, project: Project) -> None:
        for accept in self.accepts:
            accept.resolve(project)

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "label": self.label,
                "accepts": [command_to_dict(a) for a in self.accepts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcceptAll:
        accepts = [command_from_dict(d) for d in data.get("accepts", [])]
        return cls(data["image_id"], data.get("label"),
                   [a for a in accepts if isinstance(a, AcceptProposal)])
