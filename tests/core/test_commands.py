"""Undoable commands and the persisted per-image undo stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely
from old_schemas import rewrite_as_version
from shapely.geometry import Polygon, box

from app.core.commands import (
    AddInstance,
    Batch,
    DeleteInstance,
    EditGeometry,
    Merge,
    Relabel,
    SetStatus,
    UndoStack,
    command_from_dict,
    command_to_dict,
)
from app.core.errors import ProjectError
from app.core.project import Project
from app.core.types import ImageRecord, ImageStatus, Instance, Label, Source


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 100, 80, "ha"))
    proj.insert_image(ImageRecord("b.png", 100, 80, "hb"))
    yield proj
    proj.close()


def state(project: Project, image_id: int = 1) -> list[tuple[int, str, bytes, float | None]]:
    return [(i.id, i.label, shapely.to_wkb(i.geometry), i.score)
            for i in project.instances(image_id)]


def test_add_undo_redo(project: Project) -> None:
    stack = UndoStack(project, 1)
    assert not stack.can_undo and not stack.can_redo and stack.undo() is None
    cmd = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4), 0.9, Source.SAM2)))
    inst_id = cmd.instance.id
    assert inst_id is not None and stack.can_undo and stack.undo_text == "Add bird"
    assert stack.undo() is not None
    assert project.instance_count() == 0 and stack.can_redo and not stack.can_undo
    stack.redo()
    assert state(project) == [(inst_id, "bird", shapely.to_wkb(box(0, 0, 4, 4)), 0.9)]
    assert project.instance(inst_id).source is Source.SAM2
    assert stack.redo() is None


def test_push_clears_redo(project: Project) -> None:
    stack = UndoStack(project, 1)
    stack.push(AddInstance(Instance(1, "bird", box(0, 0, 1, 1))))
    stack.push(AddInstance(Instance(1, "cat", box(2, 2, 3, 3))))
    stack.undo()
    assert stack.can_redo
    stack.push(AddInstance(Instance(1, "dog", box(5, 5, 6, 6))))
    assert not stack.can_redo
    assert [i.label for i in project.instances(1)] == ["bird", "dog"]
    assert [c.text for c, _ in stack.commands()] == ["Add bird", "Add dog"]


def test_delete_undo_restores_the_same_instance(project: Project) -> None:
    stack = UndoStack(project, 1)
    holed = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], [[(2, 2), (5, 2), (5, 5), (2, 5)]])
    inst = stack.push(AddInstance(Instance(1, "bird", holed, 0.25, Source.CLASSICAL))).instance
    other = project.add_instance(Instance(1, "cat", box(20, 20, 30, 30)))
    before = state(project)
    stack.push(DeleteInstance(inst.id))
    assert [i.id for i in project.instances(1)] == [other.id]
    stack.undo()
    assert state(project) == before
    assert project.instance(inst.id).source is Source.CLASSICAL
    stack.redo()
    assert [i.id for i in project.instances(1)] == [other.id]


def test_edit_geometry_and_relabel(project: Project) -> None:
    stack = UndoStack(project, 1)
    inst = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.push(EditGeometry(inst.id, box(1.5, 1.5, 7.25, 9)))
    stack.push(Relabel(inst.id, "heron"))
    assert project.instance(inst.id).label == "heron"
    assert project.label("heron") is not None
    assert stack.undo_text == "Relabel as heron"
    stack.undo()
    assert project.instance(inst.id).label == "bird"
    stack.undo()
    assert shapely.equals_exact(project.instance(inst.id).geometry, box(0, 0, 4, 4), 0)
    stack.redo()
    stack.redo()
    got = project.instance(inst.id)
    assert got.label == "heron" and shapely.equals_exact(got.geometry, box(1.5, 1.5, 7.25, 9), 0)


def test_merge_and_undo(project: Project) -> None:
    stack = UndoStack(project, 1)
    ids = [stack.push(AddInstance(Instance(1, lab, g))).instance.id for lab, g in
           [("bird", box(0, 0, 4, 4)), ("cat", box(2, 2, 6, 6)), ("bird", box(10, 10, 12, 12))]]
    before = state(project)
    stack.push(Merge(ids))
    (merged,) = project.instances(1)
    assert merged.id == ids[0] and merged.label == "bird"
    assert merged.geometry.area == pytest.approx(16 + 16 - 4 + 4)
    assert merged.geometry.geom_type == "MultiPolygon" and merged.geometry.is_valid
    stack.undo()
    assert state(project) == before
    stack.redo()
    assert [i.id for i in project.instances(1)] == [ids[0]]


def test_failed_commands_change_nothing(project: Project) -> None:
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    b = project.add_instance(Instance(2, "bird", box(0, 0, 4, 4)))
    with pytest.raises(ProjectError, match="different images"):
        stack.push(Merge([a.id, b.id]))
    with pytest.raises(ProjectError, match="not an edit of image 1"):
        stack.push(DeleteInstance(b.id))
    assert project.instance(b.id) is not None  # rolled back
    assert len(stack.commands()) == 1
    # the store changed behind the stack's back: undo fails cleanly and can be retried later
    project.delete_instance(a.id)
    with pytest.raises(ProjectError, match=f"no instance with id {a.id}"):
        stack.undo()
    assert stack.can_undo and not stack.can_redo


def test_set_status_and_batch(project: Project) -> None:
    stack = UndoStack(project, 1)
    stack.push(SetStatus(1, ImageStatus.DONE))
    assert project.image(1).status is ImageStatus.DONE
    stack.push(Batch([AddInstance(Instance(1, "bird", box(0, 0, 1, 1))),
                      AddInstance(Instance(1, "bird", box(2, 2, 3, 3)))], "Accept 2 proposals"))
    assert project.instance_count(1) == 2 and stack.undo_text == "Accept 2 proposals"
    stack.undo()
    assert project.instance_count(1) == 0
    stack.undo()
    assert project.image(1).status is ImageStatus.NEW
    stack.redo()
    stack.redo()
    assert project.instance_count(1) == 2 and project.image(1).status is ImageStatus.DONE


def test_history_survives_reopening(tmp_path: Path, project: Project) -> None:
    stack = UndoStack(project, 1)
    inst = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.push(EditGeometry(inst.id, box(0, 0, 8, 8)))
    stack.push(DeleteInstance(inst.id))
    stack.undo()
    UndoStack(project, 2).push(AddInstance(Instance(2, "cat", box(0, 0, 1, 1))))
    project.close()
    with Project.open(project.path) as reopened:
        stack = UndoStack(reopened, 1)
        assert stack.can_undo and stack.can_redo and stack.redo_text == "Delete bird"
        stack.undo()
        assert reopened.instance(inst.id).geometry.area == 16
        stack.undo()
        assert reopened.instance_count(1) == 0 and not stack.can_undo
        other = UndoStack(reopened, 2)  # each image has its own history
        assert other.undo_text == "Add cat" and not other.can_redo
    with Project.open(project.path) as reopened:
        stack = UndoStack(reopened, 1)
        for _ in range(3):
            stack.redo()
        assert reopened.instance_count(1) == 0 and not stack.can_redo


def test_history_is_trimmed_to_its_limit(project: Project) -> None:
    stack = UndoStack(project, 1, limit=3)
    for i in range(5):
        stack.push(AddInstance(Instance(1, "bird", box(i, 0, i + 1, 1))))
    assert len(stack.commands()) == 3
    while stack.undo():
        pass
    assert project.instance_count(1) == 2


def test_commands_serialise_to_json_and_back(project: Project) -> None:
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4), 0.5))).instance
    b = stack.push(AddInstance(Instance(1, "bird", box(3, 3, 9, 9)))).instance
    commands = [EditGeometry(a.id, box(0, 0, 2, 2)), Relabel(a.id, "cat"), Merge([a.id, b.id]),
                SetStatus(1, ImageStatus.SKIPPED)]
    for command in commands:
        stack.push(command)
    commands.append(DeleteInstance(a.id))
    stack.push(commands[-1])
    for command in commands:
        data = command_to_dict(command)
        assert command_to_dict(command_from_dict(data)) == data
    with pytest.raises(ProjectError, match="unknown command"):
        command_from_dict({"kind": "explode"})
    with pytest.raises(ProjectError):
        UndoStack(project, 99)


def test_history_refers_to_labels_by_id_across_a_rename(project: Project) -> None:
    """Rename a label, undo everything, redo everything: the instance is back under the
    renamed label; no label of the old name is created again."""
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    b = stack.push(AddInstance(Instance(1, "bird", box(5, 5, 9, 9)))).instance
    stack.push(Relabel(a.id, "cat"))
    stack.push(Merge([b.id, a.id]))
    stack.push(DeleteInstance(b.id))
    project.update_label("bird", new_name="eagle")
    project.update_label("cat", new_name="feline")
    assert stack.undo_text == "Delete eagle"
    while stack.undo():
        pass
    assert project.instance_count(1) == 0
    assert [lab.name for lab in project.labels()] == ["eagle", "feline"]
    assert stack.redo_text == "Add eagle"
    while stack.redo():
        assert [lab.name for lab in project.labels()] == ["eagle", "feline"]
    assert project.instance_count(1) == 0  # the last command deleted the merged instance
    stack.undo()
    stack.undo()  # before the merge: a is a feline, b an eagle
    assert {i.id: i.label for i in project.instances(1)} == {a.id: "feline", b.id: "eagle"}
    stack.undo()  # before the relabel
    assert project.instance(a.id).label == "eagle"
    assert [lab.name for lab in project.labels()] == ["eagle", "feline"]


def _strip_label_ids(data: object) -> object:
    """A command's JSON as MaskLoop wrote it before history referred to labels by id."""
    if isinstance(data, dict):
        return {k: _strip_label_ids(v) for k, v in data.items()
                if k not in ("label_id", "new_id", "old_id")}
    return [_strip_label_ids(v) for v in data] if isinstance(data, list) else data


