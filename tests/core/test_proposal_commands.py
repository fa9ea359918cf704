"""Decisions on proposals are undoable commands persisted in the image's history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from shapely.geometry import box

from app.core.commands import (
    AcceptAll,
    AcceptProposal,
    DeleteInstance,
    RejectProposal,
    UndoStack,
    command_from_dict,
    command_to_dict,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.proposals import NewProposal, ProposalCounts, ProposalSource, ProposalStatus
from app.core.types import ImageRecord, Instance, Source


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 100, 80, "ha"))
    proj.insert_image(ImageRecord("b.png", 100, 80, "hb"))
    yield proj
    proj.close()


def add(project: Project, image_id: int, *labels: str | None) -> list[int]:
    return project.proposals.add(image_id, [
        NewProposal(box(10 * i, 0, 10 * i + 8, 8), ProposalSource.EXEMPLAR, "classical-grabcut",
                    Source.CLASSICAL, "+box(0,0,8,8)", 0.5 + i / 100, label)
        for i, label in enumerate(labels)])


def test_accept_undo_redo(project: Project) -> None:
    manual = project.add_instance(Instance(1, "cat", box(50, 50, 60, 60)))
    (pid,) = add(project, 1, "bird")
    stack = UndoStack(project, 1)
    cmd = stack.push(AcceptProposal(pid))
    assert isinstance(cmd, AcceptProposal) and cmd.added is not None
    inst = project.instance(int(cmd.added.id or 0))
    assert (inst.label, inst.source, inst.score) == ("bird", Source.CLASSICAL, 0.5)
    assert inst.geometry.equals(box(0, 0, 8, 8))
    done = project.proposals.get(pid)
    assert done.status is ProposalStatus.ACCEPTED and done.instance_id == inst.id
    assert stack.undo_text == "Accept bird"
    stack.undo()
    assert [i.id for i in project.instances(1)] == [manual.id]
    again = project.proposals.get(pid)
    assert again.status is ProposalStatus.PENDING and again.instance_id is None
    stack.redo()
    assert project.proposals.get(pid).instance_id == inst.id  # the same id back
    assert [i.id for i in project.instances(1)] == [manual.id, inst.id]


def test_accept_with_a_label_and_an_edited_geometry(project: Project) -> None:
    pid, unlabelled = add(project, 1, "bird", None)
    stack = UndoStack(project, 1)
    with pytest.raises(ProjectError, match=f"proposal {unlabelled} has no label"):
        stack.push(AcceptProposal(unlabelled))
    assert project.instance_count() == 0 and not stack.can_undo
    edited = box(1, 1, 5, 5)
    cmd = stack.push(AcceptProposal(pid, "duck", edited))
    assert stack.undo_text == "Accept edited duck"
    assert isinstance(cmd, AcceptProposal) and cmd.added is not None
    inst = project.instance(int(cmd.added.id or 0))
    assert inst.label == "duck" and inst.geometry.equals(edited)
    assert project.proposals.get(pid).geometry.equals(box(0, 0, 8, 8))  # the proposal as found


def test_reject_and_decisions_only_on_pending(project: Project) -> None:
    a, b = add(project, 1, "bird", "bird")
    stack = UndoStack(project, 1)
    stack.push(RejectProposal(a))
    assert project.proposals.get(a).status is ProposalStatus.REJECTED
    with pytest.raises(ProjectError, match=f"proposal {a} is already rejected"):
        stack.push(AcceptProposal(a))
    stack.push(AcceptProposal(b))
    with pytest.raises(ProjectError, match=f"proposal {b} is already accepted"):
        stack.push(RejectProposal(b))
    assert project.proposals.counts(1) == ProposalCounts(accepted=1, rejected=1)
    stack.undo()
    stack.undo()
    assert project.proposals.counts(1) == ProposalCounts(pending=2)
    assert project.instance_count() == 0


def test_decision_on_another_image_is_refused(project: Project) -> None:
    (pid,) = add(project, 2, "bird")
    with pytest.raises(ProjectError, match="not an edit of image 1"):
        UndoStack(project, 1).push(RejectProposal(pid))
    assert project.proposals.get(pid).status is ProposalStatus.PENDING


def test_accept_all_is_one_step(project: Project) -> None:
    ids = add(project, 1, "bird", None, "cat", "bird")
    add(project, 2, "bird")
    stack = UndoStack(project, 1)
    stack.push(RejectProposal(ids[3]))
    cmd = stack.push(AcceptAll(1))
    assert stack.undo_text == "Accept 2 proposals"
    assert sorted(i.label for i in project.instances(1)) == ["bird", "cat"]
    assert project.proposals.counts(1) == ProposalCounts(pending=1, accepted=2, rejected=1)
    assert project.proposals.counts(2) == ProposalCounts(pending=1)  # another image: untouched
    stack.undo()  # the whole accept-all at once
    assert project.instance_count(1) == 0
    assert project.proposals.counts(1) == ProposalCounts(pending=3, rejected=1)
    stack.redo()
    assert isinstance(cmd, AcceptAll)
    assert sorted(i.id or 0 for i in project.instances(1)) == sorted(
        int(a.added.id or 0) for a in cmd.accepts if a.added)
    # a label for those without one; then nothing is left, and an empty accept-all is refused
    stack.push(AcceptAll(1, "thing"))
    assert sorted(i.label for i in project.instances(1)) == ["bird", "cat", "thing"]
    with pytest.raises(ProjectError, match="no pending proposal"):
        stack.push(AcceptAll(1))


def test_history_survives_reopening(project: Project, tmp_path: Path) -> None:
    a, b = add(project, 1, "bird", "bird")
    stack = UndoStack(project, 1)
    stack.push(AcceptAll(1))
    stack.push(DeleteInstance(project.instances(1)[0].id or 0))
    project.update_label("bird", new_name="songbird")
    path = project.path
    project.close()
    with Project.open(path) as reopened:
        stack = UndoStack(reopened, 1)
        kinds = [c.kind for c, _ in stack.commands()]
        assert kinds == ["accept-all", "delete"]
        stack.undo()  # the delete
        stack.undo()  # the accept-all
        assert reopened.instance_count() == 0
        assert reopened.proposals.counts(1) == ProposalCounts(pending=2)
        stack.redo()
        assert [i.label for i in reopened.instances(1)] == ["songbird", "songbird"]


@pytest.mark.parametrize("command", [
    AcceptProposal(3, "bird", box(0, 0, 2, 2), 1,
                   Instance(1, "bird", box(0, 0, 2, 2), 0.5, Source.SAM2, 7, 2)),
    RejectProposal(4, 1),
    AcceptAll(1, "x", [AcceptProposal(5, None, None, 1,
                                      Instance(1, "y", box(0, 0, 3, 3), None, Source.REMOTE,
                                               8, 3))]),
])
def test_json_round_trip(command: AcceptProposal | RejectProposal | AcceptAll) -> None:
    back = command_from_dict(command_to_dict(command))
    assert type(back) is type(command) and command_to_dict(back) == command_to_dict(command)
    if isinstance(command, AcceptProposal):
        assert isinstance(back, AcceptProposal) and back.geometry is not None
        assert shapely.equals(back.geometry, box(0, 0, 2, 2))
