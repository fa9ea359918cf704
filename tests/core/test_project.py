"""The SQLite project store, on real files."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon, box

from app.core.errors import Cancelled, ProjectError
from app.core.jobs import CancelToken
from app.core.project import Project
from app.core.project_schema import APPLICATION_ID, SCHEMA_VERSION, geometry_to_wkb, migrate
from app.core.types import ImageRecord, ImageStatus, Instance, Label, Source


def write_png(path: Path, width: int = 16, height: int = 12, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project.create(tmp_path / "p.maskloop", tmp_path)
    yield proj
    proj.close()


def add_record(project: Project, path: str = "a.png") -> ImageRecord:
    return project.insert_image(ImageRecord(path, 16, 12, "hash-" + path))


def holed_multipolygon(rng: np.random.Generator) -> MultiPolygon:
    shell = [(0.1, 0.1), (10.3, 0.2), (10.7, 9.9), (0.4, 10.05)]
    hole = [(3.3, 3.1), (6.77, 3.2), (6.1, 6.31), (3.2, 6.9)]
    other = box(20, 20, 25.5, 27) if rng is None else Polygon(
        [(20 + rng.random(), 20 + rng.random()), (30 + rng.random(), 20.5),
         (25.25, 30 + rng.random())])
    return MultiPolygon([Polygon(shell, [hole]), other])


def test_file_settings_are_crash_safe(project: Project) -> None:
    assert project.query("PRAGMA journal_mode")[0][0] == "wal"
    assert project.query("PRAGMA synchronous")[0][0] == 2  # FULL
    assert project.query("PRAGMA foreign_keys")[0][0] == 1
    assert project.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    assert project.query("PRAGMA application_id")[0][0] == APPLICATION_ID


def test_create_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "p.maskloop"
    with Project.create(path, tmp_path) as proj:
        add_record(proj)
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(path, tmp_path)
    with Project.create(path, tmp_path, overwrite=True) as proj:
        assert proj.images() == []


@pytest.mark.parametrize("content", [b"", b"hello, I am not a database" * 100])
def test_open_rejects_files_that_are_not_projects(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.maskloop"
    path.write_bytes(content)
    with pytest.raises(ProjectError, match="not a MaskLoop project"):
        Project.open(path)
    assert path.read_bytes() == content  # left untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.maskloop"]
    with pytest.raises(ProjectError, match="no such project"):
        Project.open(tmp_path / "missing.maskloop")


def test_open_refuses_newer_schema_and_migrates_older(tmp_path: Path) -> None:
    path = tmp_path / "p.maskloop"
    Project.create(path, tmp_path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ProjectError, match="newer MaskLoop"):
        Project.open(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    # the hook: each step runs in its own transaction and bumps user_version
    steps = {SCHEMA_VERSION: lambda c: c.execute("ALTER TABLE images ADD COLUMN note TEXT")}
    assert migrate(conn, str(path), steps, SCHEMA_VERSION + 1) == SCHEMA_VERSION
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert "note" in [r[1] for r in conn.execute("PRAGMA table_info(images)")]
    with pytest.raises(ProjectError, match="no migration"):
        migrate(conn, str(path), {}, SCHEMA_VERSION + 2)
    conn.close()


def test_geometry_round_trips_exactly(project: Project) -> None:
    image = add_record(project)
    rng = np.random.default_rng(1)
    geoms = [holed_multipolygon(rng), box(1.25, 2.5, 3.125, 4.0625),
             Polygon(rng.random((3, 2)) * 100 + [[0, 0], [200, 0], [100, 200]])]
    ids = [project.add_instance(Instance(image.id, "bird", g, 0.5, Source.SAM2)).id
           for g in geoms]
    project.close()
    with Project.open(project.path) as reopened:
        for inst_id, geom in zip(ids, geoms, strict=True):
            stored = reopened.instance(inst_id)
            assert geometry_to_wkb(stored.geometry) == geometry_to_wkb(geom)
            assert shapely.equals_exact(stored.geometry, geom, tolerance=0)
            assert stored.score == 0.5 and stored.source is Source.SAM2
        assert len(reopened.instances(image.id)[0].geometry.geoms[0].interiors) == 1


@pytest.mark.parametrize("geom, reason", [
    (Polygon([(0, 0), (4, 4), (4, 0), (0, 4)]), "not valid"),
    (Polygon(), "empty"),
    (shapely.Point(1, 1), "Polygon or MultiPolygon"),
])
def test_invalid_geometry_is_refused(project: Project, geom: object, reason: str) -> None:
    image = add_record(project)
    with pytest.raises(ProjectError, match=reason):
        project.add_instance(Instance(image.id, "bird", geom))  # type: ignore[arg-type]
    assert project.instance_count() == 0
    good = project.add_instance(Instance(image.id, "bird", box(0, 0, 2, 2)))
    with pytest.raises(ProjectError, match=reason):
        project.update_geometry(good.id, geom)  # type: ignore[arg-type]
    assert project.instance(good.id).geometry.equals(box(0, 0, 2, 2))


def test_unknown_labels_are_created_with_distinct_colours(project: Project) -> None:
    image = add_record(project)
    for name in ["bird", "cat", "dog", "bird", "tree"]:
        project.add_instance(Instance(image.id, name, box(0, 0, 1, 1)))
    labels = project.labels()
    assert [lab.name for lab in labels] == ["bird", "cat", "dog", "tree"]
    assert len({lab.colour for lab in labels}) == 4
    assert [lab.hotkey for lab in labels] == ["1", "2", "3", "4"]
    assert project.label_counts() == {"bird": 2, "cat": 1, "dog": 1, "tree": 1}


def test_first_instance_moves_image_to_in_progress(project: Project) -> None:
    image, done = add_record(project, "a.png"), add_record(project, "b.png")
    assert project.image(image.id).status is ImageStatus.NEW
    project.add_instance(Instance(image.id, "bird", box(0, 0, 1, 1)))
    assert project.image(image.id).status is ImageStatus.IN_PROGRESS
    project.set_status(done.id, ImageStatus.DONE)
    project.add_instance(Instance(done.id, "bird", box(0, 0, 1, 1)))
    assert project.image(done.id).status is ImageStatus.DONE
    assert [r.path for r in project.images(ImageStatus.DONE)] == ["b.png"]
    for name in ["img10.png", "img2.png", "A/img1.png"]:
        add_record(project, name)
    assert [r.path for r in project.images()] == [
        "A/img1.png", "a.png", "b.png", "img2.png", "img10.png"]
    assert project.status_counts()[ImageStatus.IN_PROGRESS] == 1
    with pytest.raises(ProjectError, match="no image with id 99"):
        project.set_status(99, ImageStatus.DONE)


def test_label_editing(project: Project) -> None:
    image = add_record(project)
    project.add_label(Label("cat", "#00FF00", "c"))
    with pytest.raises(ProjectError, match="already exists"):
        project.add_label(Label("cat"))
    with pytest.raises(ProjectError, match="#rrggbb"):
        project.add_label(Label("dog", "green"))
    project.add_label(Label("dog", "0000ff"))
    inst = project.add_instance(Instance(image.id, "cat", box(0, 0, 1, 1)))
    renamed = project.update_label("cat", new_name="kitten", colour="#123456", hotkey=None)
    assert (renamed.name, renamed.colour, renamed.hotkey) == ("kitten", "#123456", None)
    assert project.instance(inst.id).label == "kitten"
    with pytest.raises(ProjectError, match="already exists"):
        project.update_label("kitten", new_name="dog")
    project.reorder_labels(["dog"])
    assert [lab.name for lab in project.labels()] == ["dog", "kitten"]
    with pytest.raises(ProjectError, match="used by 1 instance"):
        project.remove_label("kitten")
    project.remove_label("kitten", delete_instances=True)
    assert project.label("kitten") is None and project.instance_count() == 0
    assert project.label("dog").colour == "#0000ff"


def test_instance_edits_and_unknown_ids(project: Project) -> None:
    image = add_record(project)
    inst = project.add_instance(Instance(image.id, "bird", box(0, 0, 2, 2)))
    project.update_geometry(inst.id, box(1, 1, 5, 5))
    project.update_label_of(inst.id, "plane")
    stored = project.instance(inst.id)
    assert stored.label == "plane" and stored.geometry.area == 16
    project.delete_instance(inst.id)
    for call in (lambda: project.instance(inst.id), lambda: project.delete_instance(inst.id),
                 lambda: project.update_geometry(inst.id, box(0, 0, 1, 1))):
        with pytest.raises(ProjectError, match=f"no instance with id {inst.id}"):
            call()
    with pytest.raises(ProjectError, match="no image with id 42"):
        project.add_instance(Instance(42, "bird", box(0, 0, 1, 1)))
    again = project.add_instance(Instance(image.id, "bird", box(0, 0, 1, 1)))
    assert again.id != inst.id  # ids are never reused


def test_settings_round_trip(project: Project) -> None:
    assert project.get_setting("last_image_id", 7) == 7
    project.set_setting("last_image_id", 3)
    project.set_setting("view", {"zoom": 1.5, "labels": ["a", "b"]})
    assert project.get_setting("last_image_id") == 3
    assert project.get_setting("view") == {"zoom": 1.5, "labels": ["a", "b"]}
    with pytest.raises(ProjectError, match="not JSON-able"):
        project.set_setting("bad", object())


def test_transactions_are_atomic_and_nest(project: Project) -> None:
    image = add_record(project)
    with pytest.raises(RuntimeError), project.transaction():
        project.add_instance(Instance(image.id, "bird", box(0, 0, 1, 1)))
        raise RuntimeError("boom")
    assert project.instance_count() == 0 and project.labels() == []
    with project.transaction():
        project.add_instance(Instance(image.id, "bird", box(0, 0, 1, 1)))
        with pytest.raises(ProjectError):  # inner failure rolls back the inner part only
            project.add_instance(Instance(image.id, "cat", Polygon()))
    assert project.label_counts() == {"bird": 1}


def test_closed_project_raises(project: Project) -> None:
    project.close()
    with pytest.raises(ProjectError, match="closed"):
        project.images()


def test_two_connections_see_each_others_commits(project: Project) -> None:
    image = add_record(project)
    with Project.open(project.path) as other:
        other.add_instance(Instance(image.id, "bird", box(0, 0, 1, 1)))
        assert project.instance_count(image.id) == 1


def test_reads_and_writes_from_two_threads(project: Project) -> None:
    image = add_record(project)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(100):
                project.add_instance(Instance(image.id, "bird", box(i, 0, i + 1, 1)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        counts = [len(project.instances(image.id)), project.instance_count()]
        assert counts[0] <= counts[1]
    thread.join()
    assert errors == [] and project.instance_count() == 100


# --- images on disk ---------------------------------------------------------------------------


def test_add_images_skips_bad_and_known_files(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write_png(root / "a.png")
    write_png(root / "sub" / "b.png", 20, 10, seed=1)
    write_png(root / "ünïcode ☃.png", seed=2)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    (root / "empty.jpg").write_bytes(b"")
    calls: list[tuple[int, int]] = []
    with Project.create(tmp_path / "p.maskloop", root) as proj:
        report = proj.add_images(root, progress=lambda d, t, m: calls.append((d, t)))
        assert sorted(r.path for r in report.added) == ["a.png", "sub/b.png", "ünïcode ☃.png"]
        assert sorted(Path(p).name for p, _ in report.skipped_errors) == [
            "broken.png", "empty.jpg"]
        assert all(Path(p).name in msg for p, msg in report.skipped_errors)
        assert calls[-1] == (5, 5)
        b = proj.image_by_path("sub/b.png")
        assert (b.width, b.height, b.status) == (20, 10, ImageStatus.NEW)
        assert len(b.content_hash) == 64
        assert proj.image_path(b) == root / "sub" / "b.png"
        again = proj.add_images([root / "a.png", root / "sub" / "b.png"])
        assert again.added == [] and sorted(again.skipped_existing) == ["a.png", "sub/b.png"]
        with pytest.raises(ProjectError, match="no such image folder"):
            proj.add_images(tmp_path / "nope")


def test_add_images_can_be_cancelled(tmp_path: Path) -> None:
    for i in range(5):
        write_png(tmp_path / f"{i}.png", seed=i)
    token = CancelToken()

    def progress(done: int, total: int, message: str) -> None:
        if done == 2:
            token.cancel()

    with Project.create(tmp_path / "p.maskloop", tmp_path) as proj:
        with pytest.raises(Cancelled):
            proj.add_images(tmp_path, progress=progress, cancel=token)
        assert len(proj.images()) == 3  # what was read before the cancel is kept
        assert len(proj.add_images(tmp_path).added) == 2


def test_project_folder_moved_as_a_whole(tmp_path: Path) -> None:
    folder = tmp_path / "birds"
    write_png(folder / "images" / "a.png")
    with Project.create(folder / "birds.maskloop", folder / "images") as proj:
        image = proj.add_images(folder / "images").added[0]
        proj.add_instance(Instance(image.id, "bird", box(0, 0, 3, 3)))
    shutil.move(folder, tmp_path / "moved")
    with Project.open(tmp_path / "moved" / "birds.maskloop") as proj:
        assert proj.image_root == tmp_path / "moved" / "images"
        assert proj.missing_images() == []
        assert proj.instance_count() == 1


def test_moved_images_are_reported_and_relocated(tmp_path: Path) -> None:
    images = tmp_path / "data" / "images"
    write_png(images / "a.png", seed=1)
    write_png(images / "b.png", seed=2)
    with Project.create(tmp_path / "p.maskloop", images) as proj:
        added = proj.add_images(images).added
        proj.add_instance(Instance(added[0].id, "bird", box(0, 0, 3, 3)))
    new_root = tmp_path / "elsewhere"
    shutil.move(images, new_root)
    (new_root / "b.png").rename(new_root / "renamed.png")
    with Project.open(tmp_path / "p.maskloop") as proj:
        assert sorted(r.path for r in proj.missing_images()) == ["a.png", "b.png"]
        assert proj.instance_count() == 1  # annotations are kept while images are missing
        report = proj.relocate(new_root)
        assert report.rematched == [("b.png", "renamed.png")]
        assert report.missing == [] and proj.missing_images() == []
        assert proj.image_root == new_root
    with Project.open(tmp_path / "p.maskloop") as proj:  # the new root is remembered
        assert proj.image_root == new_root and proj.missing_images() == []