def _make_rows_old(project: Project, image_id: int = 1) -> None:
    for row in project.query("SELECT seq, command FROM history WHERE image_id = ?",
                             (image_id,)):
        old = json.dumps(_strip_label_ids(json.loads(row["command"])))
        project.execute("UPDATE history SET command = ? WHERE image_id = ? AND seq = ?",
                        (old, image_id, row["seq"]))


def test_old_history_rows_with_label_names_still_load(project: Project) -> None:
    """Rows of an older project name their labels: opening it resolves the names to ids
    once, so a rename made afterwards is followed by undo and redo."""
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.push(Relabel(a.id, "cat"))
    stack.push(DeleteInstance(a.id))
    _make_rows_old(project)
    project.close()
    rewrite_as_version(project.path, 1)
    with Project.open(project.path) as reopened:
        reopened.update_label("cat", new_name="feline")
        reopened.update_label("bird", new_name="eagle")
        stack = UndoStack(reopened, 1)
        assert stack.undo_text == "Delete feline"
        stack.undo()
        assert reopened.instance(a.id).label == "feline"
        stack.undo()
        assert reopened.instance(a.id).label == "eagle"
        stack.undo()
        assert reopened.instance_count(1) == 0
        for _ in range(3):
            stack.redo()
        stack.undo()
        assert reopened.instance(a.id).label == "feline"
        assert [lab.name for lab in reopened.labels()] == ["eagle", "feline"]


