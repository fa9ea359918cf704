"""``maskloop eval-video DATASET``: mask propagation on synthetic shots of a labelled dataset.

Each image of DATASET (images/ and masks/: 255 object, 128 ignored) becomes a shot of
``--frames`` frames (pan, zoom, rotation, brightness drift, a passing occluder; see
app/core/synthetic_video.py); the backend propagates frame 0's ground truth through it and
frames 1..N-1 are scored: mean J (IoU), J at the last frame, the DAVIS boundary F and the
frames that need correction (J < 0.9). Prints a table, or the whole report with ``--json``.

``--codec h264 --crf 23`` also passes every shot through that codec (encoded and decoded
again, as a user's video is) and reports those figures next to the raw ones: propagation
meets compressed footage in practice. ``--split tune|test`` takes one seeded half of the
images, as eval-findall does: develop on "tune", report "test".

``--backend sam2`` propagates with SAM2's video memory (``--model NAME`` or ``--checkpoint
PATH``; a random-weight checkpoint measures the time per frame and the memory only). Its
frame embeddings stay in memory: the synthetic frames are not worth a place in the cache.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from app.core.composites import SPLITS
from app.core.sequences import ArraySequence
from app.core.synthetic_video import DEFAULT_FRAMES
from app.core.video_eval import CODECS, Codec, VideoReport, evaluate_video


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval-video",
        help="measure mask propagation (J, F) on synthetic shots of a labelled dataset",
        description="Film each image of DATASET with a synthetic camera (pan, zoom, rotation, "
        "brightness drift, a passing occluder), propagate frame 0's ground-truth mask "
        "through the shot and report mean J, J at the last frame, the DAVIS boundary F "
        "and the frames needing correction (J < 0.9).",
    )
    parser.add_argument("dataset", metavar="DATASET",
                        help="folder with images/NAME.jpg|png and masks/NAME.png")
    parser.add_argument("--backend", choices=("classical", "sam2"), default="classical",
                        help="classical: optical flow (DIS) + GrabCut, no model (default); "
                        "sam2: SAM2's video memory (--model or --checkpoint)")
    parser.add_argument("--frames", metavar="N", type=int, default=DEFAULT_FRAMES,
                        help=f"frames per shot, the given first one included "
                        f"(default: {DEFAULT_FRAMES})")
    parser.add_argument("--limit", metavar="N", type=int, default=None,
                        help="evaluate only the first N images (sorted by name)")
    parser.add_argument("--seed", metavar="N", type=int, default=0,
                        help="seed of the synthetic shots (default: 0)")
    parser.add_argument("--split", choices=SPLITS, default="all",
                        help="which seeded half of the images: tune (to develop on), test (to "
                        "report) or all (default)")
    parser.add_argument("--codec", choices=sorted(CODECS), default=None,
                        help="also run every shot through this codec (encode, decode) and "
                        "report it next to the raw frames")
    parser.add_argument("--crf", metavar="N", type=int, default=23,
                        help="the codec's constant rate factor, 0..51 (default: 23, x264's)")
    parser.add_argument("--json", action="store_true",
                        help="print the full report (per-frame J and F) as JSON on stdout; "
                        "with --codec an object {\"raw\": ..., \"CODEC crf N\": ...}")
    from app.cli.backend import add_model_args

    add_model_args(parser)
    parser.set_defaults(func=run)


def _classical() -> Any:
    from app.predict.classical.propagate import propagate

    def run_one(seq: ArraySequence, first: np.ndarray) -> dict[int, np.ndarray]:
        return propagate(seq, 0, first).masks

    return run_one


def _sam2(args: argparse.Namespace) -> Any:
    """SAM2's video path from frame 0's mask (PredictorError when no model is given or
    installed)."""
    from app.cli.backend import predictor_from_args
    from app.predict.cache.store import EmbeddingCache
    from app.predict.propagation import PropagationRequest
    from app.predict.sam2.predictor import SAM2Predictor
    from app.predict.sam2.video import SAM2Propagator

    predictor = predictor_from_args(args, backend="sam2", cache=EmbeddingCache(disk_dir=None))
    assert isinstance(predictor, SAM2Predictor)
    propagator = SAM2Propagator(predictor, cache_frames=False)

    def run_one(seq: ArraySequence, first: np.ndarray) -> dict[int, np.ndarray]:
        session = propagator.open(seq)
        session.add_mask(0, 1, first)
        done = session.propagate(PropagationRequest(0)).wait()
        session.close()
        return {r.frame: r.masks[1] for r in done.results if 1 in r.masks}

    return run_one


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        print("maskloop eval-video: error: --frames must be at least 2", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print("maskloop eval-video: error: --limit must be at least 1", file=sys.stderr)
        return 2
    from app.core.evaluation import dataset_items

    items = dataset_items(args.dataset)  # DatasetError (exit 2) before any work
    total = len(items) if args.limit is None else min(args.limit, len(items))
    if args.backend == "classical" and (args.model or args.checkpoint):
        print("maskloop eval-video: error: --model/--checkpoint need --backend sam2",
              file=sys.stderr)
        return 2
    if not 0 <= args.crf <= 51:
        print("maskloop eval-video: error: --crf must be 0..51", file=sys.stderr)
        return 2
    backend = _sam2(args) if args.backend == "sam2" else _classical()
    codecs: list[Codec | None] = [None]
    if args.codec is not None:
        codecs.append(Codec(args.codec, args.crf))
    from tqdm import tqdm

    reports: list[VideoReport] = []
    for codec in codecs:
        with tqdm(total=total, unit="shot", file=sys.stderr, disable=None,
                  desc="eval-video" if codec is None else codec.label) as bar:

            def progress(done: int, _total: int, message: str) -> None:
                bar.n = done
                bar.set_postfix_str(message, refresh=False)
                bar.refresh()

            reports.append(evaluate_video(backend, args.dataset, backend=args.backend,
                                          frames=args.frames, limit=args.limit, seed=args.seed,
                                          codec=codec, split=args.split, progress=progress))
    if args.json:
        if len(reports) == 1:
            print(reports[0].to_json())
        else:
            print(json.dumps({r.summary.codec: r.to_dict() for r in reports}, indent=2))
    else:
        print(format_table(reports[0]) if len(reports) == 1 else format_comparison(reports))
    return 0


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"


def format_comparison(reports: list[VideoReport]) -> str:
    """The same shots raw and through a codec: J mean and J last per shot and per variant,
    then the overall figures in one column per variant."""
    first = reports[0]
    names = [r.name for r in first.rows]
    width = max([len("image")] + [len(n) for n in names])
    head = "  ".join(f"{'J ' + r.summary.codec:>16}  {'J last':>6}" for r in reports)
    lines = [f"{'image':<{width}}  {head}"]
    for i, name in enumerate(names):
        cells = "  ".join(f"{_f(r.rows[i].j_mean):>16}  {_f(r.rows[i].j_last):>6}"
                          for r in reports)
        lines.append(f"{name:<{width}}  {cells}")
    lines.append("")
    s0 = first.summary
    rows: list[tuple[str, list[str]]] = [
        ("frames", [r.summary.codec for r in reports]),
        ("J mean", [_f(r.summary.j_mean) for r in reports]),
        (f"J at frame {s0.frames - 1}", [_f(r.summary.j_last) for r in reports]),
        ("F mean", [_f(r.summary.f_mean) for r in reports]),
        ("J&F mean", [_f(r.summary.jf_mean) for r in reports]),
        ("frames to correct", [f"{r.summary.frames_to_correct}/{r.summary.frames_scored}"
                               for r in reports]),
        ("time per frame", [f"{r.summary.seconds_per_frame * 1000:.0f} ms" for r in reports]),
    ]
    w = max(len(name) for name, _ in rows)
    lines.append(f"backend {s0.backend}, split {s0.split}, {s0.images} shots x {s0.frames} "
                 f"frames (frame 0 given, 1..{s0.frames - 1} scored; to correct: J < "
                 f"{s0.correction_iou})")
    lines += [f"{name:<{w}}  " + "  ".join(f"{v:>12}" for v in values) for name, values in rows]
    return "\n".join(lines)


def format_table(report: VideoReport) -> str:
    """One row per shot, then the overall figures."""
    s = report.summary
    width = max([len("image")] + [len(r.name) for r in report.rows])
    lines = [f"{'image':<{width}}  {'J mean':>6}  {'J last':>6}  {'F mean':>6}  to correct"]
    for r in report.rows:
        lines.append(f"{r.name:<{width}}  {_f(r.j_mean):>6}  {_f(r.j_last):>6}  "
                     f"{_f(r.f_mean):>6}  {len(r.to_correct)}/{len(r.j)}")
    lines.append("")
    rows = [
        ("backend", s.backend),
        ("frames", f"{s.codec}, split {s.split}"),
        ("shots", f"{s.images} x {s.frames} frames (frame 0 given, 1..{s.frames - 1} scored)"),
        ("J mean", _f(s.j_mean)),
        (f"J at frame {s.frames - 1}", _f(s.j_last)),
        ("F mean", _f(s.f_mean)),
        ("J&F mean", _f(s.jf_mean)),
        ("frames to correct", f"{s.frames_to_correct} of {s.frames_scored} "
                              f"(J < {s.correction_iou})"),
        ("time per frame", f"{s.seconds_per_frame * 1000:.0f} ms"),
        ("wall time", f"{s.wall_s:.1f} s"),
        ("peak memory", "-" if math.isnan(s.peak_rss_mb) else f"{s.peak_rss_mb:.0f} MiB"),
    ]
    w = max(len(name) for name, _ in rows)
    lines += [f"{name:<{w}}  {value}" for name, value in rows]
    return "\n".join(lines)
