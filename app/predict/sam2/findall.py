"""Find all like this with SAM2 and no service: the cached image embedding compared with the
exemplars' features, its peaks decoded as point prompts.

1. Each exemplar's feature: the mean of SAM2's image embedding (256 channels on a 64 x 64
   grid over the image, each location L2-normalised) inside the exemplar's mask (an
   accepted instance's), or inside the mask SAM2 decodes from its box (when that mask is
   empty or spills far beyond the box: the box itself). An exemplar in another picture
   (``Exemplar.image``) is pooled from that picture's embedding (encoded and cached once).
2. A similarity map: the cosine of every location of the searched embedding with the mean
   positive feature. Negative exemplars lower it where they resemble a location more than
   the positives do (``pos - max(0, neg - pos)``).
3. Peaks: local maxima (a window about half the exemplar's size) scoring at least
   ``query.score_threshold`` (the score is the similarity: 1 is the exemplar itself), not
   inside the exemplars of the searched image.
4. Each peak becomes a positive point prompt, decoded in a batch (``predict_batch``); of the
   three candidates the one whose area is closest to the exemplar's (weighted by SAM2's
   predicted IoU) is kept. Masks mostly inside a searched-image exemplar are dropped, then
   overlapping ones suppressed (mask NMS at ``query.nms_iou``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from app.core.jobs import CancelToken, Progress, check
from app.core.nms import mask_nms
from app.core.types import Box, EmbeddingKey, MaskProposal, Point, Prompt
from app.predict.base import Exemplar, FindQuery, PredictorError

if TYPE_CHECKING:
    from app.predict.sam2.predictor import SAM2Predictor

PEAK_WINDOW = 0.5  # peaks at least this fraction of the exemplar's size apart
BOX_SPILL = 1.5  # a box's decoded mask covering more than this times the box is not used
INSIDE = 0.5  # a mask with more than this fraction inside an exemplar is that exemplar


def _grid(key: EmbeddingKey, p: SAM2Predictor) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image embedding as (C, h, w) float32, L2-normalised per location, and the
    image's (H, W)."""
    feats = p.activate(key)
    emb = feats.image_embed[0].float()
    return F.normalize(emb, dim=0), feats.orig_hw


def _exemplar_mask(p: SAM2Predictor, key: EmbeddingKey, e: Exemplar,
                   hw: tuple[int, int]) -> np.ndarray:
    """The exemplar's pixels: its mask, else SAM2's mask of its box (else the box)."""
    h, w = hw
    x0, y0, x1, y1 = (float(v) for v in e.box)
    box = np.zeros((h, w), dtype=bool)
    box[max(0, int(min(y0, y1))):max(0, int(np.ceil(max(y0, y1)))),
        max(0, int(min(x0, x1))):max(0, int(np.ceil(max(x0, x1))))] = True
    if not box.any():
        raise PredictorError(f"exemplar box {e.box} lies outside the image ({w} x {h})")
    if e.mask is not None:
        mask = np.asarray(e.mask, dtype=bool)
        if mask.shape != (h, w):
            raise PredictorError(f"exemplar mask is {mask.shape[::-1]}, its image is {(w, h)}")
        return mask if mask.any() else box
    result = p.predict(key, Prompt(box=Box(x0, y0, x1, y1), multimask=False))
    decoded = result.masks[0] & box
    if not decoded.any() or result.masks[0].sum() > BOX_SPILL * box.sum():
        return box
    return decoded


