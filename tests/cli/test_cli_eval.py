"""``maskloop eval``: JSON and table output, a clear error for a folder that is no dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main

GRABCUT = Path(__file__).resolve().parents[2] / "data" / "grabcut"
SMALL_GRABCUT = ("teddy", "fullmoon", "bool")


def synthetic_dataset(root: Path, count: int = 2) -> Path:
    """images/ and masks/ with a textured disc on a noisy background (and an ignored ring)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        labels = np.zeros((96, 128), np.uint8)
        cv2.circle(labels, (60 + 4 * i, 48), 30, 128, -1)
        cv2.circle(labels, (60 + 4 * i, 48), 28, 255, -1)
        image = np.where((labels == 255)[..., None], (200, 80, 40), (40, 120, 160))
        image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"s{i}.png"), labels)
    return root


def grabcut_subset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in SMALL_GRABCUT:
        image = next((GRABCUT / "images").glob(f"{name}.*"))
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(GRABCUT / "masks" / f"{name}.png", root / "masks" / f"{name}.png")
    return root


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_classical_json_on_a_synthetic_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synthetic_dataset(tmp_path / "ds")
    report = run_json(["eval", str(data), "--backend", "classical", "--json",
                       "--max-clicks", "5"], capsys)
    summary = report["summary"]
    assert summary["model_id"] == "classical-grabcut"
    assert summary["images"] == 2 and summary["max_clicks"] == 5
    assert 1.0 <= summary["noc90"] <= 5.0
    assert summary["miou_at_1"] >= 0.8
    assert [row["name"] for row in report["images"]] == ["s0", "s1"]
    assert summary["latency_p50_ms"] > 0


def test_eval_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic_dataset(tmp_path / "ds", count=1)
    assert main(["eval", str(data), "--backend", "classical", "--max-clicks", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("NoC@85", "NoC@90", "mIoU@1", "mIoU@5", "click latency p50",
                 "click latency p95"):
        assert name in out


@pytest.mark.slow
def test_eval_classical_on_grabcut_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = grabcut_subset(tmp_path / "gc")
    report = run_json(["eval", str(data), "--backend", "classical", "--json",
                       "--limit", "2", "--max-clicks", "5"], capsys)
    assert report["summary"]["images"] == 2
    for row in report["images"]:
        assert 1 <= row["noc90"] <= 5 and len(row["ious"]) >= 1
        assert row["clicks"][0][2] is True  # the first click is positive
    assert report["summary"]["miou_at_5"] >= 0.5


def test_a_folder_without_masks_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "images").mkdir()
    assert main(["eval", str(tmp_path), "--backend", "classical"]) == 2
    err = capsys.readouterr().err
    assert "maskloop eval: error:" in err and "masks" in err


def test_classical_backend_refuses_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synthetic_dataset(tmp_path / "ds", count=1)
    assert main(["eval", str(data), "--backend", "classical", "--model", "tiny"]) == 2
    assert "classical" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_sam2_random_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sam2_tiny_checkpoint: tuple[Path, str]
) -> None:
    checkpoint, config = sam2_tiny_checkpoint
    data = synthetic_dataset(tmp_path / "ds")
    report = run_json(["eval", str(data), "--backend", "sam2", "--checkpoint", str(checkpoint),
                       "--config", config, "--device", "cpu", "--max-clicks", "2",
                       "--limit", "1", "--json"], capsys)
    summary = report["summary"]
    assert summary["images"] == 1 and summary["model_id"] != "classical-grabcut"
    assert all(1 <= len(row["ious"]) <= 2 for row in report["images"])
    assert summary["encode_mean_s"] > 0
