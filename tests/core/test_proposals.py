"""The proposal store: adding, filtering, counts, batch-run bookkeeping, and the 2 -> 3
schema migration of a real version-2 project file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Polygon, box

from app.core.errors import ProjectError
from app.core.project import Project
from app.core.project_schema import (
    APPLICATION_ID,
    SCHEMA_V1,
    SCHEMA_V2,
    SCHEMA_VERSION,
    geometry_to_wkb,
)
from app.core.proposals import NewProposal, ProposalCounts, ProposalSource, ProposalStatus
from app.core.types import ImageRecord, Instance, Source


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 100, 80, "ha"))
    proj.insert_image(ImageRecord("b.png", 100, 80, "hb"))
    yield proj
    proj.close()


def proposal(geom: Polygon, score: float | None = 0.5, label: str | None = "bird",
             source: ProposalSource = ProposalSource.TEXT) -> NewProposal:
    return NewProposal(geom, source, "classical-grabcut", Source.CLASSICAL, "bird", score, label)


def test_add_and_read_back(project: Project) -> None:
    holed = Polygon([(0, 0), (20, 0), (20, 20), (0, 20)], [[(5, 5), (9, 5), (9, 9), (5, 9)]])
    ids = project.proposals.add(1, [proposal(holed, 0.75), proposal(box(30, 30, 40, 45), None,
                                                                    None)])
    first = project.proposals.get(ids[0])
    assert first.image_id == 1 and first.status is ProposalStatus.PENDING
    assert shapely.to_wkb(first.geometry) == shapely.to_wkb(holed)  # the same encoding
    assert (first.source, first.backend, first.made_by, first.prompt, first.score,
            first.label) == (ProposalSource.TEXT, "classical-grabcut", Source.CLASSICAL,
                             "bird", 0.75, "bird")
    assert first.instance_id is None and first.decided_at is None and first.created_at
    second = project.proposals.get(ids[1])
    assert second.score is None and second.label is None
    with pytest.raises(ProjectError, match="no proposal with id 99"):
        project.proposals.get(99)


def test_add_refuses_bad_input_and_keeps_nothing(project: Project) -> None:
    with pytest.raises(ProjectError, match="no image with id 7"):
        project.proposals.add(7, [proposal(box(0, 0, 1, 1))])
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(ProjectError, match="proposal geometry .* not valid"):
        project.proposals.add(1, [proposal(box(0, 0, 1, 1)), proposal(bowtie)])
    assert project.proposals.find() == []  # the valid one before it was rolled back too


def test_adding_proposals_leaves_instances_untouched(project: Project) -> None:
    """X-AnyLabeling #1292: an automatic result deleted existing annotations. Proposals on
    top of (and identical to) accepted instances change no instance."""
    kept = [project.add_instance(Instance(1, "bird", box(0, 0, 30, 30), 0.9, Source.MANUAL)),
            project.add_instance(Instance(1, "cat", box(50, 10, 90, 60)))]
    before = [(i.id, i.label, shapely.to_wkb(i.geometry), i.score, i.source)
              for i in project.instances(1)]
    project.proposals.add(1, [proposal(box(0, 0, 30, 30), 0.99, "bird"),
                              proposal(box(40, 0, 100, 80), 0.8, "cat"),
                              proposal(box(0, 0, 100, 80), 0.7, None, ProposalSource.EVERYTHING)])
    after = [(i.id, i.label, shapely.to_wkb(i.geometry), i.score, i.source)
             for i in project.instances(1)]
    assert after == before and len(after) == len(kept)
    assert project.instance_count() == 2 and project.label_counts() == {"bird": 1, "cat": 1}


def test_find_filters_and_order(project: Project) -> None:
    store = project.proposals
    a = store.add(1, [proposal(box(0, 0, 5, 5), 0.2), proposal(box(0, 0, 6, 6), 0.9),
                      proposal(box(0, 0, 7, 7), None, source=ProposalSource.EVERYTHING)])
    b = store.add(2, [proposal(box(0, 0, 8, 8), 0.6, source=ProposalSource.BOXES)])
    assert [p.id for p in store.find()] == [a[1], a[0], a[2], b[0]]  # best first, None last
    assert [p.id for p in store.find(image_id=2)] == b
    assert [p.id for p in store.find(min_score=0.5)] == [a[1], b[0]]
    assert [p.id for p in store.find(source="everything")] == [a[2]]
    assert [p.id for p in store.find(source=["boxes", ProposalSource.TEXT])] == [a[1], a[0], b[0]]
    store.decide(a[1], ProposalStatus.REJECTED)
    assert [p.id for p in store.find(1, status="pending", min_score=0.1)] == [a[0]]
    assert [p.id for p in store.find(status=[ProposalStatus.REJECTED])] == [a[1]]
    with pytest.raises(ProjectError, match="use one of: text, exemplar"):
        store.find(source="detector")


def test_counts_per_image_and_project(project: Project) -> None:
    store = project.proposals
    assert store.counts() == ProposalCounts() and store.counts_by_image() == {}
    a = store.add(1, [proposal(box(0, 0, 5, 5)) for _ in range(4)])
    store.add(2, [proposal(box(0, 0, 5, 5)) for _ in range(2)])
    store.decide(a[0], ProposalStatus.ACCEPTED, None)
    store.decide(a[1], ProposalStatus.REJECTED)
    store.decide(a[2], ProposalStatus.REJECTED)
    assert store.counts(1) == ProposalCounts(pending=1, accepted=1, rejected=2)
    assert store.counts(2) == ProposalCounts(pending=2)
    assert store.counts() == ProposalCounts(pending=3, accepted=1, rejected=2)
    assert store.counts().total == 6
    assert store.counts_by_image() == {1: store.counts(1), 2: store.counts(2)}
    assert store.images_with() == [1, 2] and store.images_with("rejected") == [1]
    assert store.get(a[1]).decided_at is not None
    store.decide(a[1], ProposalStatus.PENDING)
    assert store.get(a[1]).decided_at is None


def test_run_bookkeeping_is_per_run_key(project: Project) -> None:
    store = project.proposals
    store.add_for_run(1, "everything|classical", [proposal(box(0, 0, 5, 5))])
    store.add_for_run(2, "everything|classical", [])
    store.add_for_run(1, "text:bird|classical", [])
    assert store.done_images("everything|classical") == {1, 2}
    assert store.done_images("text:bird|classical") == {1}
    assert store.done_images("other") == set()
    assert len(store.find()) == 1


def test_deleting_an_image_deletes_its_proposals(project: Project) -> None:
    project.proposals.add_for_run(2, "k", [proposal(box(0, 0, 5, 5))])
    project.execute("DELETE FROM images WHERE id = 2")
    assert project.proposals.find() == [] and project.proposals.done_images("k") == set()


def _version2_file(path: Path) -> None:
    """A project file exactly as schema version 2 wrote it, with an image and an instance."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (SCHEMA_V1 + SCHEMA_V2).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO images VALUES (1, 'a.png', 100, 80, 'ha', 'in progress', 't')")
    conn.execute("INSERT INTO labels VALUES (1, 'bird', '#e6194b', '1', 0)")
    conn.execute("INSERT INTO instances VALUES (1, 1, 1, ?, 0.5, 'manual', 't', 't')",
                 (geometry_to_wkb(box(1, 1, 9, 9)),))
    conn.close()


