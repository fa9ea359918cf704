"""The interactive-segmentation protocol on a mosaic of a dataset's photos (issue 16): each
object clicked in the mosaic through the large-image path and on its photo alone, the two
reports side by side (``maskloop eval --mosaic``; the protocol itself: ``evaluation.py``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.evaluation import (
    ClickPredictor,
    EvalReport,
    GroundTruth,
    ImageEval,
    dataset_items,
    evaluate_image,
    read_labels,
    read_rgb,
    run_clicks,
    summarize,
)
from app.core.jobs import CancelToken, Progress, check
from app.core.mosaic import Mosaic, build_mosaic
from app.core.types import EmbeddingKey


@dataclass
class MosaicReport:
    """The same protocol run per object on a mosaic of the dataset's photos (``mosaic``) and
    on the photos alone at the same scale (``separate``)."""

    grid: tuple[int, int]
    upsample: int
    size: tuple[int, int]  # (height, width) of the mosaic
    mosaic: EvalReport
    separate: EvalReport

    @property
    def noc90_ratio(self) -> float:
        """Mosaic NoC@90 over the separate photos' (the goal: at most 1.1)."""
        return self.mosaic.summary.noc90 / max(self.separate.summary.noc90, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"grid": f"{self.grid[0]}x{self.grid[1]}", "upsample": self.upsample,
                "size": list(self.size), "noc90_ratio": self.noc90_ratio,
                "mosaic": self.mosaic.to_dict(), "separate": self.separate.to_dict()}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


MosaicEmbed = Callable[[np.ndarray, CancelToken | None], EmbeddingKey]


def load_mosaic(dataset_dir: Path | str, cols: int, rows: int, upsample: int = 1,
                limit: int | None = None) -> Mosaic:
    """The mosaic of ``dataset_dir``'s photos (the first ``limit``) and their masks."""
    items = dataset_items(dataset_dir)[:limit]
    photos = []
    for name, image_path, mask_path in items:
        image = read_rgb(image_path)
        photos.append((name, image, read_labels(mask_path, image.shape[:2])))
    return build_mosaic(photos, cols, rows, upsample)


def evaluate_mosaic(
    predictor: ClickPredictor,
    separate: ClickPredictor,
    mosaic: Mosaic,
    max_clicks: int = 20,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    multimask: str = "first",
    embed: MosaicEmbed | None = None,
    framed: bool = True,
) -> MosaicReport:
    """Each object of ``mosaic`` through the click protocol twice: alone (its placed photo,
    with ``separate``) and in the mosaic (with ``predictor``, usually a tiled one), the
    clicks chosen inside its photo's window (``run_clicks``). ``framed``: the simulated
    person has zoomed to the object's photo (its rectangle is each prompt's ``view``), as a
    person labelling a large image zooms to the object; False sends no view. ``embed``
    prepares the mosaic (e.g. encodes all its tiles ahead, so clicks are timed alone);
    default ``predictor.embed``."""
    if max_clicks < 1:
        raise ValueError("max_clicks must be at least 1")
    n = len(mosaic.placements)
    t_start = time.perf_counter()
    alone: list[ImageEval] = []
    for i, place in enumerate(mosaic.placements):
        check(cancel)
        if progress is not None:
            progress(i, 2 * n, f"{place.name} alone")
        photo = np.ascontiguousarray(mosaic.image[place.y0:place.y1, place.x0:place.x1])
        gt = GroundTruth.from_label_image(mosaic.labels[i])
        alone.append(evaluate_image(separate, photo, gt, place.name, max_clicks, cancel,
                                    multimask=multimask))
    separate_wall = time.perf_counter() - t_start
    t0 = time.perf_counter()
    if progress is not None:
        progress(n, 2 * n, "mosaic: embedding")
    key = (embed or (lambda im, c: predictor.embed(im, cancel=c)))(mosaic.image, cancel)
    encode_s = time.perf_counter() - t0
    placed: list[ImageEval] = []
    for i, place in enumerate(mosaic.placements):
        check(cancel)
        if progress is not None:
            progress(n + i, 2 * n, f"{place.name} in the mosaic")
        window, labels = _window_around(mosaic, i)
        gt = GroundTruth.from_label_image(labels)
        # the person has zoomed to the object's photo, as on the photo alone
        view = (place.x0, place.y0, place.x1, place.y1) if framed else None
        placed.append(run_clicks(predictor, key, gt, place.name, max_clicks, cancel,
                                 multimask, encode_s=encode_s / n, window=window, view=view))
    if progress is not None:
        progress(2 * n, 2 * n, "done")
    mosaic_wall = time.perf_counter() - t0
    h, w = mosaic.image.shape[:2]
    return MosaicReport(
        grid=mosaic.grid, upsample=mosaic.upsample, size=(h, w),
        mosaic=EvalReport(summarize(placed, predictor.model_id, max_clicks, mosaic_wall),
                          placed),
        separate=EvalReport(summarize(alone, separate.model_id, max_clicks, separate_wall),
                            alone),
    )


def _window_around(mosaic: Mosaic, index: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Photo ``index``'s rectangle grown by a quarter of its longest side (within the
    mosaic), and its labels padded to it with background: the clicker can then correct a
    mask that spills into the neighbouring photos, as a person would."""
    p = mosaic.placements[index]
    margin = max(p.x1 - p.x0, p.y1 - p.y0) // 4
    h, w = mosaic.image.shape[:2]
    x0, y0 = max(0, p.x0 - margin), max(0, p.y0 - margin)
    x1, y1 = min(w, p.x1 + margin), min(h, p.y1 + margin)
    labels = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    labels[p.y0 - y0:p.y1 - y0, p.x0 - x0:p.x1 - x0] = mosaic.labels[index]
    return (x0, y0, x1, y1), labels
