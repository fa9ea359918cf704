"""``maskloop eval DATASET``: the standard interactive-segmentation benchmark (RITM protocol)
of a backend on a folder holding images/ and masks/ (255 object, 128 ignored, 0 background).

Prints NoC@85, NoC@90, NoF, mIoU after 1 and 5 clicks and click latency percentiles, or the
whole report (per-image rows included) as JSON with ``--json``.

``--mosaic COLSxROWS [--upsample N]`` (issue 16): the photos placed on a grid into one large
image (``app/core/mosaic.py``), every tile of it encoded first, then the protocol run per object
on the mosaic with the tiled predictor (``app/predict/tiles``) and on each photo alone (at the
same scale, with the plain backend): both reports side by side. The simulated labeller has
zoomed to the object's photo: each prompt carries it as ``Prompt.view`` (``--no-view``: none).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from app.cli.backend import add_model_args, predictor_from_args
from app.core.errors import MaskLoopError
from app.core.evaluation import EvalReport, dataset_items, evaluate
from app.core.mosaic import parse_grid
from app.core.mosaic_eval import MosaicReport


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
    parser.add_argument("--mosaic", metavar="COLSxROWS", default=None,
                        help="place the photos on this grid into one large image and compare "
                        "the tiled backend on it with the photos alone (e.g. 10x5)")
    parser.add_argument("--upsample", metavar="N", type=int, default=1,
                        help="with --mosaic: enlarge every photo N times first (default: 1)")
    parser.add_argument("--tile", metavar="PX", type=int, default=None,
                        help="with --mosaic: tile side (default: the model's input side)")
    parser.add_argument("--no-view", action="store_true",
                        help="with --mosaic: the simulated labeller sends no view (by default "
                        "each prompt carries the object's photo as the part of the mosaic "
                        "seen, as the app sends its canvas's)")
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
    if args.mosaic is not None:
        return run_mosaic(args)
    if args.upsample != 1 or args.tile is not None or args.no_view:
        print("maskloop eval: error: --upsample, --tile and --no-view go with --mosaic",
              file=sys.stderr)
        return 2
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


def run_mosaic(args: argparse.Namespace) -> int:
    """``eval --mosaic``: the mosaic against the separate photos (see the module doc)."""
    from tqdm import tqdm

    from app.core.mosaic_eval import evaluate_mosaic, load_mosaic
    from app.predict.tiles.predictor import TiledPredictor

    cols, rows = parse_grid(args.mosaic)
    if args.upsample < 1:
        raise MaskLoopError("--upsample must be at least 1")
    if args.tile is not None and args.tile < 64:
        raise MaskLoopError("--tile must be at least 64 px")
    mosaic = load_mosaic(args.dataset, cols, rows, args.upsample, args.limit)
    plain = predictor_from_args(args, backend=args.backend)
    tiled = TiledPredictor(plain, side=args.tile)
    with closing(tiled), tqdm(total=1, unit="step", file=sys.stderr, disable=None,
                              desc="eval --mosaic") as bar:

        def progress(done: int, total: int, message: str) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

        def embed_all(image: Any, cancel: Any) -> Any:
            return tiled.embed_tiles(image, cancel=cancel, progress=progress)

        report = evaluate_mosaic(tiled, plain, mosaic, max_clicks=args.max_clicks,
                                 progress=progress, embed=embed_all, framed=not args.no_view)
    if args.json:
        print(report.to_json())
    else:
        print(format_mosaic(report, tiled))
    return 0


def format_mosaic(report: MosaicReport, tiled: Any) -> str:
    """The two summaries side by side, and their NoC@90 ratio."""
    h, w = report.size
    head = [
        f"mosaic {report.grid[0]}x{report.grid[1]}, upsample {report.upsample}: {w} x {h} px, "
        f"tiles of {tiled.side} px (overlap {tiled.overlap})",
        f"NoC@90 mosaic / separate: {report.noc90_ratio:.3f} (goal <= 1.10)",
        "",
    ]
    left = format_table(report.mosaic).splitlines()
    right = format_table(report.separate).splitlines()
    width = max(len(line) for line in left)
    lines = [f"{'in the mosaic':<{width}}    photos alone", ""]
    lines += [f"{a:<{width}}    {b.split('  ', 1)[-1].strip()}"
              for a, b in zip(left, right, strict=True)]
    return "\n".join(head + lines)
