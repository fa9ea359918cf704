"""``maskloop eval-video``: synthetic shots of a tiny dataset, classical propagation, J and F."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import app.cli as cli


def _dataset(root: Path, count: int = 2) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(4)
    for k in range(count):
        noise = rng.normal(0, 1, (12, 16, 3)).astype(np.float32)
        image = np.clip(np.array([60, 130, 80]) + 35 * cv2.resize(noise, (160, 120)), 0, 255)
        skin = rng.normal(0, 1, (30, 40, 3)).astype(np.float32)
        fg = np.clip(np.array([210, 110, 60]) + 30 * cv2.resize(skin, (160, 120)), 0, 255)
        labels = np.zeros((120, 160), np.uint8)
        cv2.ellipse(labels, (80 + 5 * k, 60), (34, 24), 15 * k, 0, 360, 128, -1)
        cv2.ellipse(labels, (80 + 5 * k, 60), (32, 22), 15 * k, 0, 360, 255, -1)
        image = np.where((labels > 0)[..., None], fg, image).astype(np.uint8)
        cv2.imwrite(str(root / "images" / f"img{k}.png"), image[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"img{k}.png"), labels)
    return root


def test_eval_video_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "ds", count=3)
    rc = cli.main(["eval-video", str(data), "--backend", "classical", "--frames", "8",
                   "--limit", "2", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    s = report["summary"]
    assert s["backend"] == "classical" and s["images"] == 2 and s["frames"] == 8
    assert s["frames_scored"] == 14
    assert [r["name"] for r in report["images"]] == ["img0", "img1"]
    for row in report["images"]:
        assert len(row["j"]) == len(row["f"]) == 7
        assert all(0.0 <= v <= 1.0 for v in row["j"] + row["f"])
        assert row["to_correct"] == [i + 1 for i, j in enumerate(row["j"]) if j < 0.9]
    assert s["j_mean"] > 0.8 and s["f_mean"] > 0.7
    assert s["j_mean"] == pytest.approx(np.mean([r["j_mean"] for r in report["images"]]))


def test_eval_video_table_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "ds", count=1)
    assert cli.main(["eval-video", str(data), "--frames", "4"]) == 0
    out = capsys.readouterr().out
    assert "img0" in out and "J mean" in out and "J at frame 3" in out
    assert "frames to correct" in out
    assert cli.main(["eval-video", str(data), "--frames", "1"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert cli.main(["eval-video", str(data), "--limit", "0"]) == 2
    assert cli.main(["eval-video", str(tmp_path / "nothing")]) == 2
    assert "not an evaluation dataset" in capsys.readouterr().err
    # sam2 without a model: one line saying what to do, exit 2
    assert cli.main(["eval-video", str(data), "--backend", "sam2"]) == 2
    assert "no SAM2 model is installed" in capsys.readouterr().err
    assert cli.main(["eval-video", str(data), "--checkpoint", "x.pt"]) == 2
    assert "--backend sam2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["eval-video", str(data), "--backend", "nothing"])


def test_eval_video_codec_next_to_raw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--codec runs the same shots raw and through H.264; the ground truth is the same, the
    frames are not, so the scores differ a little."""
    data = _dataset(tmp_path / "ds", count=1)
    rc = cli.main(["eval-video", str(data), "--frames", "6", "--codec", "h264", "--crf", "30",
                   "--json"])
    assert rc == 0
    both = json.loads(capsys.readouterr().out)
    assert sorted(both) == ["h264 crf 30", "raw"]
    raw, coded = both["raw"], both["h264 crf 30"]
    assert raw["summary"]["codec"] == "raw" and coded["summary"]["codec"] == "h264 crf 30"
    assert [r["name"] for r in raw["images"]] == [r["name"] for r in coded["images"]] == ["img0"]
    assert len(coded["images"][0]["j"]) == 5
    assert coded["images"][0]["j"] != raw["images"][0]["j"]
    assert coded["summary"]["j_mean"] > 0.7
    assert cli.main(["eval-video", str(data), "--frames", "3", "--codec", "h264"]) == 0
    table = capsys.readouterr().out
    assert "J h264 crf 23" in table and "J raw" in table and "frames to correct" in table
    assert cli.main(["eval-video", str(data), "--codec", "h264", "--crf", "52"]) == 2
    assert "--crf" in capsys.readouterr().err


def test_eval_video_splits_are_disjoint_halves(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = _dataset(tmp_path / "ds", count=4)
    names = {}
    for split in ("tune", "test", "all"):
        assert cli.main(["eval-video", str(data), "--frames", "2", "--split", split,
                         "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["summary"]["split"] == split
        names[split] = {r["name"] for r in report["images"]}
    assert len(names["tune"]) == len(names["test"]) == 2
    assert names["tune"] | names["test"] == names["all"] == {f"img{k}" for k in range(4)}


@pytest.mark.slow
def test_eval_video_sam2_random_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        sam2_tiny_checkpoint: tuple[Path, str]) -> None:
    """SAM2's video path on a random-weight checkpoint: the masks are noise, the plumbing
    and the time and memory figures are real."""
    data = _dataset(tmp_path / "ds", count=1)
    path, config = sam2_tiny_checkpoint
    rc = cli.main(["eval-video", str(data), "--backend", "sam2", "--checkpoint", str(path),
                   "--config", config, "--device", "cpu", "--runtime", "torch",
                   "--frames", "2", "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    s = report["summary"]
    assert s["backend"] == "sam2" and s["images"] == 1 and s["frames_scored"] == 1
    assert s["seconds_per_frame"] > 0 and s["peak_rss_mb"] > 100
    row = report["images"][0]
    assert len(row["j"]) == 1 and 0.0 <= row["j"][0] <= 1.0
