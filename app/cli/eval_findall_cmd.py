"""``maskloop eval-findall DATASET``: "find all like this" measured on synthetic composites.

DATASET is laid out like the GrabCut benchmark (images/ and masks/: 255 object, 128 ignored).
Its photographs are split into two seeded halves, "tune" and "test" (``--split``; parameters
are chosen on "tune", figures reported on "test"); composites are built from one half's
photographs only (``app/core/composites.py``): several copies of one object and distractors
pasted into another photograph. For each composite the first copy is the exemplar (its box
and mask); the backend's find all must return the other copies. Prints recall and precision
at mask IoU >= 0.5 and the time per image, or the whole report as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from app.cli.backend import add_model_args, predictor_from_args
from app.core.composites import (
    SPLITS,
    Composite,
    CompositeSpec,
    build_composites,
    load_photos,
    split_names,
)
from app.core.errors import Cancelled
from app.core.evaluation import dataset_items
from app.core.findall_eval import FindAllReport, Match, match_found, summarize
from app.core.jobs import CancelToken, Progress, check
from app.predict.base import Exemplar, FindQuery, Predictor


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval-findall",
        help="measure 'find all like this' on composites of a labelled dataset",
        description="Paste copies of objects of DATASET (images/, masks/) into its other "
        "photographs, find all like one copy, and report recall and precision at mask "
        "IoU >= 0.5 on the other copies.",
    )
    parser.add_argument("dataset", metavar="DATASET", type=Path,
                        help="folder with images/NAME.jpg|png and masks/NAME.png")
    parser.add_argument("--backend", choices=("sam2", "classical"), default="classical",
                        help="classical (template matching + GrabCut, no model; default) or "
                        "sam2 (needs --model/--checkpoint or an installed model)")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="which seeded half of the photographs makes the composites: "
                        "tune (to choose parameters on), test (to report; default) or all")
    parser.add_argument("--composites", metavar="N", type=int, default=50,
                        help="how many composites (default: 50)")
    parser.add_argument("--copies", metavar="N", type=int, default=3,
                        help="copies of the target object per composite, the exemplar "
                        "included (default: 3)")
    parser.add_argument("--distractors", metavar="N", type=int, default=2,
                        help="other objects per composite (default: 2)")
    parser.add_argument("--seed", metavar="N", type=int, default=0,
                        help="seed of the split and of the composites (default: 0)")
    parser.add_argument("--threshold", metavar="S", type=float, default=None,
                        help="the find-all score threshold (default: FindQuery's)")
    parser.add_argument("--json", action="store_true",
                        help="print the full report as JSON on stdout")
    add_model_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for name in ("composites", "copies"):
        if getattr(args, name) < (2 if name == "copies" else 1):
            print(f"maskloop eval-findall: error: --{name} is too small", file=sys.stderr)
            return 2
    if args.distractors < 0:
        print("maskloop eval-findall: error: --distractors must be 0 or more", file=sys.stderr)
        return 2
    names = split_names([n for n, _, _ in dataset_items(args.dataset)], args.split, args.seed)
    photos, cuts = load_photos(args.dataset, names)  # errors (exit 2) before the model loads
    spec = CompositeSpec(copies=args.copies, distractors=args.distractors)
    predictor = predictor_from_args(args, backend=args.backend)
    from tqdm import tqdm

    with closing(predictor), tqdm(total=args.composites, unit="img", file=sys.stderr,
                                  disable=None, desc="eval-findall") as bar:

        def progress(done: int, _total: int, message: str) -> None:
            bar.n = done
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()

        report = evaluate_findall(predictor, build_composites(photos, cuts, args.composites,
                                                              spec, args.seed),
                                  args.composites, backend=args.backend, split=args.split,
                                  seed=args.seed, threshold=args.threshold, progress=progress)
    print(report.to_json() if args.json else format_table(report))
    return 0


def evaluate_findall(predictor: Predictor, composites: Any, count: int, *, backend: str,
                     split: str, seed: int, threshold: float | None = None,
                     progress: Progress | None = None,
                     cancel: CancelToken | None = None) -> FindAllReport:
    """Run find all on each composite with its first copy as the exemplar; when cancelled
    the report keeps every composite finished (``Cancelled`` is not raised)."""
    rows: list[Match] = []
    encodes: list[float] = []
    for i, comp in enumerate(composites):
        if cancel is not None and cancel.cancelled:
            break
        if progress is not None:
            progress(i, count, comp.name)
        try:
            row, encode_s = evaluate_one(predictor, comp, threshold, cancel)
        except Cancelled:
            break
        rows.append(row)
        encodes.append(encode_s)
    if progress is not None:
        progress(len(rows), count, "done")
    return FindAllReport(summarize(rows, backend, split, seed, encodes), rows)


def evaluate_one(predictor: Predictor, comp: Composite, threshold: float | None = None,
                 cancel: CancelToken | None = None) -> tuple[Match, float]:
    """One composite: (its match, the encode's seconds)."""
    check(cancel)
    t0 = time.perf_counter()
    key = predictor.embed(comp.image, image_hash=f"findall-{comp.name}-{id(comp)}",
                          cancel=cancel)
    encode_s = time.perf_counter() - t0
    ex = comp.exemplar
    kw: dict[str, Any] = {} if threshold is None else {"score_threshold": threshold}
    query = FindQuery(exemplars=(Exemplar(tuple(float(v) for v in ex.box),  # type: ignore[arg-type]
                                          mask=ex.mask),), **kw)
    t1, c1 = time.perf_counter(), time.process_time()
    found = predictor.find_all(key, query, cancel=cancel)
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    row = match_found(comp.name, [p.mask for p in found], [p.score for p in found],
                      [t.mask for t in comp.targets], ex.mask,
                      [d.mask for d in comp.distractors], seconds, cpu_seconds=cpu)
    return row, encode_s


def format_table(report: FindAllReport) -> str:
    """The summary as an aligned two-column table."""
    s = report.summary
    rows = [
        ("backend", s.backend),
        ("split / seed", f"{s.split} / {s.seed}"),
        ("composites", str(s.composites)),
        ("copies to find", str(s.targets)),
        ("found", str(s.found)),
        ("recall@0.5", f"{s.recall:.3f}"),
        ("precision@0.5", f"{s.precision:.3f}"),
        ("exemplar / distractors found", f"{s.exemplar_found} / {s.distractors_found}"),
        ("find all mean", f"{s.seconds_mean * 1000:.0f} ms"),
        ("find all p50 / max", f"{s.seconds_p50 * 1000:.0f} / {s.seconds_max * 1000:.0f} ms"),
        ("find all CPU mean", f"{s.cpu_seconds_mean * 1000:.0f} ms"),
        ("encode mean", f"{s.encode_seconds_mean * 1000:.0f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


__all__ = ["evaluate_findall", "evaluate_one", "format_table", "register"]
