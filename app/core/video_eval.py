"""The synthetic video benchmark: propagate a mask through sequences made from a labelled
image dataset and score it with DAVIS' J and F.

Each image of DATASET (images/ and masks/: 255 object, 128 ignored) becomes a
``synthesize``-d shot of ``frames`` frames (seeded by the image's name, so every run and every
backend sees the same shots); the backend gets frame 0's ground truth and propagates it
forward; frames 1..N-1 are scored (frame 0 is given, as in DAVIS' semi-supervised protocol).
The backend is any ``propagate(sequence, first_mask) -> {frame: mask}``; core knows none.
With a random-weight SAM2 the masks are noise and only the time per frame and the memory
(the process's peak resident size, ``peak_rss_mb``) mean something.

``codec`` passes every shot through a real video codec first (``round_trip``: PyAV encodes
it to a temporary file, ``VideoSequence`` decodes it, as a user's video would be read), so
the figures say what propagation does on compressed footage; the ground truth is unchanged.
``split`` picks one seeded half of the images ("tune" to develop on, "test" to report), as
eval-findall does (``app.core.composites.split_names``).
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.composites import split_names
from app.core.evaluation import dataset_items, read_ground_truth, read_rgb
from app.core.jobs import CancelToken, Progress, check
from app.core.sequences import ArraySequence, SequenceError, VideoSequence, _import_av
from app.core.synthetic_video import DEFAULT_FRAMES, synthesize
from app.core.video_metrics import CORRECTION_IOU, score_sequence

PropagateFn = Callable[[ArraySequence, np.ndarray], dict[int, np.ndarray]]

CODECS = {"h264": "libx264"}
"""The codecs a shot can be passed through: name -> PyAV (FFmpeg) encoder."""


@dataclass(frozen=True)
class Codec:
    """A lossy round trip: encoder name (a key of ``CODECS``), constant rate factor (x264:
    0 lossless .. 51; 23 is its default) and frame rate; 4:2:0 chroma, as most cameras
    and phones write."""

    name: str = "h264"
    crf: int = 23
    fps: int = 25

    def __post_init__(self) -> None:
        if self.name not in CODECS:
            raise ValueError(f"unknown codec {self.name!r}; choose one of {', '.join(CODECS)}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be 0..51, not {self.crf}")

    @property
    def label(self) -> str:
        return f"{self.name} crf {self.crf}"


def round_trip(frames: list[np.ndarray], codec: Codec) -> list[np.ndarray]:
    """``frames`` (RGB uint8, one size) encoded with ``codec`` into a temporary MP4 and
    decoded back by ``VideoSequence``: same count, order and size (4:2:0 needs even sides,
    so an odd side is padded by repeating its last row or column and cropped after)."""
    if not frames:
        return []
    av = _import_av()
    h, w = frames[0].shape[:2]
    ph, pw = h + h % 2, w + w % 2
    with tempfile.TemporaryDirectory(prefix="maskloop-codec-") as tmp:
        path = Path(tmp) / "shot.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(CODECS[codec.name], rate=codec.fps)
            stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
            stream.options = {"crf": str(codec.crf)}
            for rgb in frames:
                if rgb.shape[:2] != (h, w):
                    raise ValueError(f"frames differ in size: {rgb.shape[1::-1]} vs {(w, h)}")
                padded = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        with VideoSequence(path) as video:
            if len(video) != len(frames):
                raise SequenceError(f"{codec.label}: {len(frames)} frames encoded, "
                                    f"{len(video)} decoded")
            return [np.ascontiguousarray(video.frame(i)[:h, :w]) for i in range(len(video))]


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
    codec: str = "raw"
    split: str = "all"


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
                   codec: Codec | None = None, split: str = "all",
                   progress: Progress | None = None,
                   cancel: CancelToken | None = None) -> VideoReport:
    """Build, propagate and score one shot per image of ``split`` (the first ``limit`` by
    name), each passed through ``codec`` first when one is given."""
    if frames < 2:
        raise ValueError("a shot needs at least 2 frames")
    items = dataset_items(dataset_dir)
    if split != "all":  # the split's halves come from the seed 0 permutation, always
        chosen = set(split_names([n for n, _, _ in items], split))
        items = [item for item in items if item[0] in chosen]
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
        shown = shot.frames if codec is None else round_trip(shot.frames, codec)
        t0 = time.perf_counter()
        preds = propagate(ArraySequence(shown, name=name), shot.masks[0])
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
        peak_rss_mb=peak_rss_mb(), codec="raw" if codec is None else codec.label, split=split)
    return VideoReport(summary=summary, rows=rows)
