"""A small tracked video for the YouTube-VIS and MOTS tests, and TrackEval run on files.

Two tracks over 8 frames of 48x64: a square ring (a mask with a hole) moving right through
every frame, and a disc that leaves after frame 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.core.formats.video_tracks import VideoAnnotations, VideoTrack, frame_file_names

FRAMES, HEIGHT, WIDTH = 8, 48, 64


def ring(frame: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    x = 4 + 3 * frame
    mask[6:26, x:x + 20] = True
    mask[12:20, x + 6:x + 14] = False  # the hole
    return mask


def disc(frame: int) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    return np.asarray((yy - 36) ** 2 + (xx - 50 + 2 * frame) ** 2 <= 49, dtype=bool)


def sample_video(labels: tuple[str, str] = ("pedestrian", "pedestrian"), shift: int = 0,
                 name: str = "walk") -> VideoAnnotations:
    """The two-track video; ``shift`` moves the ring's masks right by that many pixels."""
    first = VideoTrack(1, labels[0], {f: np.roll(ring(f), shift, axis=1) for f in range(FRAMES)},
                       {f: 0.9 for f in range(FRAMES)})
    second = VideoTrack(2, labels[1], {f: disc(f) for f in range(4)})
    return VideoAnnotations(name, WIDTH, HEIGHT, frame_file_names(FRAMES), [first, second])


def evaluate(dataset: Any, cls: str | None = None) -> dict[str, float]:
    """HOTA, MOTA (MOTSA on masks), IDF1 of TrackEval over ``dataset``'s one tracker,
    combined over sequences, of class ``cls`` (default: all classes combined, or the only
    one)."""
    import trackeval

    evaluator = trackeval.Evaluator({
        "USE_PARALLEL": False, "BREAK_ON_ERROR": True, "LOG_ON_ERROR": None,
        "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
        "DISPLAY_LESS_PROGRESS": True, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
        "PLOT_CURVES": False})
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]
    results, messages = evaluator.evaluate([dataset], metrics)
    (by_tracker,) = results.values()
    (res,) = by_tracker.values()
    assert res is not None, messages
    combined = res["COMBINED_SEQ"]
    if cls is None:
        cls = "cls_comb_cls_av" if "cls_comb_cls_av" in combined else next(iter(combined))
    out = combined[cls]
    return {"HOTA": float(np.mean(out["HOTA"]["HOTA"])), "MOTA": float(out["CLEAR"]["MOTA"]),
            "IDF1": float(out["Identity"]["IDF1"])}


def tracker_folder(root: Path, *parts: str) -> Path:
    folder = root.joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
