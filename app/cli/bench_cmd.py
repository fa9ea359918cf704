"""``maskloop bench [--model tiny] [--device auto] [--image-size 1024x768] [--clicks 30]
[--json]``: encode, click and cache-switch timings on a random-weight SAM2 checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _size(text: str) -> tuple[int, int]:
    from app.bench.local import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    from app.predict.models.registry import REGISTRY

    parser = subparsers.add_parser(
        "bench", help="measure encode time, click latency and cache speed",
        description="Measure, on a random-weight SAM2.1 checkpoint of the chosen size (or "
        "--checkpoint): encode time per image, click -> mask latency against raw sam2 calls, "
        "switching to a disk-cached image against re-encoding it, and embedding size.",
    )
    parser.add_argument("--model", default="tiny", choices=list(REGISTRY),
                        help="model size (default: tiny)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="time this checkpoint instead of random weights")
    parser.add_argument("--config", default=None, help="sam2 config of --checkpoint")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda, mps, cpu), cpu, cuda or mps (default: auto)")
    parser.add_argument("--image-size", type=_size, default=(1024, 768), metavar="WxH",
                        help="size of the synthetic images (default: 1024x768)")
    parser.add_argument("--clicks", type=_positive, default=30, help="timed prompts (default: 30)")
    parser.add_argument("--images", type=_positive, default=3, help="images encoded (default: 3)")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed warm-up decodes of each prompt kind; 0 skips the warm-up "
                        "encode too (default: 3)")
    parser.add_argument("--threads", type=_positive, default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--upscale-size", type=_size, default=(4000, 3000), metavar="WxH",
                        help="image size of the per-click upscale comparison, shown candidate "
                        "vs all candidates (default: 4000x3000)")
    parser.add_argument("--upscale-reps", type=_positive, default=10,
                        help="timed rounds of the upscale comparison (default: 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    from app.cli.bench_remote_cmd import add_remote_bench_args

    add_remote_bench_args(parser)
    from app.cli.bench_server_cmd import add_server_bench_args

    add_server_bench_args(parser)
    add_scenario_args(parser)
    add_runtime_bench_args(parser)
    parser.set_defaults(func=run)


def add_scenario_args(parser: argparse.ArgumentParser) -> None:
    """``--scenario``: a person labelling, through the real prediction service."""
    parser.add_argument("--scenario", action="store_true",
                        help="play clicks through the real prediction service: clicking while "
                        "the next images are prefetched, and a closed-loop session, with and "
                        "without prefetch (see app/bench/scenario.py)")
    parser.add_argument("--scenario-images", type=_positive, default=6,
                        help="images of the closed-loop session (default: 6)")
    parser.add_argument("--scenario-clicks", type=_positive, default=4,
                        help="clicks per image of the closed-loop session (default: 4)")
    parser.add_argument("--scenario-open-clicks", type=_positive, default=8,
                        help="clicks of each clicking-while-prefetching run (default: 8)")
    parser.add_argument("--scenario-interval", type=float, default=1.5,
                        help="seconds between two clicks (default: 1.5)")
    parser.add_argument("--scenario-quiet", action="store_true",
                        help="skip the runs with a busy neighbour process")


def run_scenario_cmd(args: argparse.Namespace) -> int:
    from app.bench.scenario import ScenarioOptions, format_scenario, run_scenario

    options = ScenarioOptions(
        model=args.model, image_size=args.image_size, interval_s=args.scenario_interval,
        open_clicks=args.scenario_open_clicks, images=args.scenario_images,
        clicks=args.scenario_clicks, loaded=not args.scenario_quiet)
    start = time.perf_counter()

    def progress(done: int, total: int, message: str = "") -> None:
        print(f"[{done}/{total} {time.perf_counter() - start:6.1f} s] {message}",
              file=sys.stderr, flush=True)

    result = run_scenario(options, progress=progress)
    print(json.dumps(result) if args.json else format_scenario(result))
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "runtimes", False):
        return run_runtimes_cmd(args)
    if getattr(args, "scenario", False):
        return run_scenario_cmd(args)
    if getattr(args, "server_load", False):
        from app.cli.bench_server_cmd import run_server_load

        return run_server_load(args)
    if getattr(args, "remote", None):
        from app.cli.bench_remote_cmd import run_remote

        return run_remote(args)
    from app.bench.local import BenchOptions, run_bench

    options = BenchOptions(
        model=args.model, device=args.device, image_size=args.image_size, clicks=args.clicks,
        images=args.images, warmup=max(0, args.warmup), checkpoint=args.checkpoint,
        config=args.config, threads=args.threads, upscale_size=args.upscale_size,
        upscale_reps=args.upscale_reps,
    )

    start = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        elapsed = time.perf_counter() - start
        print(f"[{done}/{total} {elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)

    result = run_bench(options, progress=progress)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_report(result))
    return 0


def format_report(result: dict[str, Any]) -> str:
    """The result as a readable table with each goal marked met / NOT met."""
    from app.bench import local as bench
    def ms(summary: dict[str, Any]) -> str:
        return (f"p50 {summary['p50']:.1f} ms, p95 {summary['p95']:.1f} ms, "
                f"mean {summary['mean']:.1f} ms (n={summary['n']})")

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    goals = result["goals"]
    w, h = result["image_size"]
    mib = 1024 * 1024
    lines = [
        f"maskloop bench: SAM2 {result['model']} ({result['weights']} weights, "
        f"{result['parameters'] / 1e6:.1f}M parameters)",
        f"  device          {result['device']} ({result['device_name']}), compute "
        f"{result['compute_dtype']}, torch {result['torch']}, sam2 {result['sam2']}, "
        f"{result['torch_threads']} threads",
        f"  image size      {w}x{h}, {result['images']} images, {result['clicks']} clicks",
        f"  model load      {result['load_s']:.2f} s",
        "  encode          mean {:.0f} ms; each: {}".format(
            result["encode_ms"]["mean"], ", ".join(f"{v:.0f}" for v in result["encode_ms"]["each"])
        ),
        f"  click -> mask   {ms(result['click_ms'])}",
        f"    predict       {ms(result['predict_ms'])}",
        f"    polygon       {ms(result['polygon_ms'])}  (chosen candidate, "
        f"{result['polygon_parts_mean']:.0f} parts on average)",
        f"  click, object   {ms(result['click_object_ms'])}",
        f"    polygon       {ms(result['polygon_object_ms'])}  (an object-like mask)",
        f"  raw sam2 decode {ms(result['raw_decode_ms'])}",
        f"  ours / raw      candidate {result['click_vs_raw']:.3f}, object-like "
        f"{result['click_object_vs_raw']:.3f}, predict only {result['predict_vs_raw']:.3f} "
        f"(p50s; paired medians {result['click_vs_raw_paired_median']:.3f}, "
        f"{result['click_object_vs_raw_paired_median']:.3f})",
        f"                  goal <= {bench.CLICK_RATIO_GOAL} ({result['click_goal_basis']}): "
        f"{mark(goals['click_within_1.15x_raw'])}",
        f"  switch (disk)   mean {result['switch_ms']['mean']:.1f} ms vs re-encode "
        f"{result['reencode_ms']:.0f} ms: {result['switch_speedup']}x   "
        f"goal >= {bench.SWITCH_SPEEDUP_GOAL:.0f}x: {mark(goals['disk_switch_20x_faster'])}",
        f"  embedding       {result['embedding_dtype']}, "
        f"{result['embedding_bytes_memory'] / mib:.2f} MiB in memory, "
        f"{result['embedding_bytes_disk'] / mib:.2f} MiB on disk   goal float16 <= 8 MiB: "
        f"{mark(goals['embedding_float16_8MiB'])}",
    ]
    up = result.get("upscale")
    if up:
        uw, uh = up["size"]
        lines.append(
            f"  upscale {uw}x{uh}  shown candidate p50 {up['shown_ms']['p50']:.1f} ms vs all "
            f"{up['candidates']} {up['all_ms']['p50']:.1f} ms: {up['shown_vs_all']}x "
            f"(cv2 {up['shown_cv2_ms']['p50']:.1f} ms, {up['shown_cv2_vs_all']}x, "
            f"{up['cv2_pixels_differing']} pixels differ from torch's)")
    return "\n".join(lines)


def _thread_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2; got {text!r}")
    return values


def add_runtime_bench_args(parser: argparse.ArgumentParser) -> None:
    """``--runtimes``: encode and decode on torch, ONNX Runtime and OpenVINO side by side."""
    parser.add_argument("--runtimes", action="store_true",
                        help="compare the CPU runtimes (torch eager, onnxruntime, openvino): "
                        "encode and one-point decode per thread setting, interleaved, with "
                        "ratios to torch and deviations (see app/bench/runtimes.py)")
    parser.add_argument("--runtime-threads", type=_thread_list, default=(1, 2),
                        metavar="N[,N...]", help="thread settings of --runtimes (default: 1,2)")
    parser.add_argument("--runtime-encodes", type=_positive, default=3,
                        help="timed encodes per runtime and setting (default: 3)")
    parser.add_argument("--runtime-decodes", type=_positive, default=20,
                        help="timed decodes per runtime and setting (default: 20)")


def run_runtimes_cmd(args: argparse.Namespace) -> int:
    from app.bench.runtimes import (
        RuntimeBenchOptions,
        format_runtime_report,
        run_runtime_bench,
    )

    options = RuntimeBenchOptions(
        model=args.model, image_size=args.image_size, threads=args.runtime_threads,
        encodes=args.runtime_encodes, decodes=args.runtime_decodes,
        checkpoint=args.checkpoint, config=args.config)
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    result = run_runtime_bench(options, progress=progress)
    print(json.dumps(result) if args.json else format_runtime_report(result))
    return 0
