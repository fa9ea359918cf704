"""The standard interactive-segmentation evaluation (the RITM protocol) and its metrics.

A simulated person clicks: the first click is positive, at the object point farthest from its
boundary; each next click goes at the point farthest from the boundary of the largest error
region (the false-negative and false-positive regions are compared by their largest distance to
their own boundary, as RITM's clicker does; a missed part gives a positive click, a false one a
negative click). The image border counts as boundary (the masks are padded before the distance
transform) and pixels marked "ignored" in the ground truth (value 128) belong to no region and
count in no IoU. The chosen candidate's low-res logits are fed back with every click.

Metrics: NoC@85 / NoC@90 (mean clicks to reach IoU 0.85 / 0.90, ``max_clicks`` when never
reached), NoF (objects never reaching the target), mIoU after 1 and 5 clicks, click latency
(around ``predictor.predict`` only) and encode time (around ``predictor.embed``).

Only numpy and OpenCV here: the predictor is passed in (any object with the Predictor shape).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from app.core.errors import ImageError, MaskLoopError
from app.core.geometry import mask_iou
from app.core.images import load_image, sniff_format
from app.core.jobs import CancelToken, Progress, check
from app.core.types import Box, EmbeddingKey, MaskResult, Point, Prompt

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OBJECT_VALUE = 255
IGNORE_VALUE = 128
THRESHOLDS = (0.85, 0.90)


class DatasetError(MaskLoopError):
    """An evaluation dataset is missing its images/ or masks/ folder, or a mask."""


class ClickPredictor(Protocol):
    """The part of ``app.predict.base.Predictor`` the evaluation uses."""

    @property
    def model_id(self) -> str: ...

    def embed(
        self, image: np.ndarray, image_hash: str | None = None, cancel: CancelToken | None = None
    ) -> EmbeddingKey: ...

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult: ...


# ---------------------------------------------------------------- ground truth and clicks


@dataclass(frozen=True)
class GroundTruth:
    """One object: ``mask`` (H, W) bool object pixels, ``ignore`` (H, W) bool pixels to skip."""

    mask: np.ndarray
    ignore: np.ndarray

    @classmethod
    def from_label_image(cls, labels: np.ndarray) -> GroundTruth:
        """255 = object, 128 = ignored, anything else = background."""
        return cls(mask=labels == OBJECT_VALUE, ignore=labels == IGNORE_VALUE)


def iou(pred: np.ndarray, gt: GroundTruth) -> float:
    """IoU of ``pred`` with the object, ignored pixels excluded (1.0 when both are empty)."""
    return mask_iou(pred, gt.mask, gt.ignore)


def _padded_distance(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest non-region pixel, image border included."""
    padded = np.pad(region.astype(np.uint8), 1, mode="constant")
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist[1:-1, 1:-1]


@dataclass
class ClickSimulator:
    """RITM's clicker: ``next_click(pred)`` returns the next Point for the current prediction.

    Clicked pixels are never clicked again (RITM's ``not_clicked_map``).
    """

    gt: GroundTruth
    clicks: list[Point] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._not_clicked = np.ones(self.gt.mask.shape, dtype=bool)

    def next_click(self, pred: np.ndarray | None = None) -> Point | None:
        """The next click for prediction ``pred`` (None = nothing predicted yet).

        Returns None when there is no error left to click on.
        """
        if pred is None:
            pred = np.zeros(self.gt.mask.shape, dtype=bool)
        valid = ~self.gt.ignore
        fn = self.gt.mask & ~pred & valid
        fp = ~self.gt.mask & pred & valid
        fn_dt = _padded_distance(fn) * self._not_clicked
        fp_dt = _padded_distance(fp) * self._not_clicked
        fn_max, fp_max = float(fn_dt.max()), float(fp_dt.max())
        if fn_max == 0.0 and fp_max == 0.0:
            return None
        positive = fn_max > fp_max
        dt, best = (fn_dt, fn_max) if positive else (fp_dt, fp_max)
        rows, cols = np.nonzero(dt == best)
        row, col = int(rows[0]), int(cols[0])
        self._not_clicked[row, col] = False
        point = Point(col + 0.5, row + 0.5, positive)
        self.clicks.append(point)
        return point


# ---------------------------------------------------------------- results


@dataclass
class ImageEval:
    """One image's run: IoU after each click (stops early once every target is met and
    at least 5 clicks were made), the clicks, and timings in seconds."""

    name: str
    ious: list[float]
    clicks: list[tuple[float, float, bool]]
    noc85: int
    noc90: int
    encode_s: float
    latencies_s: list[float]

    def iou_after(self, k: int) -> float:
        """IoU after ``k`` clicks (the last one when the run stopped earlier)."""
        if not self.ious:
            return 0.0
        return self.ious[min(k, len(self.ious)) - 1]


