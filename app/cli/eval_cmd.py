"""``maskloop eval DATASET``: the standard interactive-segmentation benchmark (RITM protocol)
of a backend on a folder holding images/ and masks/ (255 object, 128 ignored, 0 background).

Prints NoC@85, NoC@90, NoF, mIoU after 1 and 5 clicks and click latency percentiles, or the
whole report (per-image rows included) as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from app.cli.backend import add_model_args, predictor_from_args
from app.core.evaluation import EvalReport, dataset_items, evaluate


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure clicks-to-mask (NoC@85/90) on a labelled dataset",
        description="Simulate clicks with the RITM protocol on DATASET (images/ and masks/: "
        "255 object, 128 ignored) and report NoC@85, NoC@90, mIoU@1, mIoU@5 and latency.",
    )
    parser.add_argument("dataset", metavar="DATASET", type=Path,
                        help="folder with images/NAME.jpg|png and masks/NAME.png")
    parser.add_argument("--backend", choices=("sam2", "classical"), default="sam2",
                        help="sam2 (needs --model/--checkpoint or an installed model) or "
                        "classical (GrabCut, no model); default: sam2")
    parser.add_argument("--max-clicks", metavar="N", type=int, default=20,
                        help="clicks per object before it counts as failed (default: 20)")
    parser.add_argument("--limit", metavar="N", type=int, default=None,
                        help="evaluate only the first N images (sorted by name)")
    parser.add_argument("--json", action="store_true",
                        help="print the full report as JSON on stdout")
    add_model_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_clicks < 1:
        print("maskloop eval: error: --max-clicks must be at least 1", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("maskloop eval: error: --limit must be at least 1", file=sys.stderr)
        return 2
    items = dataset_items(args.dataset)  # DatasetError (exit 2) before any model is loaded
    predictor = predictor_from_args(args, backend=args.backend)
    total = len(items) if args.limit is None else min(args.limit, len(items))
    from tqdm import tqdm

    with closing(predictor), tqdm(total=total, unit="img", file=sys.stderr,
                                  disable=None, desc="eval") as bar:

        def progress(done: int, _total: int, message: str) -> None:
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

        report = evaluate(predictor, args.dataset, max_clicks=args.max_clicks,
                          progress=progress, limit=args.limit)
    if args.json:
        print(report.to_json())
    else:
        print(format_table(report))
    return 0


def format_table(report: EvalReport) -> str:
    """The summary as an aligned two-column table."""
    s = report.summary
    rows = [
        ("model", s.model_id),
        ("images", str(s.images)),
        ("max clicks", str(s.max_clicks)),
        ("NoC@85", f"{s.noc85:.2f}"),
        ("NoC@90", f"{s.noc90:.2f}"),
        ("NoF@85 / NoF@90", f"{s.nof85} / {s.nof90}"),
        ("mIoU@1", f"{s.miou_at_1:.3f}"),
        ("mIoU@5", f"{s.miou_at_5:.3f}"),
        ("click latency p50", f"{s.latency_p50_ms:.1f} ms"),
        ("click latency p95", f"{s.latency_p95_ms:.1f} ms"),
        ("click latency max", f"{s.latency_max_ms:.1f} ms"),
        ("encode mean", f"{s.encode_mean_s * 1000:.1f} ms"),
        ("clicks", str(s.clicks_total)),
        ("wall time", f"{s.wall_s:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
