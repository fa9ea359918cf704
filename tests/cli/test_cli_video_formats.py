"""``maskloop export|import --format youtube-vis|mots`` on a project with a tracked sequence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.core.geometry import mask_to_geometry
from app.core.project import Project
from app.core.types import Instance

FRAMES, HEIGHT, WIDTH = 5, 40, 56


def _square(frame: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[8:24, 4 + 4 * frame:20 + 4 * frame] = True
    mask[12:16, 10 + 4 * frame:14 + 4 * frame] = False  # a hole
    return mask


def _project(tmp_path: Path, name: str, tracked: bool) -> Path:
    folder = tmp_path / "images" / "clip"
    if not folder.exists():
        folder.mkdir(parents=True)
        rng = np.random.default_rng(1)
        for i in range(FRAMES):
            Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(
                folder / f"frame_{i}.png")
    path = tmp_path / f"{name}.maskloop"
    with Project.create(path, tmp_path / "images") as project:
        record = project.sequences.add(folder)
        if tracked:
            track = project.sequences.add_track(int(record.id or 0), "car")
            for frame in range(FRAMES - 1):  # leaves before the last frame
                image = project.sequences.frame_image(int(record.id or 0), frame)
                geometry = mask_to_geometry(_square(frame), tolerance=0)
                assert geometry is not None
                project.add_instance(Instance(int(image.id or 0), "car", geometry,
                                              track_id=track.id))
    return path


@pytest.mark.parametrize("fmt", ["youtube-vis", "mots"])
def test_export_then_import_through_the_cli(tmp_path: Path, fmt: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = _project(tmp_path, "source", tracked=True)
    out = tmp_path / fmt
    assert main(["export", str(source), "--format", fmt, "--out", str(out), "-q",
                 "--sequences", "clip", "--frame-images", "png"]) == 0
    assert f"Exported 1 sequence(s) with {FRAMES - 1} tracked mask(s)" in capsys.readouterr().out
    frames = sorted(p.name for p in out.rglob("*.png"))
    assert len(frames) == FRAMES
    target = _project(tmp_path, "target", tracked=False)
    assert main(["import", str(target), str(out), "--format", fmt, "-q"]) == 0
    assert f"Imported {FRAMES - 1} tracked mask(s)" in capsys.readouterr().out
    with Project.open(target) as project:
        (record,) = project.sequences.all()
        (track,) = project.sequences.tracks(int(record.id or 0))
        assert track.label == "car"
        by_frame = project.sequences.instances(int(record.id or 0))
        assert sorted(by_frame) == list(range(FRAMES - 1))


def test_image_options_are_refused_for_video_formats(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = _project(tmp_path, "source", tracked=True)
    assert main(["export", str(source), "--format", "mots", "--out", str(tmp_path / "o"),
                 "--rle", "-q"]) == 2
    assert "--rle do(es) not apply to mots export" in capsys.readouterr().err
    assert main(["export", str(source), "--format", "coco", "--out", str(tmp_path / "o"),
                 "--frame-images", "jpg", "-q"]) == 2
    assert "apply to youtube-vis and mots export only" in capsys.readouterr().err
    assert main(["export", str(source), "--format", "youtube-vis", "--out",
                 str(tmp_path / "r"), "--results", "-q"]) == 0
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [r["category_id"] for r in results] == [1]
