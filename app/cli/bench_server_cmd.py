"""``maskloop bench --server-load [--clickers 20] [--encoders 2] [--duration 20]
[--crowd 50] [--route v1|sam2] [--server-source DIR] [--json]``: a team's load on a real ``maskloop
serve`` started on 127.0.0.1 over a random-weight SAM2 tiny (see app/bench/server_load.py).
--image-size and --json are shared with ``maskloop bench``."""

from __future__ import annotations

import argparse
import json
import sys
import time


def add_server_bench_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server load (bench a real maskloop serve instead)")
    group.add_argument("--server-load", action="store_true",
                       help="start maskloop serve on 127.0.0.1 and measure clicks/s, click "
                       "latency with and without encoders, and /healthz under load")
    group.add_argument("--clickers", type=int, default=20,
                       help="clients clicking in a closed loop (default 20)")
    group.add_argument("--encoders", type=int, default=2,
                       help="clients uploading new images in phase 2 (default 2)")
    group.add_argument("--crowd", type=int, default=50,
                       help="clickers of phase 3, /healthz under a crowd (default 50; 0: none)")
    group.add_argument("--load-images", type=int, default=5, metavar="N",
                       help="pre-embedded images the clickers share (default 5)")
    group.add_argument("--duration", type=float, default=20.0,
                       help="seconds per phase (default 20)")
    group.add_argument("--route", choices=("v1", "sam2"), default="v1",
                       help="the click route: the app's /v1 or Roboflow's /sam2 (default v1)")
    group.add_argument("--server-source", metavar="DIR",
                       help="run the server of this source tree (an older version)")


def run_server_load(args: argparse.Namespace) -> int:
    from app.bench.server_load import LoadBenchOptions, run_load_bench

    if (args.clickers < 1 or args.load_images < 1 or args.encoders < 0 or args.crowd < 0
            or args.duration <= 0):
        print("maskloop bench: --clickers and --load-images >= 1, --encoders and --crowd >= 0, "
              "--duration > 0", file=sys.stderr)
        return 2
    options = LoadBenchOptions(
        clickers=args.clickers, encoders=args.encoders, crowd=args.crowd,
        images=args.load_images,
        image_size=args.image_size, duration_s=args.duration, route=args.route,
        server_source=args.server_source,
    )
    start = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    result = run_load_bench(options, progress=progress)
    print(json.dumps(result) if args.json else format_load_report(result))
    return 0


def format_load_report(result: dict) -> str:
    lines = [f"server load bench ({result['server_source']}, {result['cpu_count']} CPUs)"]
    for name, p in result["phases"].items():
        c, hz = p["click_ms"], p["healthz_ms"]
        line = (f"  {name}: {p['clicks_per_s']:.2f} clicks/s, click p50 {c['p50']} ms, "
                f"p95 {c['p95']} ms; /healthz p50 {hz['p50']} ms, max {hz['max']} ms")
        if p.get("server_cpu_ms_per_click") is not None:
            line += (f"; CPU per click: server {p['server_cpu_ms_per_click']} ms, "
                     f"clients {p['client_cpu_ms_per_click']} ms")
        if "encodes" in p:
            line += f"; {p['encodes']} encodes, p50 {p['encode_ms']['p50']} ms"
        lines.append(line)
    ratio = result["click_p95_with_encoders_over_alone"]
    lines.append(f"  click p95 with encoders / alone: {ratio}")
    floor = result.get("floor")
    if floor:
        lines.append(
            f"  floor: a click's decode is {floor['click_gflop']:.2f} GFLOP, >= "
            f"{floor['click_cpu_ms_at_peak']} ms of one core at this CPU's fp32 GEMM peak "
            f"({floor['gemm_gflops_one_core']:.0f} GFLOP/s); its {floor['cores']} cores "
            f"({floor['gemm_gflops_all_cores']:.0f} GFLOP/s) allow at most "
            f"{floor['clicks_per_s_at_peak']} clicks/s with nothing else done per click")
    return "\n".join(lines)
