"""``maskloop eval-findall``: composites of real GrabCut photographs (a few of data/grabcut),
the classical backend's figures as JSON and as a table, SAM2 with random weights for the
plumbing, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.cli import main

GRABCUT = Path(__file__).resolve().parents[2] / "data" / "grabcut"
PHOTOS = ("teddy", "fullmoon", "bool", "banana1", "flower", "llama")


def photos(root: Path) -> Path:
    """A dataset of six GrabCut photographs (images/ and masks/)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in PHOTOS:
        image = next((GRABCUT / "images").glob(f"{name}.*"))
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(GRABCUT / "masks" / f"{name}.png", root / "masks" / f"{name}.png")
    return root


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # 2 composites: template matching and GrabCut
def test_classical_finds_the_copies_of_real_objects(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    ds = photos(tmp_path / "ds")
    report = run_json(["eval-findall", str(ds), "--backend", "classical", "--split", "all",
                       "--composites", "2", "--distractors", "2", "--json"], capsys)
    s = report["summary"]
    assert (s["backend"], s["split"], s["seed"], s["composites"]) == ("classical", "all", 0, 2)
    assert s["targets"] == 4 and len(report["rows"]) == 2
    assert s["true_positives"] == sum(r["true_positives"] for r in report["rows"])
    assert s["recall"] >= 0.75 and s["precision"] >= 0.75
    assert s["seconds_mean"] > 0 and s["seconds_max"] >= s["seconds_p50"]
    assert s["cpu_seconds_mean"] > 0
    # the table says the same
    assert main(["eval-findall", str(ds), "--split", "all", "--composites", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{s['recall']:.3f}" in out and "precision@0.5" in out


@pytest.mark.slow  # a SAM2 encode per composite on a CPU
def test_sam2_with_random_weights_runs_through(tmp_path: Path,
                                               sam2_tiny_checkpoint: tuple[Path, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, config = sam2_tiny_checkpoint
    report = run_json(["eval-findall", str(photos(tmp_path / "ds")), "--backend", "sam2",
                       "--checkpoint", str(path), "--config", config, "--device", "cpu",
                       "--split", "all", "--composites", "1", "--json"], capsys)
    s = report["summary"]
    assert s["backend"] == "sam2" and s["composites"] == 1 and s["targets"] == 2
    assert s["encode_seconds_mean"] > 0 and s["seconds_mean"] > 0
    assert 0.0 <= s["recall"] <= 1.0 and 0.0 <= s["precision"] <= 1.0


def test_bad_arguments_and_datasets_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-findall", str(tmp_path), "--split", "all"]) == 2
    assert "no images/ folder" in capsys.readouterr().err
    ds = photos(tmp_path / "ds")
    assert main(["eval-findall", str(ds), "--copies", "1"]) == 2
    assert "--copies is too small" in capsys.readouterr().err
    # three photographs per half cannot hold a background, a target and two distractors
    assert main(["eval-findall", str(ds), "--split", "tune", "--composites", "1"]) == 2
    assert "cannot make composites" in capsys.readouterr().err
    (ds / "masks" / "teddy.png").write_bytes(b"not a png")
    assert main(["eval-findall", str(ds), "--split", "all"]) == 2
    assert "teddy.png" in capsys.readouterr().err
