"""Summaries of timings that every benchmark prints."""

from __future__ import annotations

from typing import Any

import numpy as np


def summary_ms(seconds: list[float]) -> dict[str, Any]:
    """mean, p50, p95, min, max in milliseconds of a list of durations in seconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "min": None, "max": None}
    return {
        "n": int(ms.size),
        "mean": round(float(ms.mean()), 3),
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "min": round(float(ms.min()), 3),
        "max": round(float(ms.max()), 3),
    }
