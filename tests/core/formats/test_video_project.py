"""YouTube-VIS and MOTS export of a project's sequences and import back into its store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from video_tracks_data import FRAMES, HEIGHT, WIDTH, disc, ring

from app.core.errors import FormatError
from app.core.formats import export_project, import_into_project
from app.core.formats.mots import read_mots
from app.core.formats.video_tracks import sequence_annotations
from app.core.formats.youtube_vis import read_youtube_vis
from app.core.geometry import mask_to_geometry
from app.core.jobs import Cancelled, CancelToken
from app.core.project import Project
from app.core.types import Instance, InstanceOrigin


def _frames(folder: Path) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(FRAMES)]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    return frames


def _project(root: Path, name: str) -> Project:
    project = Project.create(root / f"{name}.maskloop", root / "images")
    project.sequences.add(root / "images" / "walk")
    return project


def _label(project: Project, masks: dict[int, np.ndarray], label: str) -> int:
    """A track of ``label`` with an anchor per frame of ``masks``; its id."""
    (record,) = project.sequences.all()
    track = project.sequences.add_track(int(record.id or 0), label)
    for frame, mask in masks.items():
        image = project.sequences.frame_image(int(record.id or 0), frame)
        geometry = mask_to_geometry(mask, tolerance=0)
        assert geometry is not None
        project.add_instance(Instance(int(image.id or 0), label, geometry, 0.8,
                                      track_id=track.id))
    return int(track.id or 0)


@pytest.fixture
def labelled(tmp_path: Path) -> tuple[Project, list[np.ndarray]]:
    frames = _frames(tmp_path / "images" / "walk")
    project = _project(tmp_path, "first")
    _label(project, {f: ring(f) for f in range(FRAMES)}, "pedestrian")
    _label(project, {f: disc(f) for f in range(4)}, "dog")
    return project, frames


def test_sequence_annotations_rasterise_the_stored_tracks(
        labelled: tuple[Project, list[np.ndarray]]) -> None:
    project, _ = labelled
    (record,) = project.sequences.all()
    video = sequence_annotations(project, int(record.id or 0))
    assert (video.name, video.width, video.height, video.length) == ("walk", WIDTH, HEIGHT,
                                                                     FRAMES)
    ring_track, disc_track = video.tracks
    assert (ring_track.category, disc_track.category) == ("pedestrian", "dog")
    assert sorted(disc_track.masks) == [0, 1, 2, 3]
    for frame in range(FRAMES):
        np.testing.assert_array_equal(ring_track.masks[frame], ring(frame))
    assert ring_track.score() == pytest.approx(0.8)


def test_export_with_frames_then_import_into_another_project(
        tmp_path: Path, labelled: tuple[Project, list[np.ndarray]]) -> None:
    project, frames = labelled
    out = tmp_path / "vis"
    report = export_project(project, "youtube-vis", out, images="png")
    assert (report.images, report.instances) == (1, FRAMES + 4)
    doc = json.loads((out / "instances.json").read_text())
    assert doc["videos"][0]["file_names"][3] == "walk/00003.png"
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(np.asarray(Image.open(out / "JPEGImages" / "walk" /
                                                            f"{i:05d}.png")), frame)
    other = _project(tmp_path, "second")
    imported = import_into_project(other, "youtube-vis", out)
    assert (imported.images_matched, imported.instances_added) == (1, FRAMES + 4)
    assert sorted(imported.labels_created) == ["dog", "pedestrian"]
    (record,) = other.sequences.all()
    anchors = other.sequences.anchors(int(record.id or 0))
    assert sorted(len(by_frame) for by_frame in anchors.values()) == [4, FRAMES]
    assert all(inst.origin is InstanceOrigin.ANCHOR
               for by_frame in anchors.values() for inst in by_frame.values())
    back = sequence_annotations(other, int(record.id or 0))
    (first,) = project.sequences.all()
    for a, b in zip(back.tracks, sequence_annotations(project, int(first.id or 0)).tracks,
                    strict=True):
        assert a.category == b.category and sorted(a.masks) == sorted(b.masks)
        for frame, mask in b.masks.items():
            np.testing.assert_array_equal(a.masks[frame], mask)
    again = import_into_project(other, "youtube-vis", out)
    assert (again.instances_added, again.duplicates_skipped) == (0, FRAMES + 4)


def test_mots_export_reports_overlaps_and_reads_back(
        tmp_path: Path, labelled: tuple[Project, list[np.ndarray]]) -> None:
    project, _ = labelled
    grown = {f: np.roll(ring(f), 4, axis=0) | ring(f) for f in range(2)}  # covers the ring
    _label(project, grown, "pedestrian")
    report = export_project(project, "mots", tmp_path / "mots", images="jpg")
    overlap = sum(int((grown[f] & ring(f)).sum()) for f in range(2))
    assert any(f"{overlap} pixel(s)" in w for w in report.warnings)
    assert (tmp_path / "mots" / "walk" / "img1" / "000001.jpg").is_file()
    (video,) = read_mots(tmp_path / "mots")
    assert [t.category for t in video.tracks] == ["pedestrian", "dog", "pedestrian"]
    np.testing.assert_array_equal(video.tracks[2].masks[0], grown[0] & ~ring(0))
    results = export_project(project, "mots", tmp_path / "res", results=True)
    assert (tmp_path / "res" / "walk.txt") in results.files


def test_sequences_are_chosen_by_name_and_bad_requests_are_refused(
        tmp_path: Path, labelled: tuple[Project, list[np.ndarray]]) -> None:
    project, _ = labelled
    export_project(project, "youtube-vis", tmp_path / "a", sequences=["walk"], results=True)
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [(r["video_id"], r["score"]) for r in results] == [(1, pytest.approx(0.8))] * 2
    with pytest.raises(FormatError, match="results list"):
        read_youtube_vis(tmp_path / "a" / "results.json")
    with pytest.raises(FormatError, match="no sequence named 'run'"):
        export_project(project, "mots", tmp_path / "b", sequences=["run"])
    with pytest.raises(FormatError, match="has no option copy_images"):
        export_project(project, "mots", tmp_path / "c", copy_images="copy")
    with pytest.raises(FormatError, match="takes no images"):
        export_project(project, "mots", tmp_path / "d", image_ids=[1])


def test_a_cancelled_export_leaves_no_folder(
        tmp_path: Path, labelled: tuple[Project, list[np.ndarray]]) -> None:
    project, _ = labelled
    token = CancelToken()
    seen: list[str] = []

    def progress(done: int, total: int, message: str) -> None:
        seen.append(message)
        if message.startswith("frames of"):
            token.cancel()

    with pytest.raises(Cancelled):
        export_project(project, "mots", tmp_path / "out", images="png", progress=progress,
                       cancel=token)
    assert "frames of walk" in seen
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not list(tmp_path.glob(".out.maskloop-staging-*"))
