"""Per-click cost of full-resolution masks: upscaling every candidate against only the one on
screen (``maskloop bench``'s ``upscale`` block)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.bench.timing import summary_ms


def bench_upscale(logits: np.ndarray, shown: int, size: tuple[int, int], reps: int,
                   device: Any, sync: Any) -> dict[str, Any]:
    """Per-click cost of the full-resolution masks at ``size`` (width, height), interleaved:
    all candidates (what a click did before issue 14), only the shown one (what
    ``SAM2Predictor.predict`` does now: the same torch kernel, so the same pixels), and only
    the shown one with cv2.resize (faster on some CPUs, but not bit-equal: its pixels that
    differ from torch's are counted)."""
    import cv2
    import torch

    from app.predict.sam2.model import upscale_masks

    width, height = size
    hw = (height, width)
    low_res = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(device)
    buffers: dict[str, Any] = {"all": None, "shown": None}

    def run_all() -> float:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            _, buffers["all"] = upscale_masks(low_res, hw, buffers["all"])
        sync()
        return time.perf_counter() - t0

    def run_shown() -> tuple[float, np.ndarray]:
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            masks, buffers["shown"] = upscale_masks(low_res[shown:shown + 1], hw,
                                                    buffers["shown"])
        sync()
        return time.perf_counter() - t0, masks[0]

    def run_cv2() -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        mask = cv2.resize(logits[shown], (width, height), interpolation=cv2.INTER_LINEAR) > 0
        return time.perf_counter() - t0, mask

    run_all(), run_shown(), run_cv2()  # untimed: buffers, kernels
    all_s: list[float] = []
    shown_s: list[float] = []
    cv2_s: list[float] = []
    differing = 0
    torch_mask = cv2_mask = np.zeros(hw, dtype=bool)
    for i in range(max(1, reps)):
        order = [0, 1, 2] if i % 2 == 0 else [2, 1, 0]  # drift hits each alike
        for which in order:
            if which == 0:
                all_s.append(run_all())
            elif which == 1:
                t, torch_mask = run_shown()
                shown_s.append(t)
            else:
                t, cv2_mask = run_cv2()
                cv2_s.append(t)
        differing = max(differing, int(np.count_nonzero(torch_mask != cv2_mask)))
    all_ms, shown_ms, cv2_ms = summary_ms(all_s), summary_ms(shown_s), summary_ms(cv2_s)
    return {
        "size": [width, height],
        "candidates": int(logits.shape[0]),
        "all_ms": all_ms,
        "shown_ms": shown_ms,
        "shown_cv2_ms": cv2_ms,
        "shown_vs_all": (round(shown_ms["p50"] / all_ms["p50"], 3)
                         if all_ms["p50"] else None),
        "shown_cv2_vs_all": (round(cv2_ms["p50"] / all_ms["p50"], 3)
                             if all_ms["p50"] else None),
        "cv2_pixels_differing": differing,
    }
