"""Scoring "find all like this" on composites (``app/core/composites.py``): which found
masks are copies of the exemplar's object, recall and precision at a mask IoU threshold.

A found mask is a true positive when it overlaps a not yet matched target copy (every copy
but the exemplar) with IoU >= ``iou_threshold``; found masks are matched best score first,
each target at most once (COCO's greedy matching). Everything else is a false positive: a
distractor, a piece of background, a duplicate, or the exemplar itself (it is already an
instance, so finding it again is noise to review).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from app.core.geometry import mask_iou

IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Match:
    """The outcome for one composite."""

    name: str
    targets: int  # copies to find (the exemplar excluded)
    found: int  # masks the backend proposed
    true_positives: int
    exemplar_found: int  # proposals that are the exemplar again (counted as false positives)
    distractors_found: int  # proposals that are a distractor (false positives)
    seconds: float  # time of the find all (the image's encode excluded)
    cpu_seconds: float = 0.0  # the process's CPU time in it (all threads): less skewed by load


@dataclass(frozen=True)
class FindAllSummary:
    """Micro-averaged figures over all composites."""

    backend: str
    split: str
    seed: int
    composites: int
    targets: int
    found: int
    true_positives: int
    recall: float
    precision: float
    exemplar_found: int
    distractors_found: int
    seconds_mean: float
    seconds_p50: float
    seconds_max: float
    cpu_seconds_mean: float
    encode_seconds_mean: float


@dataclass(frozen=True)
class FindAllReport:
    summary: FindAllSummary
    rows: list[Match]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": asdict(self.summary), "rows": [asdict(r) for r in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def match_found(name: str, found: Sequence[np.ndarray], scores: Sequence[float],
                targets: Sequence[np.ndarray], exemplar: np.ndarray,
                distractors: Sequence[np.ndarray], seconds: float,
                iou_threshold: float = IOU_THRESHOLD, cpu_seconds: float = 0.0) -> Match:
    """Match the ``found`` masks (with their ``scores``) to the ``targets`` (see the module
    docstring) and count what the false positives are."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    free = [True] * len(targets)
    tp = exemplar_hits = distractor_hits = 0
    for i in order:
        mask = found[int(i)]
        ious = [mask_iou(mask, t) if free[j] else 0.0 for j, t in enumerate(targets)]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= iou_threshold:
            free[best] = False
            tp += 1
        elif mask_iou(mask, exemplar) >= iou_threshold:
            exemplar_hits += 1
        elif any(mask_iou(mask, d) >= iou_threshold for d in distractors):
            distractor_hits += 1
    return Match(name, len(targets), len(found), tp, exemplar_hits, distractor_hits,
                 float(seconds), float(cpu_seconds))


def summarize(rows: Sequence[Match], backend: str, split: str, seed: int,
              encode_seconds: Sequence[float] = ()) -> FindAllSummary:
    """Recall = true positives / targets, precision = true positives / found (1.0 when
    nothing was found: no false positive), over every composite."""
    targets = sum(r.targets for r in rows)
    found = sum(r.found for r in rows)
    tp = sum(r.true_positives for r in rows)
    times = [r.seconds for r in rows] or [0.0]
    return FindAllSummary(
        backend=backend, split=split, seed=seed, composites=len(rows), targets=targets,
        found=found, true_positives=tp,
        recall=tp / targets if targets else 0.0,
        precision=tp / found if found else 1.0,
        exemplar_found=sum(r.exemplar_found for r in rows),
        distractors_found=sum(r.distractors_found for r in rows),
        seconds_mean=statistics.fmean(times), seconds_p50=statistics.median(times),
        seconds_max=max(times),
        cpu_seconds_mean=statistics.fmean([r.cpu_seconds for r in rows] or [0.0]),
        encode_seconds_mean=statistics.fmean(encode_seconds) if encode_seconds else 0.0,
    )
