"""Image exports (COCO, YOLO, labelme, masks) of a project with a video: the frames with
instances are written as image files that the training tools read as they read plain images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pycocotools.coco import COCO
from shapely.geometry import Point, box
from test_sequences import _codec, make_video

from app.core.errors import FormatError
from app.core.formats import MANIFEST_NAME, export_project
from app.core.formats.coco import export_coco
from app.core.formats.readers import labelme_shape_to_mask, read_yolo_masks
from app.core.geometry import geometry_to_mask
from app.core.project import Project
from app.core.record_pixels import RecordPixels
from app.core.types import ImageRecord, Instance, InstanceOrigin

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ANCHORED = (3, 17)  # frames with anchors (track "car 1" on both, "person 1" on 3)
PROPAGATED_ONLY = 30  # a frame only propagation filled


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    """A plain image with one instance and a real video with two tracks: anchors on frames
    3 and 17, a propagated instance on 17 and one alone on frame 30."""
    root = tmp_path / "images"
    root.mkdir()
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(root / "plain.png")
    make_video(root / "clip.mp4", _codec("libx264", "h264", "mpeg4"), frames=40)
    project = Project.create(tmp_path / "p.maskloop", root)
    project.add_images([root / "plain.png"])
    (image,) = project.images()
    project.add_instance(Instance(int(image.id or 0), "car", box(5, 5, 30, 20)))
    seq = project.sequences.add(root / "clip.mp4")
    sid = int(seq.id or 0)
    car = project.sequences.add_track(sid, "car")
    person = project.sequences.add_track(sid, "person")
    for n, frame in enumerate(ANCHORED):
        record = project.sequences.frame_image(sid, frame)
        project.add_instance(Instance(int(record.id or 0), "car",
                                      box(10 + n * 20, 20, 40 + n * 20, 50), track_id=car.id))
    record = project.sequences.frame_image(sid, ANCHORED[0])
    project.add_instance(Instance(int(record.id or 0), "person",
                                  Point(60, 30).buffer(12), track_id=person.id))
    for frame in (ANCHORED[1], PROPAGATED_ONLY):
        project.sequences.put_propagated(sid, frame, int(person.id or 0),
                                         Point(60 + frame, 30).buffer(10), 0.9)
    yield project
    project.close()


def _frame_record(project: Project, frame: int) -> ImageRecord:
    (seq,) = project.sequences.all()
    return project.sequences.frame_image(int(seq.id or 0), frame)


def _pixels(project: Project, frame: int) -> np.ndarray:
    with RecordPixels(project) as pixels:
        return pixels.load(_frame_record(project, frame))


def test_coco_frames_read_by_pycocotools_as_plain_images(project: Project, tmp_path: Path):
    out = tmp_path / "coco"
    report = export_project(project, "coco", out, copy_images="copy")
    assert (report.frames, report.frames_propagated) == (2, 1)  # the propagated one on 17
    assert report.images == 3
    data_file = out / "annotations" / "instances_train.json"
    coco = COCO(str(data_file))
    data = json.loads(data_file.read_text())
    by_name = {img["file_name"]: img for img in data["images"]}
    assert set(by_name) == {"plain.png", "clip/000003.jpg", "clip/000017.jpg"}
    names = {c["id"]: c["name"] for c in data["categories"]}
    for frame in ANCHORED:
        img = by_name[f"clip/{frame:06d}.jpg"]
        record = _frame_record(project, frame)
        instances = project.instances(int(record.id or 0))
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert [names[a["category_id"]] for a in anns] == [i.label for i in instances]
        # the same annotations the COCO exporter writes for a plain image of those instances
        plain = ImageRecord("x.png", record.width, record.height, "", id=1)
        alone = tmp_path / f"alone{frame}.json"
        export_coco([(plain, instances)], project.labels(), alone)
        expected = COCO(str(alone))
        for ann, want, inst in zip(anns, expected.loadAnns(expected.getAnnIds()), instances,
                                   strict=True):
            np.testing.assert_array_equal(coco.annToMask(ann), expected.annToMask(want))
            truth = geometry_to_mask(inst.geometry, record.height, record.width)
            mask = coco.annToMask(ann).astype(bool)
            assert (mask & truth).sum() / (mask | truth).sum() >= 0.95
        # the frame file, where a COCO user joins image folder and file_name
        written = np.asarray(Image.open(out / "images" / "train" / img["file_name"]))
        assert written.shape == (record.height, record.width, 3)
        assert np.abs(written.astype(int) - _pixels(project, frame)).mean() < 3


def test_coco_without_copies_names_frames_from_the_image_folder(project: Project,
                                                                 tmp_path: Path):
    out = tmp_path / "coco"
    export_project(project, "coco", out, frames="all", frame_images="png")
    data = json.loads((out / "annotations.json").read_text())
    files = sorted(img["file_name"] for img in data["images"])
    assert files[-1] == "plain.png"
    assert len(files) == 4
    for frame, name in zip((*ANCHORED, PROPAGATED_ONLY), files[:3], strict=True):
        file = project.image_root / name
        assert file.resolve() == (out / "frames" / "clip" / f"{frame:06d}.png").resolve()
        np.testing.assert_array_equal(np.asarray(Image.open(file)), _pixels(project, frame))


def test_yolo_frames_read_as_ultralytics_reads_them(project: Project, tmp_path: Path):
    out = tmp_path / "yolo"
    report = export_project(project, "yolo", out, frames="all", frame_images="png",
                            verify=True)
    assert report.frames == 3
    assert report.fidelity is not None and report.fidelity.passed(0.9)
    classes = yaml.safe_load((out / "data.yaml").read_text())["names"]
    names = classes if isinstance(classes, list) else [classes[k] for k in sorted(classes)]
    by_id = {w.image_id: w for w in report.written}
    for frame in (*ANCHORED, PROPAGATED_ONLY):
        record = _frame_record(project, frame)
        label_file = by_id[int(record.id or 0)].file
        image = out / "images" / "train" / f"{label_file.stem}.png"
        assert label_file.parent == out / "labels" / "train"
        np.testing.assert_array_equal(np.asarray(Image.open(image)), _pixels(project, frame))
        read = read_yolo_masks(label_file, record.width, record.height)
        instances = project.instances(int(record.id or 0))
        assert [names[c] for c, _ in read] == [i.label for i in instances]
        for (_, mask), inst in zip(read, instances, strict=True):
            truth = geometry_to_mask(inst.geometry, record.height, record.width)
            assert (mask & truth).sum() / (mask | truth).sum() >= 0.9
    assert not any(p.name.startswith(".") for p in out.rglob("*"))


def test_masks_and_labelme_write_the_frames(project: Project, tmp_path: Path):
    out = tmp_path / "masks"
    report = export_project(project, "masks", out)
    assert report.frames == 2
    index = json.loads((out / "index.json").read_text())["images"]
    for frame in ANCHORED:
        (entry,) = [e for e in index if e["file_name"].endswith(f"clip/{frame:06d}.jpg")]
        assert (project.image_root / entry["file_name"]).resolve() == \
            (out / "frames" / "clip" / f"{frame:06d}.jpg").resolve()
        ids = np.asarray(Image.open(out / entry["instances"]))
        instances = project.instances(int(_frame_record(project, frame).id or 0))
        assert entry["count"] == len(instances)
        assert set(np.unique(ids)) == set(range(len(instances) + 1))
    labelme = tmp_path / "labelme"
    export_project(project, "labelme", labelme, images="reference")
    shapes = json.loads((labelme / "000003.json").read_text())
    assert shapes["imagePath"] == "frames/clip/000003.jpg"
    assert (labelme / shapes["imagePath"]).is_file()
    copied = tmp_path / "labelme-copies"
    export_project(project, "labelme", copied, frame_images="png")
    shapes = json.loads((copied / "000017.json").read_text())
    assert shapes["imagePath"] == "000017.png" and len(shapes["shapes"]) == 2
    # labelme's own rasteriser draws each frame instance as the project holds it
    h, w = shapes["imageHeight"], shapes["imageWidth"]
    drawn = {s["label"]: labelme_shape_to_mask(h, w, s["points"], s["shape_type"])
             for s in shapes["shapes"]}
    for inst in project.instances(int(_frame_record(project, 17).id or 0)):
        truth = geometry_to_mask(inst.geometry, h, w)
        mine = drawn[inst.label]
        assert (mine & truth).sum() / (mine | truth).sum() >= 0.95
    np.testing.assert_array_equal(np.asarray(Image.open(copied / "000017.png")),
                                  _pixels(project, 17))
    overlays = tmp_path / "overlays"
    report = export_project(project, "overlay", overlays)
    assert report.images == 3 and (overlays / "000003.jpg").is_file()
    assert not (overlays / "frames").exists()


def test_overwrite_replaces_only_the_exports_own_frames(project: Project, tmp_path: Path):
    out = tmp_path / "coco"
    export_project(project, "coco", out, frames="all")
    mine = out / "frames" / "clip" / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(FormatError, match="not empty"):
        export_project(project, "coco", out)
    export_project(project, "coco", out, overwrite=True)  # "labelled": frame 30 goes
    assert mine.read_text() == "mine"
    assert sorted(p.name for p in (out / "frames" / "clip").iterdir()) == \
        ["000003.jpg", "000017.jpg", "notes.txt"]
    listed = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert "frames/clip/000003.jpg" in listed and "frames/clip/notes.txt" not in listed
    (out / "frames" / "clip" / "000030.jpg").write_text("a user's file now")
    with pytest.raises(FormatError, match="000030.jpg: already exists"):
        export_project(project, "coco", out, overwrite=True, frames="all")


def test_frame_choices_and_image_selection(project: Project, tmp_path: Path):
    plain = project.images()[0]
    report = export_project(project, "coco", tmp_path / "none", frames="none")
    assert (report.images, report.frames) == (1, 0)
    manifest = json.loads((tmp_path / "none" / MANIFEST_NAME).read_text())
    assert "frames" not in manifest["options"]  # as before sequences existed
    report = export_project(project, "coco", tmp_path / "one", image_ids=[int(plain.id or 0)])
    assert (report.images, report.frames) == (1, 0)
    frame = _frame_record(project, PROPAGATED_ONLY)
    report = export_project(project, "coco", tmp_path / "picked", frames="all",
                            image_ids=[int(frame.id or 0)])
    assert (report.images, report.frames, report.frames_propagated) == (1, 1, 1)
    assert all(i.origin == InstanceOrigin.PROPAGATED
               for i in project.instances(int(frame.id or 0)))
    with pytest.raises(FormatError, match="frames must be one of"):
        export_project(project, "coco", tmp_path / "bad", frames="some")
    with pytest.raises(FormatError, match="frame images must be one of"):
        export_project(project, "yolo", tmp_path / "bad", frame_images="gif")


def test_a_video_that_no_longer_reads_is_named(project: Project, tmp_path: Path):
    (project.image_root / "clip.mp4").write_bytes(b"not a video any more")
    with pytest.raises(FormatError, match="clip.mp4: cannot export its frames"):
        export_project(project, "coco", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    report = export_project(project, "coco", tmp_path / "out", frames="none")
    assert report.images == 1
