"""Sequences in the project store (schema 4): videos and frame folders, frames as lazily made
image rows, tracks, anchors and propagated instances, on real files."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from old_schemas import rewrite_as_version
from shapely.geometry import Polygon, box
from test_project import write_png
from test_sequences import H, W, _codec, make_video

from app.core.commands import AddInstance, DeleteInstance, EditGeometry, UndoStack
from app.core.errors import ProjectError
from app.core.image_checks import check_images
from app.core.images import content_hash
from app.core.project import Project
from app.core.project_schema import SCHEMA_VERSION
from app.core.proposals import NewProposal, ProposalSource
from app.core.types import ImageStatus, Instance, InstanceOrigin, Source

FRAMES = 12


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 96 x 64 video at 24 fps, written with PyAV."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4",
                      _codec("libx264", "h264", "mpeg4"), frames=FRAMES)


@pytest.fixture
def root(tmp_path: Path, clip_file: Path) -> Path:
    """An image root with the video, a folder of 5 frames and one plain image."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(clip_file, folder / "clip.mp4")
    for i in range(5):
        write_png(folder / "shot" / f"frame_{i}.png", seed=i)
    write_png(folder / "photo.png", seed=9)
    return folder


@pytest.fixture
def project(tmp_path: Path, root: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", root)
    yield proj
    proj.close()


def square(x: float, size: float = 8) -> Polygon:
    return box(x, 4, x + size, 4 + size)


# --- sequences --------------------------------------------------------------------------------


def test_add_video_and_frame_folder(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4")
    assert (video.path, video.kind, video.frame_count, video.fps, video.width, video.height) \
        == ("clip.mp4", "video", FRAMES, 24.0, W, H)
    assert video.content_hash == content_hash(root / "clip.mp4")  # as an image's is hashed
    assert store.add(root / "clip.mp4") == video  # again: the same record, nothing added
    folder = store.add(root / "shot")
    assert (folder.path, folder.kind, folder.frame_count, folder.width, folder.height) \
        == ("shot", "frames", 5, 16, 12)
    assert store.all() == [video, folder]
    assert store.get(folder.id) == folder and store.by_path("shot") == folder
    assert store.by_path("other.mp4") is None
    with pytest.raises(ProjectError, match="no sequence with id 99"):
        store.get(99)
    assert store.path_of(video) == root / "clip.mp4"
    with store.open(video.id) as seq:
        assert len(seq) == FRAMES and seq.frame(FRAMES - 1).shape == (H, W, 3)
    with store.open(folder.id) as seq:
        assert len(seq) == 5 and seq.size == (16, 12)


def test_frame_folder_hash_follows_names_and_contents(project: Project, root: Path) -> None:
    first = project.sequences.add(root / "shot")
    shutil.copytree(root / "shot", root / "copy")
    assert project.sequences.add(root / "copy").content_hash == first.content_hash
    shutil.copytree(root / "shot", root / "renamed")
    (root / "renamed" / "frame_4.png").rename(root / "renamed" / "frame_5.png")
    shutil.copytree(root / "shot", root / "changed")
    write_png(root / "changed" / "frame_2.png", seed=42)
    hashes = {project.sequences.add(root / name).content_hash for name in ("renamed", "changed")}
    assert first.content_hash not in hashes and len(hashes) == 2


def test_sequence_outside_the_image_root_is_stored_like_an_image(
        project: Project, tmp_path: Path, clip_file: Path) -> None:
    outside = tmp_path / "elsewhere" / "far.mp4"
    outside.parent.mkdir()
    shutil.copy(clip_file, outside)
    record = project.sequences.add(outside)
    assert record.path == project.relative_path(outside) == "../elsewhere/far.mp4"
    assert project.sequences.path_of(record).resolve() == outside.resolve()


def test_unreadable_sequences_are_refused_naming_the_file(project: Project, root: Path) -> None:
    bad = root / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    (root / "empty").mkdir()
    for path in (bad, root / "empty", root / "missing.mp4", root / "photo.png"):
        with pytest.raises(ProjectError, match=path.name):
            project.sequences.add(path)
    assert project.sequences.all() == []


# --- frames -----------------------------------------------------------------------------------


def test_frames_are_image_rows_made_on_first_use(project: Project, root: Path) -> None:
    photo = project.add_images(root / "photo.png").added[0]
    video = project.sequences.add(root / "clip.mp4")
    assert project.query("SELECT COUNT(*) FROM images")[0][0] == 1  # no frame rows yet
    frame = project.sequences.frame_image(video.id, 3)
    assert (frame.path, frame.width, frame.height, frame.content_hash) == (
        "clip.mp4#000003", W, H, f"{video.content_hash}#3")
    assert project.sequences.frame_image(video.id, 3).id == frame.id
    assert project.sequences.frame_image(video.id, FRAMES - 1).path == "clip.mp4#000011"
    assert project.query("SELECT COUNT(*) FROM images")[0][0] == 3
    for index in (FRAMES, -1):
        with pytest.raises(IndexError, match="out of range"):
            project.sequences.frame_image(video.id, index)
    assert project.sequences.frame_of(frame.id) == (video.id, 3)
    assert project.sequences.frame_of(photo.id) is None
    # the plain-image features do not see frames (their paths are not files)
    project.add_instance(Instance(frame.id, "car", square(2)))
    assert project.images() == [photo] == project.images(ImageStatus.NEW)
    assert project.images(ImageStatus.IN_PROGRESS) == []
    assert project.missing_images() == []
    assert sum(project.status_counts().values()) == 1
    assert check_images(project) == {}
    assert project.add_images(root / "photo.png").skipped_existing == ["photo.png"]
    report = project.relocate(root)
    assert report.missing == [] and report.rematched == []


def test_instances_on_frames_are_counted_but_not_listed_as_image_instances(
        project: Project, root: Path) -> None:
    photo = project.add_images(root / "photo.png").added[0]
    video = project.sequences.add(root / "clip.mp4")
    track = project.sequences.add_track(video.id, "car")
    frame = project.sequences.frame_image(video.id, 0)
    on_photo = project.add_instance(Instance(photo.id, "car", square(1)))
    on_frame = project.add_instance(Instance(frame.id, "car", square(1), track_id=track.id))
    assert project.label_counts() == {"car": 2}
    assert project.instance_count() == 2 and project.instance_count(frame.id) == 1
    assert list(project.all_instances()) == [on_photo]
    assert list(project.all_instances(include_frames=True)) == [on_photo, on_frame]
    assert project.instances(frame.id) == [on_frame]
    assert on_frame.track_id == track.id and on_frame.origin is InstanceOrigin.ANCHOR


def test_a_tracked_instance_must_be_on_a_frame_of_its_sequence(
        project: Project, root: Path) -> None:
    photo = project.add_images(root / "photo.png").added[0]
    video = project.sequences.add(root / "clip.mp4")
    folder = project.sequences.add(root / "shot")
    track = project.sequences.add_track(video.id, "car")
    other = project.sequences.frame_image(folder.id, 0)
    for image_id in (photo.id, other.id):
        with pytest.raises(ProjectError, match="not a frame of the sequence"):
            project.add_instance(Instance(image_id, "car", square(1), track_id=track.id))
    with pytest.raises(ProjectError, match="no track with id 77"):
        project.add_instance(Instance(other.id, "car", square(1), track_id=77))
    assert project.instance_count() == 0


# --- tracks -----------------------------------------------------------------------------------


def test_track_names_labels_and_renames(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    folder = store.add(root / "shot").id
    store.add_track(video, "car")
    car2 = store.add_track(video, "car")
    lead = store.add_track(video, "person", "lead")
    assert [(t.name, t.label) for t in store.tracks(video)] == [
        ("car 1", "car"), ("car 2", "car"), ("lead", "person")]
    assert project.label("person") is not None  # created with the track
    assert store.track(car2.id) == car2
    with pytest.raises(ProjectError, match="'lead' already exists"):
        store.add_track(video, "dog", "lead")
    assert store.add_track(folder, "dog", "lead").name == "lead"  # another sequence: fine
    with pytest.raises(ProjectError, match="'car 1' already exists"):
        store.rename_track(car2.id, " car 1 ")
    with pytest.raises(ProjectError, match="needs a name"):
        store.rename_track(car2.id, "  ")
    store.rename_track(car2.id, "red car")
    store.rename_track(car2.id, "red car")  # its own name again
    assert store.track(car2.id).name == "red car"
    assert store.add_track(video, "car").name == "car 2"  # the first free number
    with pytest.raises(ProjectError, match="no track with id 99"):
        store.track(99)
    with pytest.raises(ProjectError, match="no sequence"):
        store.add_track(99, "car")
    assert store.tracks(folder)[0].label == "dog" and lead.id not in {
        t.id for t in store.tracks(folder)}


def test_relabel_track_relabels_all_its_instances(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car, other = store.add_track(video, "car"), store.add_track(video, "car")
    frame = store.frame_image(video, 0).id
    project.add_instance(Instance(frame, "car", square(1), track_id=car.id))
    store.put_propagated(video, 1, car.id, square(2), 0.9)
    kept = project.add_instance(Instance(frame, "car", square(20), track_id=other.id))
    store.relabel_track(car.id, "truck")
    assert store.track(car.id).label == "truck"
    assert [i.label for f in store.instances(video, car.id).values() for i in f] \
        == ["truck", "truck"]
    assert project.instance(kept.id).label == "car"
    assert project.label_counts() == {"car": 1, "truck": 2}


def test_delete_track_from_a_frame_on(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car, other = store.add_track(video, "car"), store.add_track(video, "car")
    for f in range(6):
        project.add_instance(Instance(store.frame_image(video, f).id, "car", square(f),
                                      track_id=car.id))
        store.put_propagated(video, f, other.id, square(30), 0.5)
    # deleting the track row by hand is refused while instances name it (no orphans)
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        project.execute("DELETE FROM tracks WHERE id = ?", (car.id,))
    assert store.delete_track(car.id, from_frame=3) == 3
    assert sorted(store.instances(video, car.id)) == [0, 1, 2]
    assert store.track(car.id).name == "car 1"
    assert store.delete_track(car.id) == 3
    assert [t.id for t in store.tracks(video)] == [other.id]
    assert store.instances(video, car.id) == {}
    assert len(store.instances(video, other.id)) == 6  # the other track is untouched


# --- anchors and propagated instances ---------------------------------------------------------


def test_put_propagated_never_replaces_an_anchor(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car, other = store.add_track(video, "car"), store.add_track(video, "person")
    anchor = project.add_instance(Instance(store.frame_image(video, 2).id, "car", square(1),
                                           track_id=car.id))
    assert store.put_propagated(video, 2, car.id, square(5), 0.9) is None
    assert project.instances(anchor.image_id) == [anchor]
    first = store.put_propagated(video, 3, car.id, square(5), 0.9)
    assert first is not None
    assert (first.origin, first.track_id, first.score, first.source, first.label) == (
        InstanceOrigin.PROPAGATED, car.id, 0.9, Source.CLASSICAL, "car")
    theirs = store.put_propagated(video, 3, other.id, square(40), 0.7, source=Source.SAM2)
    assert theirs is not None and theirs.source is Source.SAM2
    again = store.put_propagated(video, 3, car.id, square(6), None, source=Source.SAM2)
    assert again is not None and again.id == first.id  # replaced in place
    assert (again.geometry.equals(square(6)), again.score, again.source) == (
        True, None, Source.SAM2)
    on_three = project.instances(first.image_id)
    assert [i.id for i in on_three] == [first.id, theirs.id]
    assert project.instance(theirs.id) == theirs
    with pytest.raises(ProjectError, match="not a track of sequence"):
        store.put_propagated(store.add(root / "shot").id, 0, car.id, square(1), 0.5)
    with pytest.raises(IndexError):
        store.put_propagated(video, FRAMES, car.id, square(1), 0.5)
    with pytest.raises(ProjectError, match="propagated geometry is empty"):
        store.put_propagated(video, 4, car.id, box(0, 0, 0, 0).buffer(0), 0.5)


def test_editing_a_propagated_instance_makes_it_an_anchor(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car = store.add_track(video, "car")
    made = store.put_propagated(video, 4, car.id, square(5), 0.8)
    assert made is not None and made.id is not None
    stack = UndoStack(project, made.image_id)
    stack.push(EditGeometry(made.id, square(7)))  # the person corrects it
    assert project.instance(made.id).origin is InstanceOrigin.ANCHOR
    assert store.put_propagated(video, 4, car.id, square(9), 0.8) is None
    assert project.instance(made.id).geometry.equals(square(7))
    assert store.anchors(video) == {car.id: {4: project.instance(made.id)}}
    stack.undo()  # the correction undone: the machine's mask again, which a rerun may replace
    assert project.instance(made.id).origin is InstanceOrigin.PROPAGATED
    assert project.instance(made.id).geometry.equals(square(5))
    project.close()
    with Project.open(project.path) as reopened:  # the history keeps the origin it had
        stack = UndoStack(reopened, made.image_id)
        stack.redo()
        assert reopened.instance(made.id).origin is InstanceOrigin.ANCHOR
        stack.undo()
        assert reopened.instance(made.id).origin is InstanceOrigin.PROPAGATED


def test_undo_keeps_an_instance_in_its_track(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car = store.add_track(video, "car")
    frame = store.frame_image(video, 1).id
    stack = UndoStack(project, frame)
    added = stack.push(AddInstance(Instance(frame, "car", square(1), track_id=car.id))).instance
    made = store.put_propagated(video, 1, car.id, square(5), 0.8)
    assert made is None  # the added instance is an anchor
    stack.push(DeleteInstance(added.id))
    project.close()
    with Project.open(project.path) as reopened:
        stack = UndoStack(reopened, frame)
        stack.undo()  # brings the anchor back, still in its track
        back = reopened.instance(added.id)
        assert (back.track_id, back.origin) == (car.id, InstanceOrigin.ANCHOR)
        stack.undo()
        stack.redo()
        assert reopened.sequences.anchors(video) == {car.id: {1: reopened.instance(added.id)}}


def test_anchors_and_instances_by_frame(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car, person, idle = (store.add_track(video, lab) for lab in ("car", "person", "dog"))
    a0 = project.add_instance(Instance(store.frame_image(video, 0).id, "car", square(1),
                                       track_id=car.id))
    a5 = project.add_instance(Instance(store.frame_image(video, 5).id, "car", square(2),
                                       track_id=car.id))
    p2 = project.add_instance(Instance(store.frame_image(video, 2).id, "person", square(30),
                                       track_id=person.id))
    untracked = project.add_instance(Instance(store.frame_image(video, 2).id, "tree",
                                              square(50)))
    prop = store.put_propagated(video, 1, car.id, square(1.5), 0.6)
    assert prop is not None
    assert store.anchors(video) == {car.id: {0: a0, 5: a5}, person.id: {2: p2}}
    assert idle.id not in store.anchors(video)
    assert store.instances(video) == {0: [a0], 1: [prop], 2: [p2, untracked], 5: [a5]}
    assert list(store.instances(video)) == [0, 1, 2, 5]
    assert store.instances(video, car.id) == {0: [a0], 1: [prop], 5: [a5]}
    assert store.instances(video, idle.id) == {}
    assert store.instances(store.add(root / "shot").id) == {}


def test_clear_propagated_leaves_anchors(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car, other = store.add_track(video, "car"), store.add_track(video, "car")
    anchor = project.add_instance(Instance(store.frame_image(video, 2).id, "car", square(1),
                                           track_id=car.id))
    for f in range(1, 6):
        store.put_propagated(video, f, car.id, square(f), 0.5)
        store.put_propagated(video, f, other.id, square(40), 0.5)
    assert store.clear_propagated(video, car.id, [2, 3, 4, 9]) == 2
    assert sorted(store.instances(video, car.id)) == [1, 2, 5]
    assert store.instances(video, car.id)[2] == [anchor]
    assert len(store.instances(video, other.id)) == 5
    assert store.clear_propagated(video, car.id, []) == 0


# --- labels, reopening, migration -------------------------------------------------------------


def test_a_label_used_by_a_track_is_not_removed_silently(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car = store.add_track(video, "car")
    with pytest.raises(ProjectError, match="used by 1 track"):
        project.remove_label("car")
    store.put_propagated(video, 0, car.id, square(1), 0.5)
    project.add_instance(Instance(store.frame_image(video, 1).id, "car", square(1),
                                  track_id=car.id))
    with pytest.raises(ProjectError, match="used by 2 instance"):
        project.remove_label("car")
    project.update_label("car", new_name="auto")
    assert store.track(car.id).label == "auto"  # tracks follow a renamed label
    project.remove_label("auto", delete_instances=True)
    assert store.tracks(video) == [] and project.instance_count() == 0


def test_reopened_project_reads_the_same(project: Project, root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    folder = store.add(root / "shot").id
    car = store.add_track(video, "car")
    store.add_track(folder, "dog", "rex")
    project.add_instance(Instance(store.frame_image(video, 0).id, "car", square(1),
                                  track_id=car.id))
    store.put_propagated(video, 1, car.id, square(2), 0.75, source=Source.SAM2)
    store.frame_image(folder, 4)
    before = (store.all(), store.tracks(video), store.tracks(folder), store.instances(video),
              store.anchors(video), store.frame_image(folder, 4))
    project.close()
    with Project.open(project.path) as reopened:
        again = reopened.sequences
        assert (again.all(), again.tracks(video), again.tracks(folder), again.instances(video),
                again.anchors(video), again.frame_image(folder, 4)) == before


def test_version3_file_migrates_and_reads_back_unchanged(project: Project, root: Path) -> None:
    photos = project.add_images(root / "shot").added + project.add_images(root / "photo.png").added
    stack = UndoStack(project, photos[0].id)
    kept = stack.push(AddInstance(Instance(photos[0].id, "bird", square(1), 0.5,
                                           Source.SAM2))).instance
    gone = stack.push(AddInstance(Instance(photos[0].id, "cat", square(20)))).instance
    stack.push(DeleteInstance(gone.id))
    project.add_instance(Instance(photos[1].id, "bird", square(3)))
    project.set_status(photos[2].id, ImageStatus.DONE)
    project.proposals.add(photos[1].id, [NewProposal(square(9), ProposalSource.TEXT, "m",
                                                     Source.SAM2, "bird", 0.4, "bird")])
    project.set_setting("k", [1, 2])
    before = (project.images(), project.labels(), list(project.all_instances()),
              project.query("SELECT * FROM history ORDER BY id"), project.proposals.find(),
              project.get_setting("k"), project.image_root)
    project.close()
    rewrite_as_version(project.path, 3)
    old = sqlite3.connect(project.path)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 3
    assert "origin" not in [r[1] for r in old.execute("PRAGMA table_info(instances)")]
    old.close()
    with Project.open(project.path) as migrated:
        assert migrated.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 4
        after = (migrated.images(), migrated.labels(), list(migrated.all_instances()),
                 migrated.query("SELECT * FROM history ORDER BY id"), migrated.proposals.find(),
                 migrated.get_setting("k"), migrated.image_root)
        assert after[:3] == before[:3] and after[4:] == before[4:]
        assert [tuple(r) for r in after[3]] == [tuple(r) for r in before[3]]
        assert all((i.track_id, i.origin) == (None, InstanceOrigin.ANCHOR) for i in after[2])
        assert migrated.sequences.all() == []
        UndoStack(migrated, photos[0].id).undo()  # the old history still works
        assert migrated.instance(gone.id).label == "cat"
        assert migrated.instance(kept.id) == before[2][0]
        video = migrated.sequences.add(root / "clip.mp4")
        assert migrated.sequences.frame_image(video.id, 0).path == "clip.mp4#000000"


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.maskloop"
    Project.create(path, tmp_path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 5")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match=r"newer MaskLoop \(schema version 5, this version "
                                           r"reads up to 4\)"):
        Project.open(path)


def test_frame_marks_are_the_instances_without_their_shapes(project: Project,
                                                           root: Path) -> None:
    store = project.sequences
    video = store.add(root / "clip.mp4").id
    car = store.add_track(video, "car")
    frame = store.frame_image(video, 2).id
    project.add_instance(Instance(frame, "car", square(1), track_id=car.id))
    store.put_propagated(video, 3, car.id, square(5), 0.8)
    expected = [(f, i.track_id, i.origin)
                for f, insts in store.instances(video).items() for i in insts]
    assert store.frame_marks(video) == expected == [
        (2, car.id, InstanceOrigin.ANCHOR), (3, car.id, InstanceOrigin.PROPAGATED)]
