"""``maskloop bench --json``: one run on a tiny random-weight model, every field present."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from app.bench.local import parse_size, summary_ms, synthetic_scene
from app.cli import main
from app.cli.bench_cmd import format_report

SUMMARY_KEYS = {"n", "mean", "p50", "p95", "min", "max"}


def test_parse_size() -> None:
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size("64X48") == (64, 48)
    for bad in ("1024", "ax768", "4x4", "10x10x3"):
        with pytest.raises(ValueError, match="image size"):
            parse_size(bad)


def test_summary_ms() -> None:
    s = summary_ms([0.001, 0.002, 0.003, 0.010])
    assert s["n"] == 4 and s["min"] == 1.0 and s["max"] == 10.0 and s["p50"] == 2.5
    assert s["p50"] <= s["p95"] <= s["max"]
    assert summary_ms([])["p50"] is None


def test_synthetic_scene_has_object_masks() -> None:
    image, masks = synthetic_scene(120, 80, seed=3)
    assert image.shape == (80, 120, 3) and image.dtype == np.uint8
    assert masks and all(m.shape == (80, 120) and m.dtype == bool and m.any() for m in masks)
    again, _ = synthetic_scene(120, 80, seed=3)
    assert np.array_equal(image, again)
    assert not np.array_equal(image, synthetic_scene(120, 80, seed=4)[0])


def test_bad_arguments_exit_with_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--clicks", "0"])
    assert info.value.code == 2
    assert "--clicks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--image-size", "big"])


@pytest.mark.slow
def test_bench_json_has_every_field(capsys) -> None:
    import torch

    threads, env = torch.get_num_threads(), os.environ.get("MASKLOOP_THREADS")
    code = main(["bench", "--json", "--device", "cpu", "--image-size", "96x64",
                 "--clicks", "4", "--images", "1", "--warmup", "0", "--threads", "1",
                 "--upscale-size", "400x300", "--upscale-reps", "2"])
    assert code == 0
    assert torch.get_num_threads() == threads  # restored after the run
    # --threads reached the predictors through $MASKLOOP_THREADS, restored too
    assert os.environ.get("MASKLOOP_THREADS") == env
    out = capsys.readouterr().out
    result = json.loads(out)

    assert result["model"] == "tiny" and result["weights"] == "random"
    assert result["device"] == "cpu" and result["compute_dtype"] == "float32"
    assert result["image_size"] == [96, 64]
    assert result["images"] == 1 and result["clicks"] == 4
    assert isinstance(result["torch"], str) and isinstance(result["parameters"], int)
    assert result["torch_threads"] == 1 and result["warmup"] == 0
    assert result["parameters"] > 1_000_000 and result["checkpoint_bytes"] > 1_000_000

    assert len(result["encode_ms"]["each"]) == 1
    for name in ("encode_ms", "click_ms", "predict_ms", "polygon_ms", "click_object_ms",
                 "polygon_object_ms", "raw_decode_ms", "switch_ms"):
        summary = result[name]
        assert set(summary) >= SUMMARY_KEYS, name
        assert summary["min"] <= summary["p50"] <= summary["p95"] <= summary["max"], name
    assert result["click_ms"]["n"] == result["raw_decode_ms"]["n"] == 4
    assert result["click_goal_basis"] == "object-like mask"
    assert isinstance(result["polygon_parts_mean"], float | int)
    for name in ("click_vs_raw", "predict_vs_raw", "click_vs_raw_paired_median",
                 "click_object_vs_raw", "click_object_vs_raw_paired_median",
                 "switch_speedup", "reencode_ms"):
        assert isinstance(result[name], float) and result[name] > 0, name
    # the switch really read the embedding back from disk with a cold memory cache
    assert result["switch_disk_hits"] >= 1

    # SAM2 embeddings: float16, 256x64x64 + 32x256x256 + 64x128x128 values
    assert result["embedding_dtype"] == "float16"
    assert result["embedding_bytes_memory"] == 2 * (256 * 64 * 64 + 32 * 256 * 256
                                                    + 64 * 128 * 128)
    assert result["embedding_bytes_disk"] >= result["embedding_bytes_memory"]
    assert set(result["goals"]) == {"click_within_1.15x_raw", "disk_switch_20x_faster",
                                    "embedding_float16_8MiB"}
    assert all(isinstance(v, bool) for v in result["goals"].values())
    assert result["goals"]["embedding_float16_8MiB"] is True

    # issue 14: per-click upscale of the shown candidate vs all of them, in one run
    up = result["upscale"]
    assert up["size"] == [400, 300] and up["candidates"] == 3
    for name in ("all_ms", "shown_ms", "shown_cv2_ms"):
        assert up[name]["n"] == 2 and set(up[name]) >= SUMMARY_KEYS, name
    assert up["shown_vs_all"] > 0 and up["shown_cv2_vs_all"] > 0
    assert 0 <= up["cv2_pixels_differing"] <= 400 * 300

    table = format_report(result)
    assert "ours / raw" in table and "goal" in table and "96x64" in table
    assert "upscale 400x300" in table


@pytest.mark.slow
def test_bench_scenario_runs_through_the_real_service(capsys) -> None:
    """The smallest scenario run (quiet only, 2 images, one click each): every run is
    reported with its click latencies and the encoder work thrown away (0 s: the service
    resumes encodes instead of restarting them)."""
    code = main(["bench", "--scenario", "--json", "--image-size", "64x48",
                 "--scenario-images", "2", "--scenario-clicks", "1",
                 "--scenario-open-clicks", "1", "--scenario-interval", "0.05",
                 "--scenario-quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    text = json.dumps(result)
    for run in ("quiet_no_prefetch", "quiet_prefetch", "no_prefetch", "prefetch"):
        assert f'"{run}"' in text, run
    assert "loaded_prefetch" not in text  # --scenario-quiet
    assert '"errors": 0' in text or '"errors": []' in text or '"errors": {}' in text
    assert '"discarded_steps": 0' in text
    # the click lane works beside a prefetch step only: never without prefetch
    part1, part2 = result["clicking_while_prefetching"], result["closed_loop"]
    assert part1["quiet_no_prefetch"]["beside_encode"] == 0
    assert part2["no_prefetch"]["beside_encode"] == 0
    assert all(isinstance(r["beside_encode"], int) for r in (*part1.values(), *part2.values()))
