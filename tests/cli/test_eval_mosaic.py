"""``maskloop eval DATASET --mosaic COLSxROWS``: the photos of a dataset on a grid, the tiled
backend on the mosaic against the photos alone, as JSON and as a table; bad options exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main


def discs_dataset(root: Path, count: int = 4) -> Path:
    """images/ and masks/ with a textured disc (and an ignored ring) on a noisy background."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        labels = np.zeros((96, 128), np.uint8)
        cv2.circle(labels, (60 + 4 * i, 48), 30, 128, -1)
        cv2.circle(labels, (60 + 4 * i, 48), 28, 255, -1)
        image = np.where((labels == 255)[..., None], (200, 80, 40), (40, 120, 160))
        image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"d{i}.png"), image)
        cv2.imwrite(str(root / "masks" / f"d{i}.png"), labels)
    return root


def test_mosaic_eval_reports_the_mosaic_and_the_photos_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = discs_dataset(tmp_path / "ds")
    # 64 px tiles: the 256 x 192 mosaic is tiled (cut-over 128 px), its discs span tiles
    assert main(["eval", str(data), "--backend", "classical", "--mosaic", "2x2", "--tile", "64",
                 "--max-clicks", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["grid"] == "2x2" and report["upsample"] == 1
    assert report["size"] == [192, 256]
    for part in ("mosaic", "separate"):
        summary = report[part]["summary"]
        assert summary["images"] == 4 and summary["model_id"] == "classical-grabcut"
        assert [row["name"] for row in report[part]["images"]] == ["d0", "d1", "d2", "d3"]
        assert 1.0 <= summary["noc90"] <= 5.0
    placed = report["mosaic"]["images"][3]["clicks"][0]
    assert placed[0] > 128 and placed[1] > 96  # clicks in the mosaic's coordinates
    assert report["mosaic"]["summary"]["miou_at_1"] > 0.8
    assert report["noc90_ratio"] == pytest.approx(
        report["mosaic"]["summary"]["noc90"] / report["separate"]["summary"]["noc90"])


def test_mosaic_eval_prints_both_columns(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = discs_dataset(tmp_path / "ds", count=2)
    assert main(["eval", str(data), "--backend", "classical", "--mosaic", "2x1",
                 "--upsample", "2", "--tile", "128", "--max-clicks", "3"]) == 0
    out = capsys.readouterr().out
    assert "mosaic 2x1, upsample 2: 512 x 192 px, tiles of 128 px" in out
    assert "in the mosaic" in out and "photos alone" in out
    assert "NoC@90 mosaic / separate" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--mosaic", "2by2"], "bad mosaic grid '2by2'"),
    (["--mosaic", "1x1"], "4 photos do not fit a 1x1 grid"),
    (["--upsample", "2"], "--upsample, --tile and --no-view go with --mosaic"),
    (["--no-view"], "--upsample, --tile and --no-view go with --mosaic"),
])
def test_bad_mosaic_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   extra: list[str], message: str) -> None:
    data = discs_dataset(tmp_path / "ds")
    assert main(["eval", str(data), "--backend", "classical", *extra]) == 2
    assert message in capsys.readouterr().err
