"""The review queue without Qt: its order, moves, filters, the commands of its keys and
where it goes after a decision, an undo and a redo, on a real project file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shapely.geometry import box

from app.core.commands import UndoStack
from app.core.project import Project
from app.core.proposals import NewProposal, ProposalSource, ProposalStatus
from app.core.types import ImageRecord, Source
from app.interaction.review import (
    REVIEW_KEYS,
    ReviewAction,
    ReviewFilter,
    ReviewQueue,
    action_for_key,
    counts_text,
)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    for name in "abcd":
        proj.insert_image(ImageRecord(f"{name}.png", 100, 80, f"h{name}"))
    yield proj
    proj.close()


def propose(project: Project, image_id: int, scores: list[float | None],
            source: ProposalSource = ProposalSource.EVERYTHING) -> list[int]:
    return project.proposals.add(image_id, [
        NewProposal(box(10 * k, 10, 10 * k + 8, 18), source, "classical", Source.CLASSICAL,
                    "", score) for k, score in enumerate(scores)])


def push(project: Project, queue: ReviewQueue, action: ReviewAction,
         label: str = "cat") -> UndoStack:
    """What the window does for a key: build the command, push it, move on."""
    assert queue.image_id is not None
    stack = UndoStack(project, queue.image_id)
    command = queue.command(action, label, geometry=box(0, 0, 5, 5))
    assert command is not None
    stack.push(command)
    queue.decided(queue.image_id)
    queue.refresh()
    return stack


def test_every_action_has_keys_and_no_key_is_shared() -> None:
    keys = [k for _, _, ks in REVIEW_KEYS for k in ks]
    assert len(keys) == len(set(keys))
    assert {a for a, _, _ in REVIEW_KEYS} == set(ReviewAction)
    assert action_for_key("Return") is ReviewAction.ACCEPT
    assert action_for_key("Shift+Return") is ReviewAction.ACCEPT_ALL
    assert action_for_key("Delete") is ReviewAction.REJECT
    assert action_for_key("E") is ReviewAction.EDIT
    assert action_for_key("Q") is None


def test_order_image_by_image_best_first(project: Project) -> None:
    propose(project, 1, [0.5, 0.9])
    propose(project, 3, [0.7])
    queue = ReviewQueue(project.proposals)
    assert queue.start() and queue.image_id == 1
    assert [p.score for p in queue.items] == [0.9, 0.5]
    assert queue.step(1) and queue.current is not None and queue.current.score == 0.5
    assert queue.step(1) and queue.image_id == 3  # past the last: the next image
    assert not queue.step(1) and queue.image_id == 3  # the end: nothing moves
    assert queue.step(-1) and queue.image_id == 1 and queue.index == 1  # back: its last
    assert queue.step_image(1) and queue.image_id == 3 and queue.index == 0
    assert queue.step_image(-1) and (queue.image_id, queue.index) == (1, 0)
    assert not queue.step_image(-1)


def test_start_on_an_image_without_proposals_goes_to_the_next(project: Project) -> None:
    propose(project, 1, [0.5])
    propose(project, 3, [0.7])
    queue = ReviewQueue(project.proposals)
    assert queue.start(2) and queue.image_id == 3
    assert queue.start(4) and queue.image_id == 1  # wraps around


def test_nothing_to_review(tmp_path: Path) -> None:
    proj = Project.create(tmp_path / "e.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 10, 10, "ha"))
    queue = ReviewQueue(proj.proposals)
    assert not queue.start(1) and queue.current is None and queue.done
    assert queue.command(ReviewAction.ACCEPT, "cat") is None
    proj.close()


def test_the_window_order_decides(project: Project) -> None:
    propose(project, 1, [0.5])
    propose(project, 2, [0.5])
    propose(project, 4, [0.5])
    order = [4, 2, 3]  # the list is sorted otherwise and filtered (image 1 hidden)
    queue = ReviewQueue(project.proposals, lambda: order)
    assert queue.images() == [4, 2]
    assert queue.start() and queue.image_id == 4
    assert queue.step(1) and queue.image_id == 2
    assert not queue.step(1)
    assert queue.start(3) and queue.image_id == 4  # after 3 comes nothing: wrap to 4


def test_decisions_move_on_and_undo_comes_back(project: Project) -> None:
    a, b = propose(project, 1, [0.9, 0.5])
    (c,) = propose(project, 2, [0.7])
    queue = ReviewQueue(project.proposals)
    queue.start()
    stack1 = push(project, queue, ReviewAction.ACCEPT)
    assert project.proposals.get(a).status is ProposalStatus.ACCEPTED
    assert queue.current is not None and queue.current.id == b
    push(project, queue, ReviewAction.REJECT)
    assert project.proposals.get(b).status is ProposalStatus.REJECTED
    assert queue.image_id == 2 and queue.current is not None and queue.current.id == c
    # Ctrl+Z on image 2: the last decision was on image 1, so the window goes back there
    assert queue.undo_image() == 1
    queue.go_to_image(1)
    assert stack1.undo() is not None
    queue.refresh()
    assert queue.current is not None and queue.current.id == b  # the undone one is current
    assert project.proposals.get(b).status is ProposalStatus.PENDING
    assert queue.redo_image() == 1
    stack1.redo()
    queue.refresh()
    assert queue.image_id == 2 and queue.current is not None and queue.current.id == c
    assert queue.counts(1).accepted == 1 and queue.counts(1).rejected == 1
    assert counts_text(queue.counts()) == "1 pending · 1 accepted · 1 rejected"


def test_edit_accepts_the_edited_geometry(project: Project) -> None:
    (a,) = propose(project, 1, [0.9])
    queue = ReviewQueue(project.proposals)
    queue.start()
    push(project, queue, ReviewAction.EDIT)
    accepted = project.proposals.get(a)
    assert accepted.instance_id is not None
    assert project.instance(accepted.instance_id).geometry.equals(box(0, 0, 5, 5))
    assert queue.done


def test_accept_all_takes_what_the_filter_shows_and_undoes_as_one(project: Project) -> None:
    propose(project, 1, [0.9, 0.8, 0.2])
    propose(project, 1, [0.95], ProposalSource.TEXT)
    queue = ReviewQueue(project.proposals)
    queue.set_filter(ReviewFilter(frozenset({ProposalSource.EVERYTHING}), 0.5))
    assert [p.score for p in queue.items] == [0.9, 0.8]
    assert queue.filter.describe() == "everything · score ≥ 0.50"
    stack = push(project, queue, ReviewAction.ACCEPT_ALL)
    assert len(project.instances(1)) == 2
    assert project.proposals.counts(1).pending == 2  # the hidden ones stay to review
    assert queue.done  # nothing left that passes the filter
    stack.undo()
    assert project.instances(1) == [] and project.proposals.counts(1).pending == 4
    queue.set_filter(ReviewFilter())
    assert queue.current is not None and queue.current.source is ProposalSource.TEXT


def test_min_score_leaves_out_proposals_without_a_score(project: Project) -> None:
    propose(project, 1, [None, 0.6])
    propose(project, 2, [0.3])
    queue = ReviewQueue(project.proposals)
    assert queue.start() and len(queue.items) == 2
    assert queue.set_filter(ReviewFilter(min_score=0.5))
    assert queue.images() == [1] and [p.score for p in queue.items] == [0.6]
    assert not queue.set_filter(ReviewFilter(min_score=0.99)) and queue.done


def test_select_a_proposal_by_id(project: Project) -> None:
    a, b = propose(project, 1, [0.9, 0.5])
    queue = ReviewQueue(project.proposals)
    queue.start()
    assert queue.select(b) and queue.current is not None and queue.current.id == b
    assert not queue.select(12345)
