"""One image's instances kept in step with the project by re-reading only the changed rows
(issue: an accept cost grew with the number of instances on the image): the copy always
equals a fresh read, and an edit reads (decodes) one row, however many instances there are."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from shapely.geometry import box

from app.core.commands import AddInstance, DeleteInstance, EditGeometry, Relabel, UndoStack
from app.core.errors import ProjectError
from app.core.image_instances import ImageInstances
from app.core.instance_journal import journal
from app.core.project import Project
from app.core.types import ImageRecord, Instance, Source


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 2000, 2000, "ha"))
    proj.insert_image(ImageRecord("b.png", 2000, 2000, "hb"))
    yield proj
    proj.close()


def square(k: int) -> Instance:
    x, y = 10 * (k % 100), 10 * (k // 100)
    return Instance(1, "cell", box(x, y, x + 8, y + 8), None, Source.MANUAL)


def fresh(project: Project, image_id: int = 1) -> list[tuple[object, ...]]:
    return [(i.id, i.label, i.geometry.wkt, i.score, i.track_id)
            for i in project.instances(image_id)]


def kept(cache: ImageInstances) -> list[tuple[object, ...]]:
    return [(i.id, i.label, i.geometry.wkt, i.score, i.track_id)
            for i in cache.get().values()]


def decodes_per_add(project: Project, n: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Geometries decoded to bring the copy up to date after one add, with ``n`` before."""
    stack = UndoStack(project, 1)
    for k in range(n):
        stack.push(AddInstance(square(k)))
    cache = ImageInstances(project, 1)
    cache.get()
    calls = []
    original = shapely.from_wkb
    monkeypatch.setattr(shapely, "from_wkb", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    stack.push(AddInstance(square(n)))
    assert len(cache.get()) == n + 1
    monkeypatch.undo()
    return len(calls)


def test_an_add_decodes_one_row_with_few_or_many_instances(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counts = []
    for n in (10, 200):
        proj = Project.create(tmp_path / f"p{n}.maskloop", tmp_path)
        proj.insert_image(ImageRecord("a.png", 2000, 2000, "ha"))
        counts.append(decodes_per_add(proj, n, monkeypatch))
        proj.close()
    assert counts == [1, 1]  # before: every instance of the image (11, 201)


def add(stack: UndoStack, inst: Instance) -> int:
    command = stack.push(AddInstance(inst))
    assert isinstance(command, AddInstance) and command.instance.id is not None
    return command.instance.id


def test_the_copy_follows_every_kind_of_edit(project: Project) -> None:
    stack = UndoStack(project, 1)
    cache = ImageInstances(project, 1)
    other = ImageInstances(project, 2)
    ids = [add(stack, square(k)) for k in range(6)]
    UndoStack(project, 2).push(AddInstance(Instance(2, "dog", box(0, 0, 5, 5), 0.5,
                                                    Source.MANUAL)))
    assert kept(cache) == fresh(project) and kept(other) == fresh(project, 2)
    before = cache.get()
    stack.push(EditGeometry(ids[2], box(100, 100, 150, 150)))
    after = cache.get()
    assert kept(cache) == fresh(project)
    # the unchanged instances are the very same objects; the edited one is new
    assert all(after[i] is before[i] for i in ids if i != ids[2])
    assert after[ids[2]] is not before[ids[2]]
    stack.push(DeleteInstance(ids[3]))
    stack.push(Relabel(ids[0], "nucleus"))
    assert kept(cache) == fresh(project)
    stack.undo()
    stack.undo()  # the deleted instance comes back in its place (its old id)
    assert kept(cache) == fresh(project)
    assert list(cache.get()) == sorted(cache.get())
    stack.redo()
    project.update_label("cell", new_name="blob")  # renames every instance of it
    assert kept(cache) == fresh(project) and {i.label for i in cache.get().values()} >= {"blob"}
    project.update_label("blob", colour="#123456")
    assert kept(cache) == fresh(project)
    project.remove_label("blob", delete_instances=True)
    assert kept(cache) == fresh(project) and kept(other) == fresh(project, 2)


def test_a_rolled_back_edit_is_not_seen(project: Project) -> None:
    stack = UndoStack(project, 1)
    iid = add(stack, square(0))
    cache = ImageInstances(project, 1)
    cache.get()
    with pytest.raises(ProjectError), project.transaction():
        project.update_geometry(iid, box(300, 300, 400, 400))
        project.add_instance(square(5))
        raise ProjectError("changed my mind")
    assert kept(cache) == fresh(project) and len(cache.get()) == 1


def test_a_reader_far_behind_reads_everything_again(project: Project,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.core.instance_journal.KEEP", 3)
    stack = UndoStack(project, 1)
    cache = ImageInstances(project, 1)
    cache.get()
    for k in range(10):
        stack.push(AddInstance(square(k)))
    assert kept(cache) == fresh(project)
    assert journal(project) is journal(project)  # one journal (one set of triggers) each


def test_first_read_inside_a_rolled_back_transaction(project: Project) -> None:
    """The journal's triggers are not put in place inside a transaction (a rollback would
    take them away unseen): until they are, the copy is read whole."""
    stack = UndoStack(project, 1)
    add(stack, square(0))
    cache = ImageInstances(project, 1)
    with pytest.raises(ProjectError), project.transaction():
        assert len(cache.get()) == 1
        project.add_instance(square(1))
        raise ProjectError("changed my mind")
    add(stack, square(2))
    assert kept(cache) == fresh(project)
    read = cache.rows_read
    add(stack, square(3))
    assert kept(cache) == fresh(project) and cache.rows_read == read + 1


def test_a_closed_project_is_not_kept_alive(tmp_path: Path) -> None:
    proj = Project.create(tmp_path / "gone.maskloop", tmp_path)
    proj.insert_image(ImageRecord("a.png", 20, 20, "ha"))
    ImageInstances(proj, 1).get()
    gone = weakref.ref(proj)
    proj.close()
    del proj
    gc.collect()
    assert gone() is None
