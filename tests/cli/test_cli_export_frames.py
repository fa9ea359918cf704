"""``maskloop export --format coco|yolo --frames ... --frame-type ...`` on a project with a
sequence: the frames with instances are written as images beside the plain ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shapely.geometry import box

from app.cli import main
from app.core.project import Project
from app.core.types import Instance

HEIGHT, WIDTH = 40, 56


def _project(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """A plain image and a 4-frame folder sequence with a track anchored on frame 1."""
    folder = tmp_path / "images" / "clip"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)]
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    Image.fromarray(frames[0]).save(tmp_path / "images" / "plain.png")
    path = tmp_path / "p.maskloop"
    with Project.create(path, tmp_path / "images") as project:
        project.add_images([tmp_path / "images" / "plain.png"])
        (plain,) = project.images()
        project.add_instance(Instance(int(plain.id or 0), "car", box(2, 2, 20, 20)))
        record = project.sequences.add(folder)
        track = project.sequences.add_track(int(record.id or 0), "car")
        image = project.sequences.frame_image(int(record.id or 0), 1)
        project.add_instance(Instance(int(image.id or 0), "car", box(5, 5, 30, 25),
                                      track_id=track.id))
    return path, frames


def test_yolo_export_writes_the_labelled_frame(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, frames = _project(tmp_path)
    out = tmp_path / "yolo"
    assert main(["export", str(path), "--format", "yolo", "--out", str(out),
                 "--frame-type", "png", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "Exported 2 image(s) and 2 instance(s)" in printed
    assert "frames: 1 frame(s)" in printed
    images = sorted(p.name for p in (out / "images" / "train").iterdir())
    assert images == ["000001.png", "plain.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / "train" /
                                                        "000001.png")), frames[1])
    assert (out / "labels" / "train" / "000001.txt").read_text().startswith("0 ")


def test_frames_none_and_video_options(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _project(tmp_path)
    out = tmp_path / "coco"
    assert main(["export", str(path), "--format", "coco", "--out", str(out),
                 "--frames", "none", "-q"]) == 0
    data = json.loads((out / "annotations.json").read_text())
    assert [img["file_name"] for img in data["images"]] == ["plain.png"]
    assert main(["export", str(path), "--format", "mots", "--out", str(tmp_path / "m"),
                 "--frames", "all", "-q"]) == 2
    assert "--frames do(es) not apply to mots export" in capsys.readouterr().err