@dataclass
class EvalSummary:
    model_id: str
    images: int
    max_clicks: int
    noc85: float
    noc90: float
    nof85: int
    nof90: int
    miou_at_1: float
    miou_at_5: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_max_ms: float
    encode_mean_s: float
    clicks_total: int
    wall_s: float


@dataclass
class EvalReport:
    """Per-image rows and the summary; ``to_json()`` for machines."""

    summary: EvalSummary
    rows: list[ImageEval]

    def to_dict(self) -> dict[str, Any]:
        return {"summary": asdict(self.summary), "images": [asdict(r) for r in self.rows]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def noc(ious: list[float], threshold: float, max_clicks: int) -> int:
    """Clicks needed to reach ``threshold`` (``max_clicks`` when never reached)."""
    for k, value in enumerate(ious[:max_clicks], start=1):
        if value >= threshold:
            return k
    return max_clicks


def summarize(
    rows: list[ImageEval], model_id: str, max_clicks: int, wall_s: float
) -> EvalSummary:
    """The dataset-level metrics of per-image runs."""
    lat = np.array([t for r in rows for t in r.latencies_s], dtype=np.float64) * 1000.0

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if lat.size else 0.0

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    return EvalSummary(
        model_id=model_id,
        images=len(rows),
        max_clicks=max_clicks,
        noc85=mean([r.noc85 for r in rows]),
        noc90=mean([r.noc90 for r in rows]),
        nof85=sum(1 for r in rows if max(r.ious, default=0.0) < 0.85),
        nof90=sum(1 for r in rows if max(r.ious, default=0.0) < 0.90),
        miou_at_1=mean([r.iou_after(1) for r in rows]),
        miou_at_5=mean([r.iou_after(5) for r in rows]),
        latency_p50_ms=pct(50),
        latency_p95_ms=pct(95),
        latency_max_ms=float(lat.max()) if lat.size else 0.0,
        encode_mean_s=mean([r.encode_s for r in rows]),
        clicks_total=int(lat.size),
        wall_s=wall_s,
    )


# ---------------------------------------------------------------- the protocol


def evaluate_image(
    predictor: ClickPredictor,
    image: np.ndarray,
    gt: GroundTruth,
    name: str = "",
    max_clicks: int = 20,
    cancel: CancelToken | None = None,
    image_hash: str | None = None,
    multimask: str = "first",
) -> ImageEval:
    """Run the click simulation on one image.

    ``multimask``: "first" asks for 3 candidates on the first click only and one afterwards
    (as SAM's own evaluations do), "always" / "never" as named; the candidate with the best
    predicted score is chosen and its low-res logits fed back with the next click.
    """
    t0 = time.perf_counter()
    key = predictor.embed(image, image_hash=image_hash, cancel=cancel)
    encode_s = time.perf_counter() - t0
    return run_clicks(predictor, key, gt, name, max_clicks, cancel, multimask,
                      encode_s=encode_s)


def _window_of(result: MaskResult, index: int,
               window: tuple[int, int, int, int]) -> tuple[np.ndarray, int]:
    """Candidate ``index`` inside ``window`` (x0, y0, x1, y1) and how many of its pixels lie
    outside it; through the result's ``crop`` when it has one (a tiled result: no
    image-sized mask is made)."""
    x0, y0, x1, y1 = window
    crop = getattr(result, "crop", None)
    if crop is None:
        full = result.mask(index)
        inside = full[y0:y1, x0:x1]
        return inside, int(np.count_nonzero(full)) - int(np.count_nonzero(inside))
    part, cx, cy = crop(index)
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    ix0, iy0 = max(x0, cx), max(y0, cy)
    ix1, iy1 = min(x1, cx + part.shape[1]), min(y1, cy + part.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = part[iy0 - cy:iy1 - cy, ix0 - cx:ix1 - cx]
    return out, int(np.count_nonzero(part)) - int(np.count_nonzero(out))


def run_clicks(
    predictor: ClickPredictor,
    key: EmbeddingKey,
    gt: GroundTruth,
    name: str = "",
    max_clicks: int = 20,
    cancel: CancelToken | None = None,
    multimask: str = "first",
    *,
    encode_s: float = 0.0,
    window: tuple[int, int, int, int] | None = None,
    view: tuple[int, int, int, int] | None = None,
) -> ImageEval:
    """The click loop of ``evaluate_image`` on an embedded image. ``window`` (x0, y0, x1, y1)
    is where the object's photo lies in a larger image (a mosaic): ``gt`` is the window's
    size, clicks are chosen inside it as on the photo alone (its edges count as the image's
    border) and sent in the large image's coordinates, and predicted pixels outside the
    window count as false positives in the IoU. ``view`` (x0, y0, x1, y1): what the simulated
    person sees, sent with every prompt (``Prompt.view``), as the app sends its canvas's."""
    x0, y0 = (window[0], window[1]) if window is not None else (0, 0)
    sim = ClickSimulator(gt)
    pred: np.ndarray | None = None
    logits: np.ndarray | None = None
    ious: list[float] = []
    latencies: list[float] = []
    for k in range(max_clicks):
        check(cancel)
        point = sim.next_click(pred)
        if point is None:  # perfect already: every later click keeps the same mask
            break
        use_multi = multimask == "always" or (multimask == "first" and k == 0)
        points = tuple(Point(p.x + x0, p.y + y0, p.positive) for p in sim.clicks)
        prompt = Prompt(points=points, mask_input=logits, multimask=use_multi,
                        view=None if view is None else Box(*map(float, view)))
        t0 = time.perf_counter()
        result = predictor.predict(key, prompt)
        latencies.append(time.perf_counter() - t0)
        chosen = result.best
        outside = 0
        if window is None:
            pred = result.mask(chosen)
        else:
            pred, outside = _window_of(result, chosen, window)
        logits = result.logits_for(chosen)
        ious.append(_iou_with_outside(pred, gt, outside))
        if k + 1 >= 5 and ious[-1] >= max(THRESHOLDS):
            break
    return ImageEval(
        name=name,
        ious=ious,
        clicks=[(p.x + x0, p.y + y0, p.positive) for p in sim.clicks],
        noc85=noc(ious, 0.85, max_clicks),
        noc90=noc(ious, 0.90, max_clicks),
        encode_s=encode_s,
        latencies_s=latencies,
    )


def _iou_with_outside(pred: np.ndarray, gt: GroundTruth, outside: int) -> float:
    """``iou`` with ``outside`` more predicted pixels beyond the ground truth's array."""
    if outside == 0:
        return iou(pred, gt)
    keep = ~gt.ignore
    a, b = pred & keep, gt.mask & keep
    return int(np.count_nonzero(a & b)) / (int(np.count_nonzero(a | b)) + outside)


def dataset_items(dataset_dir: Path | str) -> list[tuple[str, Path, Path]]:
    """(name, image path, mask path) of every image of ``dataset_dir/images`` with a mask."""
    root = Path(dataset_dir)
    images_dir, masks_dir = root / "images", root / "masks"
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise DatasetError(
                f"{root}: not an evaluation dataset (no {folder.name}/ folder); "
                "expected images/NAME.jpg|png and masks/NAME.png"
            )
    items = []
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mask_path = masks_dir / f"{path.stem}.png"
        if not mask_path.is_file():
            raise DatasetError(f"{path}: no ground-truth mask {mask_path}")
        items.append((path.stem, path, mask_path))
    if not items:
        raise DatasetError(f"{images_dir}: no images")
    return items


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), read as the app reads it (``load_image``)."""
    return load_image(path)


def read_ground_truth(path: Path, shape: tuple[int, int]) -> GroundTruth:
    """A 255/128/0 mask file; it must have the image's size."""
    return GroundTruth.from_label_image(read_labels(path, shape))


def read_labels(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A 255/128/0 mask file as uint8 labels; it must have the image's size."""
    try:
        with path.open("rb") as f:
            known = sniff_format(f.read(16)) is not None  # OpenCV reads any format it knows
    except OSError as exc:
        raise ImageError(f"{path}: cannot read mask: {exc.strerror or exc}") from exc
    if not known:
        raise ImageError(f"{path}: cannot read mask: not a PNG, JPEG, WebP, BMP, TIFF or GIF")
    labels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if labels is None:
        raise ImageError(f"{path}: cannot read mask")
    if labels.shape != shape:
        raise DatasetError(f"{path}: mask is {labels.shape[::-1]}, image is {shape[::-1]}")
    return labels


def evaluate(
    predictor: ClickPredictor,
    dataset_dir: Path | str,
    max_clicks: int = 20,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    limit: int | None = None,
    multimask: str = "first",
) -> EvalReport:
    """Evaluate ``predictor`` on ``dataset_dir`` (images/ and masks/) with the RITM protocol."""
    if max_clicks < 1:
        raise ValueError("max_clicks must be at least 1")
    items = dataset_items(dataset_dir)
    if limit is not None:
        items = items[:limit]
    t_start = time.perf_counter()
    rows: list[ImageEval] = []
    for i, (name, image_path, mask_path) in enumerate(items):
        check(cancel)
        if progress is not None:
            progress(i, len(items), name)
        image = read_rgb(image_path)
        gt = read_ground_truth(mask_path, image.shape[:2])
        rows.append(
            evaluate_image(predictor, image, gt, name, max_clicks, cancel, multimask=multimask)
        )
    if progress is not None:
        progress(len(items), len(items), "done")
    wall = time.perf_counter() - t_start
    return EvalReport(summarize(rows, predictor.model_id, max_clicks, wall), rows)


# ---------------------------------------------------------------- the mosaic (issue 16)
