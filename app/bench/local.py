"""``maskloop bench``: how fast the loop is, on a random-weight SAM2 checkpoint of a given size.

One run measures: encode time per image; click -> mask latency with a cached embedding
(``SAM2Predictor.predict`` at full resolution plus the polygon of the chosen candidate) against
the same prompt decoded by the official predictor's raw sam2 calls on the same tensors
(interleaved, after a warm-up, so the ratio is fair on a noisy machine); the time to switch to
an image whose embedding is in the disk cache (a fresh cache: memory cold) against re-encoding
it; the bytes of one cached embedding in memory and on disk.

The checkpoint is saved as ``{"model": state_dict}`` in a temporary folder and loaded through
the same path as a user's checkpoint. Timings only: random weights say nothing about quality.
They also give noise-like masks (hundreds of specks) whose polygon costs far more than a real
object's, so the polygon is timed twice: on the chosen candidate and on an object-like mask of
the same size (an ellipse of the synthetic image); with random weights the 1.15x goal is judged
on the latter. torch and sam2 are imported inside ``run_bench``.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.timing import summary_ms
from app.bench.upscale import bench_upscale
from app.core.jobs import Progress
from app.core.threads import THREADS_ENV
from app.core.types import Box, EmbeddingKey, Point, Prompt

# Goals from the design.
CLICK_RATIO_GOAL = 1.15  # click -> mask (with polygon) p50 / raw sam2 decode p50
SWITCH_SPEEDUP_GOAL = 20.0  # re-encode time / disk-cache switch time
EMBEDDING_BYTES_GOAL = 8 * 1024 * 1024  # one cached embedding, float16
WARMUP = 3  # untimed decodes of each kind before measuring
UPSCALE_SIZE = (4000, 3000)  # a camera photo: per-click upscale of all candidates vs the shown


@dataclass(frozen=True)
class BenchOptions:
    """What to measure: ``image_size`` is (width, height); ``checkpoint`` None means a
    random-weight checkpoint of ``model`` built in a temporary folder."""

    model: str = "tiny"
    device: str = "auto"
    image_size: tuple[int, int] = (1024, 768)
    clicks: int = 30
    images: int = 3
    checkpoint: Path | None = None
    config: str | None = None
    seed: int = 0
    warmup: int = WARMUP  # untimed decodes of each prompt kind; 0 also skips the warm-up encode
    threads: int | None = None  # torch intra-op threads on the CPU (None: torch's default)
    upscale_size: tuple[int, int] = UPSCALE_SIZE  # (width, height) of the upscale comparison
    upscale_reps: int = 10  # timed rounds of the upscale comparison


def parse_size(text: str) -> tuple[int, int]:
    """"1024x768" -> (1024, 768); ValueError on anything else."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"image size must look like 1024x768, got {text!r}")
    w, h = (int(p) for p in parts)
    if w < 8 or h < 8:
        raise ValueError(f"image size must be at least 8x8, got {text!r}")
    return w, h


