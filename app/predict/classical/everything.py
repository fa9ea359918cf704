""""Segment everything" without a model: merged watershed superpixels.

1. Superpixels: a watershed of the (slightly blurred) image from one marker per cell of a
   ``points_per_side`` x ``points_per_side`` grid, each placed at its cell's weakest gradient.
2. Regions: Felzenszwalb-Huttenlocher merging on the superpixel adjacency graph (edge weight =
   Lab colour distance of the superpixel means; merge while the weight is below both regions'
   internal difference + k / size), at several scales k: a hierarchy of coarser and coarser
   regions. Every region of every scale is a proposal.
3. Scores: ``score`` is the edge confidence of ``ops.edge_score`` (not an IoU); a
   proposal is kept when ``score >= pred_iou_thresh * SCORE_RELAX`` (clean objects score
   about 0.6-0.9 here, where SAM's predicted IoU would be about 0.9-1.0). ``stability`` is the
   IoU of the region with its best match at the neighbouring scales (a region that survives a
   change of scale is stable), kept when ``>= stability_score_thresh``.
4. Small islands and holes under ``min_mask_region_area`` are removed, regions smaller than it
   dropped, then greedy mask non-maximum suppression (IoU > 0.7), largest first.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress, check
from app.core.nms import mask_nms
from app.core.types import MaskProposal
from app.predict.base import EverythingOptions
from app.predict.classical.ops import PreparedImage, edge_score, fill_small_holes, upscale_mask

SCORE_RELAX = 0.7
SCALES = (30.0, 60.0, 120.0, 240.0, 480.0)
NMS_IOU = 0.7


def superpixels(prep: PreparedImage, points_per_side: int) -> np.ndarray:
    """(h, w) int32 labels 0..K-1 of watershed superpixels seeded on a grid."""
    h, w = prep.image.shape[:2]
    n = max(2, min(points_per_side, h // 4, w // 4))
    rows = np.linspace(0, h, n + 1).astype(int)
    cols = np.linspace(0, w, n + 1).astype(int)
    markers = np.zeros((h, w), dtype=np.int32)
    label = 1
    for r0, r1 in zip(rows[:-1], rows[1:], strict=True):
        for c0, c1 in zip(cols[:-1], cols[1:], strict=True):
            cell = prep.gradient[r0:r1, c0:c1]
            r, c = np.unravel_index(int(np.argmin(cell)), cell.shape)
            markers[r0 + r, c0 + c] = label
            label += 1
    cv2.watershed(cv2.GaussianBlur(prep.image, (0, 0), 1.0), markers)
    # watershed lines (-1) take the largest neighbouring label
    lines = markers <= 0
    grown = cv2.dilate(markers.astype(np.float32), np.ones((3, 3), np.uint8))
    markers[lines] = grown[lines].astype(np.int32)
    markers[markers <= 0] = 1
    _, inverse = np.unique(markers, return_inverse=True)
    return inverse.reshape(h, w).astype(np.int32)


def _adjacency(labels: np.ndarray) -> np.ndarray:
    """(E, 2) unique pairs (a < b) of 4-connected neighbouring labels."""
    pairs = [np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
             np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1)]
    both = np.concatenate(pairs)
    both = both[both[:, 0] != both[:, 1]]
    both.sort(axis=1)
    return np.unique(both, axis=0)


def merge_regions(labels: np.ndarray, lab: np.ndarray, k: float) -> np.ndarray:
    """Felzenszwalb-Huttenlocher merging of superpixels: (K,) region id per superpixel."""
    count = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(flat, lab[..., c].ravel(), count) for c in range(3)], 1)
    means = sums.astype(np.float64) / np.maximum(area, 1)[:, None]
    edges = _adjacency(labels)
    weights = np.linalg.norm(means[edges[:, 0]] - means[edges[:, 1]], axis=1)
    parent = np.arange(count)
    size = area.copy()
    internal = np.zeros(count)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for e in np.argsort(weights, kind="stable"):
        a, b = find(int(edges[e, 0])), find(int(edges[e, 1]))
        if a == b:
            continue
        wgt = float(weights[e])
        if wgt <= min(internal[a] + k / size[a] * 100.0, internal[b] + k / size[b] * 100.0):
            parent[b] = a
            size[a] += size[b]
            internal[a] = max(internal[a], internal[b], wgt)
    return np.array([find(i) for i in range(count)])


def propose_regions(
    prep: PreparedImage,
    options: EverythingOptions = EverythingOptions(),
    *,
    cancel: CancelToken | None = None,
    progress: Progress | None = None,
) -> list[MaskProposal]:
    """Region proposals of a prepared image (see the module docstring), largest first."""
    h, w = prep.image.shape[:2]
    min_area = max(1, int(options.min_mask_region_area * prep.scale * prep.scale))
    labels = superpixels(prep, options.points_per_side)
    levels: list[np.ndarray] = []  # per scale: (h, w) region label image
    for i, k in enumerate(SCALES):
        check(cancel)
        if progress is not None:
            progress(i, len(SCALES) + 1, "merging regions")
        levels.append(merge_regions(labels, prep.lab, k)[labels])
    level_areas = [np.bincount(level.ravel()) for level in levels]
    pad = 4
    candidates: list[tuple[np.ndarray, float, float]] = []
    seen: set[bytes] = set()
    for i, level in enumerate(levels):
        check(cancel)
        ids = np.nonzero(level_areas[i])[0]
        for rid in ids:
            area = int(level_areas[i][rid])
            if area < min_area or area > 0.95 * h * w:
                continue
            ys, xs = np.nonzero(level == rid)
            window = (slice(max(0, ys.min() - pad), min(h, ys.max() + 1 + pad)),
                      slice(max(0, xs.min() - pad), min(w, xs.max() + 1 + pad)))
            crop = fill_small_holes(level[window] == rid, min_area)
            digest = np.packbits(crop).tobytes() + str(window).encode()
            if digest in seen:
                continue
            seen.add(digest)
            stability = 0.0
            for j in (i - 1, i + 1):
                if 0 <= j < len(levels):
                    other = levels[j][window]
                    best = int(np.bincount(other[crop]).argmax())
                    inter = np.count_nonzero(crop & (other == best))
                    union = int(crop.sum()) + int(level_areas[j][best]) - inter
                    stability = max(stability, inter / union if union else 0.0)
            score = edge_score(prep, crop, window)
            if (score >= options.pred_iou_thresh * SCORE_RELAX
                    and stability >= options.stability_score_thresh):
                full = np.zeros((h, w), dtype=bool)
                full[window] = crop
                candidates.append((full, score, stability))
    kept = _nms(candidates)
    if progress is not None:
        progress(len(SCALES) + 1, len(SCALES) + 1, "done")
    proposals = []
    for mask, score, stability in kept:
        big = upscale_mask(mask, prep.size)
        if not big.any():
            continue
        ys, xs = np.nonzero(big)
        bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        proposals.append(MaskProposal(big, float(score), float(stability), bbox))
    proposals.sort(key=lambda p: int(p.mask.sum()), reverse=True)
    return proposals


Candidate = tuple[np.ndarray, float, float]  # (mask, score, stability)


def _nms(candidates: list[Candidate]) -> list[Candidate]:
    """Greedy non-maximum suppression by mask IoU, best score first."""
    keep = mask_nms([c[0] for c in candidates], [c[1] for c in candidates], NMS_IOU)
    return [candidates[i] for i in keep]