def _pooled(grid: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """The mean of ``grid`` (C, h, w) inside ``mask`` (resized to the grid), normalised."""
    gh, gw = grid.shape[1:]
    small = cv2.resize(mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
    if small.max() <= 0:
        small = cv2.resize(mask.astype(np.float32), (gw, gh), interpolation=cv2.INTER_LINEAR)
    weights = torch.from_numpy(small).to(grid.device)
    if float(weights.sum()) <= 0:  # a sliver between grid points: its nearest location
        ys, xs = np.nonzero(mask)
        weights[int(ys.mean() * gh / mask.shape[0]), int(xs.mean() * gw / mask.shape[1])] = 1
    pooled = (grid * weights).sum(dim=(1, 2)) / weights.sum()
    return F.normalize(pooled, dim=0)


def _similarity(grid: torch.Tensor, feature: torch.Tensor) -> np.ndarray:
    """Cosine of every location of ``grid`` with ``feature``: (h, w) float32."""
    return torch.einsum("chw,c->hw", grid, feature).cpu().numpy().astype(np.float32)


def _peaks(score: np.ndarray, window: int, threshold: float) -> list[tuple[int, int, float]]:
    """(row, col, score) of the local maxima of ``score`` at least ``threshold``, best first."""
    size = 2 * max(1, window) + 1
    top = cv2.dilate(score, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    rows, cols = np.nonzero((score >= top) & (score >= threshold))
    found = [(int(r), int(c), float(score[r, c])) for r, c in zip(rows, cols, strict=True)]
    return sorted(found, key=lambda t: -t[2])


@dataclass(frozen=True)
class Peaks:
    """Where the searched image resembles the exemplars: ``points`` (x, y, score) in pixels,
    best first; the searched image's exemplars (``inside``, bool (H, W)) and the positive
    exemplars' mean area (a fraction of their images)."""

    points: list[tuple[float, float, float]]
    inside: np.ndarray
    area: float


def similarity_peaks(p: SAM2Predictor, key: EmbeddingKey, query: FindQuery, *,
                     cancel: CancelToken | None = None,
                     progress: Progress | None = None) -> Peaks:
    """Steps 1-3 of the module docstring: the peaks of the similarity map of ``key``'s
    image, at least ``query.score_threshold``, outside the exemplars."""
    features: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    own: list[np.ndarray] = []  # the masks of the exemplars in the searched image
    areas: list[float] = []  # the positive exemplars' areas as fractions of their images
    steps = len(query.exemplars) + 1
    for i, e in enumerate(query.exemplars):
        check(cancel)
        if progress is not None:
            progress(i, steps, "exemplars")
        ex_key = key if e.image is None else p.embed(np.asarray(e.image), cancel=cancel)
        grid, hw = _grid(ex_key, p)
        mask = _exemplar_mask(p, ex_key, e, hw)
        features[e.positive].append(_pooled(grid, mask))
        if e.positive:
            areas.append(float(mask.sum()) / (hw[0] * hw[1]))
        if e.image is None:
            own.append(mask)
    if not features[True]:
        raise PredictorError("find all like this needs at least one positive exemplar")
    grid, (h, w) = _grid(key, p)
    gh, gw = grid.shape[1:]
    score = _similarity(grid, F.normalize(torch.stack(features[True]).mean(0), dim=0))
    if features[False]:
        neg = np.max([_similarity(grid, f) for f in features[False]], axis=0)
        score = score - np.maximum(0.0, neg - score)
    area = float(np.mean(areas))
    window = round(PEAK_WINDOW * np.sqrt(area) * min(gh, gw))
    inside = np.zeros((h, w), dtype=bool)
    for m in own:
        inside |= m
    points = []
    for r, c, s in _peaks(score, window, query.score_threshold):
        x, y = (c + 0.5) * w / gw, (r + 0.5) * h / gh
        if not inside[min(h - 1, int(y)), min(w - 1, int(x))]:
            points.append((x, y, s))
    return Peaks(points, inside, area)


def find_like(p: SAM2Predictor, key: EmbeddingKey, query: FindQuery, *,
              cancel: CancelToken | None = None,
              progress: Progress | None = None) -> list[MaskProposal]:
    """Every object of ``key``'s image like the query's positive exemplars (see the module
    docstring), best first, the exemplars themselves left out."""
    peaks = similarity_peaks(p, key, query, cancel=cancel, progress=progress)
    steps = len(query.exemplars) + 1
    h, w = peaks.inside.shape
    chosen = peaks.points[:max(0, query.max_results) * 2]
    check(cancel)
    if progress is not None:
        progress(steps - 1, steps, "decoding")
    results = p.predict_batch([(key, Prompt(points=(Point(x, y, True),), multimask=True))
                               for x, y, _ in chosen])
    masks: list[np.ndarray] = []
    scores: list[float] = []
    for (_, _, s), result in zip(chosen, results, strict=True):
        fractions = np.array([result.mask(i).sum() for i in range(len(result.scores))],
                             dtype=np.float64) / (h * w)
        closeness = -np.abs(np.log((fractions + 1e-6) / (peaks.area + 1e-6)))
        best = int(np.argmax(closeness + np.asarray(result.scores, dtype=np.float64)))
        mask = result.mask(best)
        if not mask.any() or (mask & peaks.inside).sum() > INSIDE * mask.sum():
            continue
        masks.append(mask)
        scores.append(s)
    check(cancel)
    keep = mask_nms(masks, scores, query.nms_iou)[:max(0, query.max_results)]
    prompt = query.describe()
    out = []
    for i in keep:
        m = masks[int(i)]
        ys, xs = np.nonzero(m)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        out.append(MaskProposal(m, float(scores[int(i)]), 1.0, bbox, prompt))
    if progress is not None:
        progress(steps, steps, "done")
    return out
