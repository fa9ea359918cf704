"""The pixels of any image record (issue 15: frames are not files): a real project with a
real video written by PyAV, a frame folder and a plain image."""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_project import write_png
from test_sequences import _codec, decoded_index, make_video

from app.core.errors import ImageError
from app.core.images import load_image
from app.core.project import Project
from app.core.record_pixels import RecordPixels
from app.core.sequences import open_sequence

FRAMES = 30


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-frame 96 x 64 video (B-frames where h264 is there), frame index drawn in bits."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4",
                      _codec("libx264", "h264", "mpeg4"), frames=FRAMES)


@pytest.fixture
def root(tmp_path: Path, clip_file: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(clip_file, folder / "clip.mp4")
    shutil.copy(clip_file, folder / "other.mp4")
    for i in range(4):
        write_png(folder / "shot" / f"frame_{i}.png", seed=i)
    write_png(folder / "photo.png", seed=9)
    return folder


@pytest.fixture
def project(tmp_path: Path, root: Path) -> Iterator[Project]:
    proj = Project.create(tmp_path / "p.maskloop", root)
    yield proj
    proj.close()


@pytest.fixture
def pixels(project: Project) -> Iterator[RecordPixels]:
    with RecordPixels(project) as px:
        yield px


def reference(path: Path) -> list[np.ndarray]:
    with open_sequence(path) as seq:
        return [np.array(seq.frame(i)) for i in range(len(seq))]


def test_a_frame_is_the_sequence_frame(project: Project, root: Path,
                                       pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    ref = reference(root / "clip.mp4")
    assert seq.id is not None
    for index in (17, 0, 29, 3):  # seeks back and forth
        record = project.sequences.frame_image(seq.id, index)
        frame = pixels.load(record)
        assert frame.shape == (seq.height, seq.width, 3) and frame.dtype == np.uint8
        assert np.array_equal(frame, ref[index]) and decoded_index(frame) == index


def test_a_folder_frame_and_a_plain_image(project: Project, root: Path,
                                          pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "shot")
    assert seq.id is not None
    frame = pixels.load(project.sequences.frame_image(seq.id, 2))
    assert np.array_equal(frame, load_image(root / "shot" / "frame_2.png"))
    project.add_images(root / "photo.png")
    [photo] = project.images()
    assert np.array_equal(pixels.load(photo), load_image(root / "photo.png"))


def test_a_loaded_frame_is_the_callers_own(project: Project, root: Path,
                                           pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    assert seq.id is not None
    record = project.sequences.frame_image(seq.id, 5)
    first = pixels.load(record)
    first[:] = 0
    assert decoded_index(pixels.load(record)) == 5


def test_concurrent_loads_of_random_frames(project: Project, root: Path) -> None:
    """Four threads, two videos and more sequences than are kept open (evictions while
    others decode): every frame is the right one."""
    clip = project.sequences.add(root / "clip.mp4")
    other = project.sequences.add(root / "other.mp4")
    assert clip.id is not None and other.id is not None
    records = [project.sequences.frame_image(s, i) for s in (clip.id, other.id)
               for i in range(FRAMES)]
    ref = reference(root / "clip.mp4")  # other.mp4 is a copy
    errors: list[BaseException] = []
    seen: list[int] = []
    with RecordPixels(project, keep_open=1) as pixels:

        def work(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(40):
                    record = rng.choice(records)
                    index = int(record.path.rsplit("#", 1)[1])
                    frame = pixels.load(record)
                    assert np.array_equal(frame, ref[index]), (record.path, index)
                    seen.append(index)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(seen) == 160


def test_a_missing_video_names_the_file(project: Project, root: Path,
                                        pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    assert seq.id is not None
    record = project.sequences.frame_image(seq.id, 4)
    (root / "clip.mp4").unlink()
    with pytest.raises(ImageError, match=r"clip\.mp4"):
        pixels.load(record)


def test_an_unreadable_video_names_the_file(project: Project, root: Path,
                                            pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    assert seq.id is not None
    record = project.sequences.frame_image(seq.id, 4)
    (root / "clip.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(ImageError, match=r"clip\.mp4"):
        pixels.load(record)


def test_a_missing_plain_image_names_the_file(project: Project, root: Path,
                                              pixels: RecordPixels) -> None:
    project.add_images(root / "photo.png")
    [photo] = project.images()
    (root / "photo.png").unlink()
    with pytest.raises(ImageError, match=r"photo\.png"):
        pixels.load(photo)


def test_closed_pixels_refuse_frames(project: Project, root: Path) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    assert seq.id is not None
    pixels = RecordPixels(project)
    record = project.sequences.frame_image(seq.id, 1)
    assert decoded_index(pixels.load(record)) == 1
    pixels.close()
    with pytest.raises(ImageError, match="closed"):
        pixels.load(record)


def test_a_frame_read_ahead_needs_no_images_row(project: Project, root: Path,
                                                 pixels: RecordPixels) -> None:
    seq = project.sequences.add(root / "clip.mp4")
    truth = reference(root / "clip.mp4")
    np.testing.assert_array_equal(pixels.frame(seq, 7), truth[7])
    assert project.query("SELECT id FROM images WHERE sequence_id = ?", (seq.id,)) == []
    with pytest.raises(ImageError, match="clip.mp4: frame 30"):
        pixels.frame(seq, FRAMES)
