"""``maskloop bench --runtimes``: SAM2's encode and one-point decode on each CPU runtime (torch
eager, ONNX Runtime, OpenVINO) and thread setting, interleaved in one run (each round times
every runtime once, so a busy neighbour slows them alike), with the ratio to torch eager and
each runtime's deviation from torch's outputs.

Beside them, the floor (``roofline.py``): the encode's and a click's floating-point operations
at this CPU's fp32 GEMM peak for each thread setting, the least time any fp32 runtime could
take, and as a ratio to torch eager, so a goal below it is shown to be out of reach here.

The encode is the stepwise encode the app runs (``EncodeRun``: stem, each Hiera block, head)
on a synthetic image; the decode is the prompt encoder + mask decoder of one positive point,
multimask, on torch's features of that image, as each click of an image decodes it; the part
of the decode a runtime computes once per image (``image_part_ms``: the ONNX decoder's
``decoder_image.onnx``) is timed on its own, every fifth round. Conversion time is reported,
not timed in.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENCODE_GOAL = 0.5  # issue 14: a runtime's encode <= 0.5x torch eager's
DECODE_GOAL = 0.7  # and its one-point decode <= 0.7x
DEVIATION_GOAL = 1e-4


@dataclass
class RuntimeBenchOptions:
    model: str = "tiny"
    image_size: tuple[int, int] = (1024, 768)
    threads: tuple[int, ...] = (1, 2)
    runtimes: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    encodes: int = 3
    decodes: int = 20
    checkpoint: Path | None = None
    config: str | None = None
    cache_dir: Path | None = None


def _image(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in values]
    return {"median": round(statistics.median(ms), 2), "min": round(min(ms), 2), "n": len(ms)}


def run_runtime_bench(options: RuntimeBenchOptions,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every runtime of ``options`` (see the module docstring); a runtime that is not
    installed or falls back to torch is reported with the reason and not timed."""
    import torch

    from app.bench.roofline import count_flops, floor_ms, gemm_peak_gflops
    from app.predict.sam2.encoder import EncodeRun, encode_all
    from app.predict.sam2.model import inference, load_sam2, precision_for, random_weight_sam2
    from app.predict.sam2.runtimes import LoadedRuntime, load_runtime

    say = progress or (lambda _m: None)
    if options.checkpoint is not None:
        model, _ = load_sam2(options.checkpoint, options.config, "cpu")
        model_id, weights = f"bench-{Path(options.checkpoint).stem}", "checkpoint"
    else:
        model = random_weight_sam2(options.model, "cpu")
        model_id, weights = f"bench-random-{options.model}", "random"
    precision = precision_for(torch.device("cpu"))
    say("counting the model's operations")
    flops = count_flops(model)
    floors: dict[str, dict[str, Any]] = {}
    loaded: dict[str, LoadedRuntime] = {}
    skipped: dict[str, str] = {}
    load_s: dict[str, float] = {}
    for name in options.runtimes:
        say(f"loading {name} (the first time converts the model)")
        start = time.perf_counter()
        rt = load_runtime(model, model_id, name, cache_dir=options.cache_dir)
        load_s[name] = round(time.perf_counter() - start, 2)
        if rt.name != name:
            skipped[name] = rt.reason or "fell back to torch"
        else:
            loaded[name] = rt
    w, h = options.image_size
    image = _image(w, h)
    res = int(model.image_size)
    scale = np.array([res / w, res / h], np.float32)
    coords = torch.from_numpy(np.array([[[w * 0.4, h * 0.55]]], np.float32) * scale)
    labels = torch.ones((1, 1), dtype=torch.int32)

    def encode(rt: LoadedRuntime) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with inference(precision):
            return encode_all(EncodeRun(rt.encoder, [image], res, torch.device("cpu")))

    def decode(rt: LoadedRuntime, feats: tuple[torch.Tensor, list[torch.Tensor]]
               ) -> tuple[torch.Tensor, torch.Tensor]:
        with inference(precision):
            return rt.decoder.decode(feats[0], feats[1], coords, labels, None, True, False)

    before = torch.get_num_threads()
    rows: list[dict[str, Any]] = []
    try:
        for threads in options.threads:
            torch.set_num_threads(threads)
            enc: dict[str, list[float]] = {n: [] for n in loaded}
            dec: dict[str, list[float]] = {n: [] for n in loaded}
            outs: dict[str, tuple[torch.Tensor, list[torch.Tensor]]] = {}
            for name, rt in loaded.items():  # warm-up (loads the graphs for these threads)
                say(f"{threads} thread(s): warm-up {name}")
                outs[name] = encode(rt)
            feats = outs.get("torch") or next(iter(outs.values()))
            dec_out = {name: decode(rt, feats) for name, rt in loaded.items()}
            for r in range(options.encodes):
                say(f"{threads} thread(s): encode round {r + 1}/{options.encodes}")
                for name, rt in loaded.items():
                    start = time.perf_counter()
                    encode(rt)
                    enc[name].append(time.perf_counter() - start)
            part: dict[str, list[float]] = {n: [] for n in loaded}
            for r in range(options.decodes):
                for name, rt in loaded.items():
                    start = time.perf_counter()
                    decode(rt, feats)
                    dec[name].append(time.perf_counter() - start)
                    image_parts = getattr(rt.decoder, "image_parts", None)
                    if image_parts is not None and r % 5 == 0:  # an image's first decode
                        start = time.perf_counter()
                        image_parts(feats[0].clone())
                        part[name].append(time.perf_counter() - start)
            base_e = statistics.median(enc["torch"]) if "torch" in enc else None
            base_d = statistics.median(dec["torch"]) if "torch" in dec else None
            say(f"{threads} thread(s): this CPU's GEMM peak")
            peak = gemm_peak_gflops(threads)
            floor: dict[str, Any] = {
                "gemm_gflops": peak["peak"], "gemm_by_kernel": peak,
                "encode_floor_ms": floor_ms(flops.encode, peak["peak"]),
                "decode_floor_ms": floor_ms(flops.click, peak["peak"])}
            if base_e and base_d:
                floor["encode_floor_vs_torch"] = round(
                    floor["encode_floor_ms"] / (base_e * 1000.0), 3)
                floor["decode_floor_vs_torch"] = round(
                    floor["decode_floor_ms"] / (base_d * 1000.0), 3)
            floors[str(threads)] = floor
            for name in loaded:
                row: dict[str, Any] = {"runtime": name, "threads": threads,
                                       "encode_ms": _summary(enc[name]),
                                       "decode_ms": _summary(dec[name])}
                if part[name]:
                    row["image_part_ms"] = _summary(part[name])
                # torch decodes the image part with every click; a converted decoder once
                click_gflop = flops.click + (0.0 if part[name] else flops.decoder_image)
                row["encode_gflops"] = round(flops.encode / statistics.median(enc[name]), 1)
                row["decode_gflops"] = round(click_gflop / statistics.median(dec[name]), 1)
                if base_e and base_d:
                    row["encode_vs_torch"] = round(statistics.median(enc[name]) / base_e, 3)
                    row["decode_vs_torch"] = round(statistics.median(dec[name]) / base_d, 3)
                if "torch" in outs:
                    t_feats = outs["torch"]
                    got = outs[name]
                    row["encode_max_abs_diff"] = float(max(
                        (a - b).abs().max() for a, b in zip(
                            [got[0], *got[1]], [t_feats[0], *t_feats[1]], strict=True)))
                    row["decode_max_abs_diff"] = float(max(
                        (dec_out[name][k] - dec_out["torch"][k]).abs().max() for k in (0, 1)))
                rows.append(row)
    finally:
        torch.set_num_threads(before)
    goals = {}
    for row in rows:
        if row["runtime"] != "torch" and "encode_vs_torch" in row:
            goals[f"{row['runtime']} x{row['threads']}"] = {
                "encode": row["encode_vs_torch"] <= ENCODE_GOAL,
                "decode": row["decode_vs_torch"] <= DECODE_GOAL,
                "deviation": max(row["encode_max_abs_diff"],
                                 row["decode_max_abs_diff"]) <= DEVIATION_GOAL,
            }
    return {
        "model": options.model if options.checkpoint is None else str(options.checkpoint),
        "weights": weights, "image_size": [w, h], "torch": torch.__version__,
        "versions": _versions(), "load_s": load_s, "skipped": skipped, "rows": rows,
        "goals": goals, "conversions": {n: rt.converted for n, rt in loaded.items()},
        "gflop": {"encode": flops.encode, "decoder_image": flops.decoder_image,
                  "click": flops.click},
        "floor": floors,
    }


