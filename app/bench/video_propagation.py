"""Benchmark of propagation through a video: time per frame and memory.

``python -m app.bench.video_propagation [--backend sam2|classical] [--frames 30]
[--width 854 --height 480] [--tracks 1] [--runtime torch]`` films a synthetic shot
(app/core/synthetic_video.py) of a textured disc at the given size, gives frame 0's mask as
the anchor of each track and propagates forward. SAM2 is the tiny SAM2.1 with seeded random
weights (masks are noise; time and memory are real): each frame costs one image encode
(from the embedding cache on a second run) and one memory-attention step per track.
Prints one JSON object: seconds per frame (mean, median, first and last), the encode's share,
the process's peak resident memory, and the resident memory after each tenth of the frames
(it should stay flat: a run keeps only the memories its next frame can attend to).
Progress goes to stderr, a line per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import cv2
import numpy as np

from app.core.sequences import ArraySequence
from app.core.synthetic_video import synthesize
from app.core.video_eval import peak_rss_mb
from app.predict.propagation import PropagationRequest


def _rss_mb() -> float:
    """The resident memory now, in MiB (Linux: /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def shot(width: int, height: int, frames: int, tracks: int) -> tuple[ArraySequence,
                                                                     list[np.ndarray]]:
    """A textured scene with ``tracks`` discs, filmed by the synthetic camera; the first
    frame's mask of each disc."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    image = np.clip(100 + 40 * cv2.resize(noise, (width, height)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    discs = []
    for k in range(tracks):
        cx, cy = width * (k + 1) / (tracks + 1), height / 2
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) / (3 + 2 * tracks)) ** 2
        image[disc] = (200, 60 + 50 * k, 40)
        discs.append(disc)
    made = synthesize(image, np.any(discs, axis=0), frames=frames, seed=3, occluder=False)
    m = made.transforms[0]  # each disc's mask moved as frame 0 moved the image
    firsts = [cv2.warpAffine(d.astype(np.uint8), m, (width, height),
                             flags=cv2.INTER_NEAREST) > 0 for d in discs]
    return ArraySequence(made.frames, name="bench"), firsts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench.video_propagation",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sam2", "classical"), default="sam2")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--tracks", type=int, default=1)
    parser.add_argument("--config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    parser.add_argument("--runtime", default="torch",
                        help="the encoder's runtime on a CPU (torch, onnxruntime, auto)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=None,
                        help="the model's input size (default: the config's, 1024); a smaller "
                             "one makes long runs affordable on a CPU to watch memory")
    args = parser.parse_args(argv)
    seq, firsts = shot(args.width, args.height, args.frames, args.tracks)
    info: dict[str, Any] = {"backend": args.backend, "frames": args.frames,
                            "size": [args.width, args.height], "tracks": args.tracks}
    rss_start = _rss_mb()
    if args.backend == "sam2":
        from app.predict.cache.store import EmbeddingCache
        from app.predict.sam2.model import random_weight_sam2
        from app.predict.sam2.predictor import SAM2Predictor
        from app.predict.sam2.video import SAM2Propagator

        model = random_weight_sam2(args.config, args.device, image_size=args.image_size)
        predictor = SAM2Predictor.from_model(model, "bench-random", EmbeddingCache(disk_dir=None),
                                             runtime=args.runtime)
        session: Any = SAM2Propagator(predictor, cache_frames=False).open(seq)
        info["model"] = f"{args.config} (random weights), {predictor.description}"
        info["image_size"] = int(model.image_size)
    else:
        from app.predict.classical.propagate import ClassicalPropagator

        session = ClassicalPropagator().open(seq)
    for k, mask in enumerate(firsts):
        session.add_mask(0, k + 1, mask)
    times: list[float] = []
    rss: dict[int, float] = {}
    every = max(1, args.frames // 10)
    started = last = time.perf_counter()
    for result in session.propagate(PropagationRequest(0)):
        now = time.perf_counter()
        if result.frame > 0:
            times.append(now - last)
        last = now
        if result.frame % every == 0 or result.frame == args.frames - 1:
            rss[result.frame] = round(_rss_mb(), 1)
        print(json.dumps({"frame": result.frame, "s": round(now - started, 2),
                          "rss_mb": round(_rss_mb(), 1)}), file=sys.stderr, flush=True)
    info.update({
        "seconds_per_frame": round(statistics.fmean(times), 3) if times else None,
        "median_s": round(statistics.median(times), 3) if times else None,
        "first_s": round(times[0], 3) if times else None,
        "last_s": round(times[-1], 3) if times else None,
        "wall_s": round(time.perf_counter() - started, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_by_frame_mb": rss,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    })
    if args.backend == "sam2":
        info["frames_encoded"] = session.encoded
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
