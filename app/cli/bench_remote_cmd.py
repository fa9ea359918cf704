"""``maskloop bench --remote URL [--mode server|hybrid|both] [--api-key KEY] [--json]``:
click latency and bytes on the wire per mode through a MaskLoop server (see
app/bench/remote.py). --image-size, --clicks, --images, --warmup and
--checkpoint (hybrid mode's local decoder) are shared with ``maskloop bench``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def add_remote_bench_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("remote (bench a MaskLoop server instead)")
    group.add_argument("--remote", metavar="URL",
                       help="measure click latency and bytes on the wire through this server")
    group.add_argument("--mode", choices=("server", "hybrid", "both"), default="both",
                       help="remote mode(s) to measure (default: both)")
    group.add_argument("--api-key", metavar="KEY",
                       help="the server's API key (default $MASKLOOP_API_KEY)")


def run_remote(args: argparse.Namespace) -> int:
    from app.bench.remote import (
        MODES,
        RemoteBenchOptions,
        format_remote_report,
        run_remote_bench,
    )

    options = RemoteBenchOptions(
        url=args.remote,
        api_key=args.api_key or os.environ.get("MASKLOOP_API_KEY") or None,
        modes=MODES if args.mode == "both" else (args.mode,),
        image_size=args.image_size, images=args.images, clicks=args.clicks,
        warmup=max(0, args.warmup),
        decoder=str(args.checkpoint) if args.checkpoint else None,
    )
    start = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    result = run_remote_bench(options, progress=progress)
    print(json.dumps(result) if args.json else format_remote_report(result))
    return 0