def _versions() -> dict[str, str]:
    import importlib.metadata

    out = {}
    for package in ("onnxruntime", "openvino"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def format_runtime_report(result: dict[str, Any]) -> str:
    """The result as a table: one row per runtime and thread setting."""
    w, h = result["image_size"]
    lines = [
        f"maskloop bench --runtimes: SAM2 {result['model']} ({result['weights']} weights), "
        f"{w}x{h}, torch {result['torch']}, "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        f"  goals: encode <= {ENCODE_GOAL}x torch, decode <= {DECODE_GOAL}x, "
        f"max abs diff <= {DEVIATION_GOAL:.0e}",
        f"  {'runtime':<12} {'thr':>3} {'encode ms':>10} {'x torch':>8} {'decode ms':>10} "
        f"{'x torch':>8} {'enc diff':>9} {'dec diff':>9}",
    ]
    for row in result["rows"]:
        lines.append(
            f"  {row['runtime']:<12} {row['threads']:>3} {row['encode_ms']['median']:>10.0f} "
            f"{row.get('encode_vs_torch', float('nan')):>8.2f} "
            f"{row['decode_ms']['median']:>10.1f} {row.get('decode_vs_torch', float('nan')):>8.2f} "
            f"{row.get('encode_max_abs_diff', float('nan')):>9.1e} "
            f"{row.get('decode_max_abs_diff', float('nan')):>9.1e}")
    for row in result["rows"]:
        if "image_part_ms" in row:
            lines.append(f"  {row['runtime']} x{row['threads']}: an image's first decode adds "
                         f"{row['image_part_ms']['median']:.1f} ms (its per-image part)")
    gflop = result.get("gflop") or {}
    for threads, floor in result.get("floor", {}).items():
        vs_e = floor.get("encode_floor_vs_torch", float("nan"))
        vs_d = floor.get("decode_floor_vs_torch", float("nan"))
        lines.append(
            f"  floor x{threads}: at this CPU's fp32 GEMM peak of {floor['gemm_gflops']:.0f} "
            f"GFLOP/s an encode ({gflop['encode']:.0f} GFLOP) takes >= "
            f"{floor['encode_floor_ms']:.0f} ms ({vs_e:.2f}x torch), a click "
            f"({gflop['click']:.2f} GFLOP) >= {floor['decode_floor_ms']:.1f} ms ({vs_d:.2f}x)")
    for row in result["rows"]:
        if "encode_gflops" in row:
            lines.append(f"  {row['runtime']} x{row['threads']}: encode at "
                         f"{row['encode_gflops']:.0f} GFLOP/s, decode at "
                         f"{row['decode_gflops']:.0f} GFLOP/s")
    for name, reason in result["skipped"].items():
        lines.append(f"  {name}: not timed ({reason})")
    lines.append("  load (s, the first includes the conversion): " + ", ".join(
        f"{k} {v}" for k, v in result["load_s"].items()))
    return "\n".join(lines)