def synthetic_scene(width: int, height: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """An RGB uint8 image (a gradient, a few filled ellipses, some noise) and the bool mask of
    each ellipse: object-like masks to time the polygon step on."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = (x / max(width, 1) * 120 + y / max(height, 1) * 80).astype(np.uint8)
    image = np.stack([base, base[::-1], np.full_like(base, 60)], axis=-1).copy()
    masks = []
    for _ in range(6):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 16 + 1, width // 4 + 2)),
                int(rng.integers(height // 16 + 1, height // 4 + 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, centre, axes, angle, 0, 360, colour, -1)
        mask = np.zeros((height, width), np.uint8)
        cv2.ellipse(mask, centre, axes, angle, 0, 360, 1, -1)
        if mask.any():
            masks.append(mask.astype(bool))
    noise = rng.integers(-12, 13, image.shape, dtype=np.int16)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image, masks or [np.ones((height, width), bool)]


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """The image of ``synthetic_scene``."""
    return synthetic_scene(width, height, seed)[0]


def click_prompts(
    count: int, width: int, height: int, seed: int, mask_input: np.ndarray | None
) -> list[Prompt]:
    """A repeatable mix of prompts: one positive click; a positive and a negative click with
    the previous logits fed back; a box with a click inside."""
    rng = np.random.default_rng(seed + 1000)
    prompts = []
    for i in range(count):
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        kind = i % 3
        if kind == 0:
            prompts.append(Prompt(points=(Point(x, y, True),)))
        elif kind == 1:
            x2, y2 = float(rng.uniform(0, width)), float(rng.uniform(0, height))
            prompts.append(Prompt(points=(Point(x, y, True), Point(x2, y2, False)),
                                  mask_input=mask_input))
        else:
            w, h = width * 0.3, height * 0.3
            box = Box(max(0.0, x - w / 2), max(0.0, y - h / 2),
                      min(float(width), x + w / 2), min(float(height), y + h / 2))
            prompts.append(Prompt(points=(Point(x, y, True),), box=box))
    return prompts


def run_bench(options: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run every measurement once and return them as one JSON-able dict (see module doc)."""
    import torch

    say = progress or (lambda done, total, message: None)
    threads = torch.get_num_threads()
    env_before = os.environ.get(THREADS_ENV)
    try:
        if options.threads:
            # the predictors made below set torch's thread count from this
            os.environ[THREADS_ENV] = str(options.threads)
            torch.set_num_threads(options.threads)
        with tempfile.TemporaryDirectory(prefix="maskloop-bench-") as tmp:
            return _run(options, Path(tmp), say)
    finally:
        if env_before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = env_before
        torch.set_num_threads(threads)


def _run(options: BenchOptions, tmp: Path, say: Progress) -> dict[str, Any]:
    import torch

    from app.core.geometry import mask_to_geometry
    from app.predict.cache.store import EmbeddingCache
    from app.predict.models.registry import get_model
    from app.predict.sam2.model import choose_device, save_random_checkpoint
    from app.predict.sam2.predictor import SAM2Predictor

    width, height = options.image_size
    steps = 5
    device = choose_device(options.device)
    spec = get_model(options.model)
    config: str | None = options.config
    if options.checkpoint is None:
        config = config or spec.config
        say(0, steps, f"building a random-weight {spec.name} checkpoint")
        checkpoint = save_random_checkpoint(tmp / f"random-{spec.model_id}.pt", config,
                                            seed=options.seed)
        weights = "random"
    else:
        checkpoint = Path(options.checkpoint)
        weights = str(checkpoint)
    run_tag = f"{time.time_ns():x}"
    model_id = f"bench-{spec.model_id}-{run_tag}"
    cache_dir = tmp / "embeddings"

    say(1, steps, "loading the checkpoint")
    t0 = time.perf_counter()
    predictor = SAM2Predictor(checkpoint, config, model_id=model_id, device=device,
                              cache=EmbeddingCache(disk_dir=cache_dir))
    load_s = time.perf_counter() - t0
    model = predictor.model
    config = predictor.config  # guessed from the weights when --checkpoint came without one

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    scenes = [synthetic_scene(width, height, options.seed + i) for i in range(options.images)]
    images = [image for image, _ in scenes]
    object_masks = scenes[0][1]
    hashes = [f"bench-{run_tag}-{i}" for i in range(options.images)]

    # -- encode: one untimed warm-up image, then each image once --------------------------
    say(2, steps, f"encoding {options.images} images of {width}x{height}")
    warm = synthetic_image(width, height, options.seed + 999)
    if options.warmup:
        predictor.activate(predictor.embed(warm, image_hash=f"bench-{run_tag}-warmup"))
    encode_s: list[float] = []
    keys: list[EmbeddingKey] = []
    for image, image_hash in zip(images, hashes, strict=True):
        sync()
        t0 = time.perf_counter()
        key = predictor.embed(image, image_hash=image_hash)
        predictor.activate(key)
        sync()
        encode_s.append(time.perf_counter() - t0)
        keys.append(key)

    emb = predictor.cache.get(keys[0])
    assert emb is not None
    disk_path = predictor.cache.path_for(keys[0])
    disk_bytes = disk_path.stat().st_size if disk_path is not None else 0
    emb_dtypes = sorted({str(a.dtype) for a in emb.arrays.values()})

    # -- clicks: ours (predict + polygon) and raw sam2, interleaved ------------------------
    say(3, steps, f"decoding {options.clicks} prompts, ours and raw, interleaved")
    key = keys[0]
    predictor.activate(key)
    first = predictor.predict(key, Prompt(points=(Point(width / 2, height / 2),)))
    prompts = click_prompts(options.clicks, width, height, options.seed,
                            first.logits_for(first.best))
    warmup = click_prompts(options.warmup * 3, width, height, options.seed + 7, None)

    def ours(prompt: Prompt, object_mask: np.ndarray) -> tuple[float, float, float, int]:
        """predict; polygon of the chosen candidate; polygon of an object-like mask."""
        sync()
        t0 = time.perf_counter()
        result = predictor.predict(key, prompt)
        t1 = time.perf_counter()
        geometry = mask_to_geometry(result.mask(result.best))
        t2 = time.perf_counter()
        mask_to_geometry(object_mask)
        t3 = time.perf_counter()
        parts = 0 if geometry is None else len(getattr(geometry, "geoms", [geometry]))
        return t1 - t0, t2 - t1, t3 - t2, parts

    def raw(prompt: Prompt) -> float:
        sync()
        t0 = time.perf_counter()
        predictor.raw_decode(key, prompt)
        sync()
        return time.perf_counter() - t0

    for i, prompt in enumerate(warmup):
        ours(prompt, object_masks[i % len(object_masks)])
        raw(prompt)
    predict_s: list[float] = []
    polygon_s: list[float] = []
    object_s: list[float] = []
    raw_s: list[float] = []
    polygon_parts: list[int] = []
    for i, prompt in enumerate(prompts):
        object_mask = object_masks[i % len(object_masks)]
        # alternate which goes first so drift and cache effects hit both alike
        if i % 2:
            raw_s.append(raw(prompt))
            p, g, o, n = ours(prompt, object_mask)
        else:
            p, g, o, n = ours(prompt, object_mask)
            raw_s.append(raw(prompt))
        predict_s.append(p)
        polygon_s.append(g)
        object_s.append(o)
        polygon_parts.append(n)
    click_s = [p + g for p, g in zip(predict_s, polygon_s, strict=True)]
    click_object_s = [p + o for p, o in zip(predict_s, object_s, strict=True)]
    click = summary_ms(click_s)
    click_object = summary_ms(click_object_s)
    raw_summary = summary_ms(raw_s)
    predict_summary = summary_ms(predict_s)
    paired = [c / r for c, r in zip(click_s, raw_s, strict=True) if r > 0]
    paired_object = [c / r for c, r in zip(click_object_s, raw_s, strict=True) if r > 0]

    say(3, steps, "upscaling the shown candidate vs all candidates")
    upscale = bench_upscale(first.low_res_logits, first.best, options.upscale_size,
                             options.upscale_reps, device, sync)

    # -- switching to an image embedded earlier: a fresh cache on the same folder ---------
    say(4, steps, "switching to images cached on disk (memory cold)")
    predictor.close()
    fresh = SAM2Predictor(checkpoint, config, model_id=model_id, device=device,
                          cache=EmbeddingCache(disk_dir=cache_dir))
    if options.warmup:  # one untimed read from disk first
        fresh.activate(fresh.embed(warm, image_hash=f"bench-{run_tag}-warmup"))
    switch_s: list[float] = []
    for image, image_hash in zip(images, hashes, strict=True):
        sync()
        t0 = time.perf_counter()
        fresh.activate(fresh.embed(image, image_hash=image_hash))
        sync()
        switch_s.append(time.perf_counter() - t0)
    stats = fresh.cache.stats
    description = fresh.description
    precision = fresh.precision.label
    fresh.close()
    say(steps, steps, "done")

    encode_mean = float(np.mean(encode_s))
    switch_mean = float(np.mean(switch_s))
    ratio = (click["p50"] / raw_summary["p50"]) if raw_summary["p50"] else None
    ratio_object = (click_object["p50"] / raw_summary["p50"]) if raw_summary["p50"] else None
    # Random weights give noise-like masks (hundreds of specks): their polygon says nothing
    # about a real object's, so the goal is judged with an object-like mask then.
    goal_ratio = ratio_object if weights == "random" else ratio
    speedup = encode_mean / switch_mean if switch_mean > 0 else None
    result: dict[str, Any] = {
        "model": spec.name if options.checkpoint is None else Path(config).stem,
        "config": config,
        "weights": weights,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "checkpoint_bytes": checkpoint.stat().st_size,
        "predictor": description,
        "device": str(device),
        "device_name": _device_name(device),
        "compute_dtype": "bfloat16" if precision == "bf16" else "float32",
        "torch": torch.__version__,
        "sam2": _version("sam2"),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "image_size": [width, height],
        "images": options.images,
        "clicks": options.clicks,
        "warmup": options.warmup,
        "load_s": round(load_s, 3),
        "encode_ms": {**summary_ms(encode_s), "each": [round(s * 1000, 3) for s in encode_s]},
        "click_ms": click,
        "predict_ms": predict_summary,
        "polygon_ms": summary_ms(polygon_s),
        "polygon_parts_mean": round(float(np.mean(polygon_parts)), 2) if polygon_parts else 0,
        "click_object_ms": click_object,
        "polygon_object_ms": summary_ms(object_s),
        "raw_decode_ms": raw_summary,
        "click_vs_raw": round(ratio, 3) if ratio is not None else None,
        "click_object_vs_raw": round(ratio_object, 3) if ratio_object is not None else None,
        "click_object_vs_raw_paired_median": (round(float(np.median(paired_object)), 3)
                                              if paired_object else None),
        "click_goal_basis": "object-like mask" if weights == "random" else "chosen candidate",
        "predict_vs_raw": (round(predict_summary["p50"] / raw_summary["p50"], 3)
                           if raw_summary["p50"] else None),
        "click_vs_raw_paired_median": round(float(np.median(paired)), 3) if paired else None,
        "switch_ms": {**summary_ms(switch_s), "each": [round(s * 1000, 3) for s in switch_s]},
        "switch_disk_hits": stats.disk_hits,
        "reencode_ms": round(encode_mean * 1000, 3),
        "switch_speedup": round(speedup, 1) if speedup is not None else None,
        "embedding_bytes_memory": int(emb.nbytes),
        "embedding_bytes_disk": int(disk_bytes),
        "embedding_dtype": emb_dtypes[0] if len(emb_dtypes) == 1 else ",".join(emb_dtypes),
        "embedding_arrays": {name: list(a.shape) for name, a in emb.arrays.items()},
        "upscale": upscale,
    }
    result["goals"] = {
        "click_within_1.15x_raw": goal_ratio is not None and goal_ratio <= CLICK_RATIO_GOAL,
        "disk_switch_20x_faster": speedup is not None and speedup >= SWITCH_SPEEDUP_GOAL,
        "embedding_float16_8MiB": (result["embedding_dtype"] == "float16"
                                   and emb.nbytes <= EMBEDDING_BYTES_GOAL
                                   and disk_bytes <= EMBEDDING_BYTES_GOAL + 65536),
    }
    return result


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return platform.processor() or platform.machine()