def test_version2_file_opens_and_migrates(tmp_path: Path) -> None:
    path = tmp_path / "old.maskloop"
    _version2_file(path)
    with Project.open(path) as project:
        assert project.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
        assert [i.label for i in project.instances(1)] == ["bird"]
        assert project.proposals.counts() == ProposalCounts()
        ids = project.proposals.add(1, [proposal(box(0, 0, 5, 5))])
    with Project.open(path) as project:  # and stays migrated
        assert [p.id for p in project.proposals.find()] == ids
        assert project.instance(1).geometry.equals(box(1, 1, 9, 9))


def test_repeats_name_what_an_image_already_has(project: Project) -> None:
    """A search run again: a result over a pending proposal is that proposal, one over an
    instance or a rejected proposal is a repeat (0), anything else or on another image is
    new (None)."""
    from app.core.commands import UndoStack
    from app.core.proposal_commands import RejectProposal

    project.add_instance(Instance(1, "bird", box(60, 60, 90, 75), 0.9, Source.MANUAL))
    pending, rejected = project.proposals.add(1, [proposal(box(0, 0, 20, 20)),
                                                  proposal(box(30, 0, 50, 20))])
    UndoStack(project, 1).push(RejectProposal(rejected))
    found = [box(1, 1, 20, 20),  # the pending one, slightly off
             box(30, 0, 50, 21),  # the rejected one
             box(61, 60, 90, 75),  # the instance
             box(0, 40, 20, 60),  # new
             box(0, 0, 10, 20)]  # half of the pending one: IoU 0.5, new
    assert project.proposals.repeats(1, found) == [pending, 0, 0, None, None]
    assert project.proposals.repeats(2, found[:1]) == [None]
