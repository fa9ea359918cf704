"""The synthetic video benchmark: propagate a mask through sequences made from a labelled
image dataset and score it with DAVIS' J and F.

Each image of DATASET (images/ and masks/: 255 object, 128 ignored) becomes a
``synthesize``-d shot of ``frames`` frames (seeded by the image's name, so every run and every
backend sees the same shots); the backend gets frame 0's ground truth and propagates it
forward; frames 1..N-1 are scored (frame 0 is given, as in DAVIS' semi-supervised protocol).
The backend is any ``propagate(sequence, first_mask) -> {frame: mask}``; core knows none.
With a random-weight SAM2 the masks are noise and only the time per frame and the memory
(the process's peak resident size, ``peak_rss_mb``) mean something.
"""

from __future__ import annotations

import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.evaluation import dataset_items, read_ground_truth, read_rgb
from app.core.jobs import CancelToken, Progress, check
from app.core.sequences import ArraySequence
from app.core.synthetic_video import DEFAULT_FRAMES, synthesize
from app.core.video_metrics import CORRECTION_IOU, score_sequence

PropagateFn = Callable[[ArraySequence, np.ndarray], dict[int, np.ndarray]]


@dataclass(frozen=True)
class VideoRow:
    name: str
    frames: int
    j_mean: float
    j_last: float
    f_mean: float
    to_correct: list[int]
    seconds: float
    j: list[float]
    f: list[float]


@dataclass(frozen=True)
class VideoSummary:
    backend: str
    images: int
    frames: int
    j_mean: float
    j_last: float
    f_mean: float
    jf_mean: float
    frames_scored: int
    frames_to_correct: int
    correction_iou: float
    seconds_per_frame: float
    wall_s: float
    peak_rss_mb: float = math.nan


@dataclass(frozen=True)
class VideoReport:
    summary: VideoSummary
    rows: list[VideoRow]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": asdict(self.summary), "images": [asdict(r) for r in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def peak_rss_mb() -> float:
    """The process's peak resident memory so far in MiB (NaN where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return math.nan
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes / KiB


def shot_seed(name: str, seed: int = 0) -> int:
    """The synthetic shot's seed for an image name: stable across runs and machines."""
    return (zlib.crc32(name.encode("utf-8")) + 1_000_003 * seed) & 0x7FFFFFFF


def evaluate_video(propagate: PropagateFn, dataset_dir: Path | str, *, backend: str,
                   frames: int = DEFAULT_FRAMES, limit: int | None = None, seed: int = 0,
                   progress: Progress | None = None,
                   cancel: CancelToken | None = None) -> VideoReport:
    """Build, propagate and score one shot per image (the first ``limit`` by name)."""
    if frames < 2:
        raise ValueError("a shot needs at least 2 frames")
    items = dataset_items(dataset_dir)
    if limit is not None:
        items = items[:limit]
    rows: list[VideoRow] = []
    started = time.perf_counter()
    busy = 0.0
    for done, (name, image_path, mask_path) in enumerate(items):
        check(cancel)
        if progress is not None:
            progress(done, len(items), name)
        image = read_rgb(image_path)
        gt = read_ground_truth(mask_path, image.shape[:2])
        shot = synthesize(image, gt.mask, gt.ignore, frames=frames,
                          seed=shot_seed(name, seed), name=name)
        t0 = time.perf_counter()
        preds = propagate(ArraySequence(shot.frames, name=name), shot.masks[0])
        spent = time.perf_counter() - t0
        busy += spent
        scores = score_sequence(preds, shot.masks, shot.ignore)
        rows.append(VideoRow(name=name, frames=frames, j_mean=scores.j_mean,
                             j_last=scores.j_last, f_mean=scores.f_mean,
                             to_correct=scores.to_correct, seconds=spent,
                             j=scores.j, f=scores.f))
    if progress is not None:
        progress(len(items), len(items), "")

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan

    j_mean = mean([r.j_mean for r in rows])
    f_mean = mean([r.f_mean for r in rows])
    scored = sum(len(r.j) for r in rows)
    summary = VideoSummary(
        backend=backend, images=len(rows), frames=frames, j_mean=j_mean,
        j_last=mean([r.j_last for r in rows]), f_mean=f_mean, jf_mean=(j_mean + f_mean) / 2,
        frames_scored=scored, frames_to_correct=sum(len(r.to_correct) for r in rows),
        correction_iou=CORRECTION_IOU,
        seconds_per_frame=busy / max(1, scored), wall_s=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb())
    return VideoReport(summary=summary, rows=rows)