def test_history_rows_without_label_ids_are_resolved_when_read(project: Project) -> None:
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.push(Relabel(a.id, "cat"))
    _make_rows_old(project)
    assert stack.undo_text == "Relabel as cat"
    stack.undo()  # read by name, stored again with the label ids
    project.update_label("cat", new_name="feline")
    stack.redo()
    assert project.instance(a.id).label == "feline"
    assert [lab.name for lab in project.labels()] == ["bird", "feline"]


def test_undoing_every_instance_makes_the_image_new_again(project: Project) -> None:
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.push(AddInstance(Instance(1, "bird", box(5, 5, 9, 9))))
    assert project.image(1).status is ImageStatus.IN_PROGRESS
    stack.undo()
    assert project.image(1).status is ImageStatus.IN_PROGRESS  # one instance is left
    stack.undo()
    assert project.image(1).status is ImageStatus.NEW
    stack.redo()
    assert project.image(1).status is ImageStatus.IN_PROGRESS
    stack.push(DeleteInstance(a.id))  # deleting the last one by hand, too
    assert project.image(1).status is ImageStatus.NEW
    stack.undo()
    assert project.image(1).status is ImageStatus.IN_PROGRESS
    # a status the person chose stays
    stack.push(SetStatus(1, ImageStatus.DONE))
    stack.push(DeleteInstance(a.id))
    assert project.image(1).status is ImageStatus.DONE
    project.set_status(2, ImageStatus.SKIPPED)
    b = project.add_instance(Instance(2, "bird", box(0, 0, 4, 4)))
    project.delete_instance(b.id)
    assert project.image(2).status is ImageStatus.SKIPPED


def test_a_removed_label_is_created_again_not_confused_with_a_newer_one(
        project: Project) -> None:
    """Label ids are never handed out twice, so history naming a removed label's id cannot
    put an instance under a label made later."""
    stack = UndoStack(project, 1)
    a = stack.push(AddInstance(Instance(1, "bird", box(0, 0, 4, 4)))).instance
    stack.undo()
    bird_id = project.label("bird").id
    project.remove_label("bird")
    assert project.add_label(Label("dog")).id != bird_id
    stack.redo()
    assert project.instance(a.id).label == "bird"
