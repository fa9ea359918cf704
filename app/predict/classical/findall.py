"""Find all like this without a model: colour template matching over scales seeds GrabCut.

Each positive exemplar becomes a template: its pixels in the prepared (downscaled) image and
its shape (the exemplar's mask, or GrabCut's mask inside its box when only a box is given).
The template is matched against the searched image at ``scale_steps`` scales with OpenCV's
masked normalised cross-correlation (``TM_CCOEFF_NORMED`` over the BGR channels, only the
object's pixels counting, so the exemplar's own background does not have to match); the
local maxima of every scale's map are candidates, scored by that correlation and the
correlation of colour histograms; a suppression across scales keeps the best of candidates
lying mostly in one another. Each candidate seeds GrabCut (the classical predictor's
``run_grabcut``): the template's mask shrunk is definite object, the template's mask
probable object, a ring around its box probable background, the rest background. A
negative exemplar lowers a
found object's score by how much more it resembles the object than the positive does
(``- max(0, neg - pos)``, both compared on the object's box).

Template matching is written with OpenCV (``cv2.matchTemplate``); the peak picking and the
seed are the few lines OpenCV has no function for.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress, check
from app.core.nms import box_iou, mask_nms, nms
from app.core.types import Box, MaskProposal, Prompt
from app.predict.base import Exemplar, FindQuery, PredictorError
from app.predict.classical.ops import (
    GrabCutParams,
    PreparedImage,
    build_seed,
    fill_small_holes,
    keep_connected,
    prepare_image,
    run_grabcut,
    upscale_mask,
)


@dataclass(frozen=True)
class MatchParams:
    """The knobs of the matching (chosen on the "tune" half of the composite benchmark).

    Scales are the found object's size relative to the exemplar's, ``scale_steps`` of them
    spread geometrically over ``scale_range``; templates smaller than ``min_side`` pixels
    (prepared image) are skipped; ``peak_radius`` (a fraction of the template's shorter
    side) is how far apart two peaks of one map must be, and peaks under
    ``candidate_floor`` are not candidates; a candidate whose box lies more than
    ``box_overlap`` inside a better one's is the same. The similarity is ``colour_weight``
    parts colour histogram correlation and the rest shape-and-texture correlation; the score
    maps a similarity of ``cut`` to 0.5 and 1 to 1 (FindQuery's threshold 0.5 then keeps
    what is at least ``cut`` similar). ``core`` is the fraction of the template's shape (by
    distance to its edge) that is definite object in GrabCut's seed, ``ring`` the margin
    around the candidate's box (a fraction of its size) where GrabCut may look."""

    scale_range: tuple[float, float] = (0.4, 2.5)
    scale_steps: int = 17
    min_side: int = 6
    peak_radius: float = 0.35
    candidate_floor: float = 0.5
    box_overlap: float = 0.5
    colour_weight: float = 0.3
    cut: float = 0.75
    core: float = 0.35
    ring: float = 0.25

    def score(self, similarity: float) -> float:
        """A similarity in [-1, 1] as a score in [0, 1] (``cut`` -> 0.5)."""
        return float(np.clip(0.5 + (similarity - self.cut) / (2 * (1 - self.cut)), 0.0, 1.0))


@dataclass(frozen=True)
class Template:
    """An exemplar as the matching uses it: BGR pixels (float32), its shape (uint8 0/1),
    cropped to the exemplar's box in the prepared image of ``scale``, and the colour
    histogram of its shape (``colour_histogram``)."""

    pixels: np.ndarray
    shape: np.ndarray
    scale: float  # the prepared image's size / the original's
    histogram: np.ndarray


@dataclass(frozen=True)
class Candidate:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in the prepared image
    similarity: float  # see MatchParams
    template: int  # which positive template matched
    size: tuple[int, int]  # (h, w) of the resized template


def colour_histogram(lab: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """An 8 x 8 x 8 Lab histogram of the pixels where ``shape`` is 1, normalised."""
    hist = cv2.calcHist([np.ascontiguousarray(lab, dtype=np.float32)], [0, 1, 2],
                        np.ascontiguousarray(shape, dtype=np.uint8), [8, 8, 8],
                        [0, 100, -128, 128, -128, 128])
    return np.asarray(cv2.normalize(hist, hist), dtype=np.float32).ravel()


def exemplar_template(exemplar: Exemplar, prep: PreparedImage, params: GrabCutParams
                      ) -> Template:
    """The template of ``exemplar`` in ``prep`` (the prepared picture it lies in)."""
    h, w = prep.image.shape[:2]
    s = prep.scale
    x0, y0, x1, y1 = exemplar.box
    c0, r0 = max(0, int(np.floor(min(x0, x1) * s))), max(0, int(np.floor(min(y0, y1) * s)))
    c1, r1 = min(w, int(np.ceil(max(x0, x1) * s))), min(h, int(np.ceil(max(y0, y1) * s)))
    if c1 - c0 < 2 or r1 - r0 < 2:
        raise PredictorError(f"exemplar box {exemplar.box} is too small or outside the image")
    if exemplar.mask is not None:
        mask = np.asarray(exemplar.mask, dtype=bool)
        if mask.shape != prep.size:
            raise PredictorError(f"exemplar mask is {mask.shape[::-1]}, its image is "
                                 f"{prep.size[::-1]}")
        small = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    else:  # only a box: GrabCut's object inside it
        seed = build_seed(prep, Prompt(box=Box(x0, y0, x1, y1)), params)
        small = run_grabcut(prep, seed, params)[1]
    shape = small[r0:r1, c0:c1].astype(np.uint8)
    if shape.sum() < 4:
        shape = np.ones_like(shape)
    pixels = prep.image[r0:r1, c0:c1].astype(np.float32)
    return Template(pixels, shape, s, colour_histogram(prep.lab[r0:r1, c0:c1], shape))


def _match(image: np.ndarray, tpl: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Masked normalised cross-correlation map (NaN and infinities as -1)."""
    result = cv2.matchTemplate(image, tpl, cv2.TM_CCOEFF_NORMED, mask=shape)
    return np.nan_to_num(result, nan=-1.0, posinf=-1.0, neginf=-1.0)


def _peaks(score: np.ndarray, radius: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the local maxima of ``score`` at least ``floor``."""
    size = 2 * max(1, radius) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    top = cv2.dilate(score, kernel)
    rows, cols = np.nonzero((score >= top) & (score >= floor))
    return rows, cols


def _resized(t: Template, factor: float) -> tuple[np.ndarray, np.ndarray] | None:
    h, w = t.shape.shape
    size = (round(w * factor), round(h * factor))
    if min(size) < 2:
        return None
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    pixels = cv2.resize(t.pixels, size, interpolation=interp)
    shape = cv2.resize(t.shape, size, interpolation=cv2.INTER_NEAREST)
    if shape.sum() < 4:
        return None
    return pixels, shape


def find_candidates(image: PreparedImage, positives: list[Template], params: MatchParams,
                    cancel: CancelToken | None = None,
                    progress: Progress | None = None) -> list[Candidate]:
    """Candidate places of the positive templates in ``image`` (see the module docstring),
    best first, after the suppression across scales and templates."""
    bgr = image.image.astype(np.float32)
    h, w = bgr.shape[:2]
    lo, hi = params.scale_range
    factors = np.geomspace(lo, hi, max(1, params.scale_steps))
    found: list[Candidate] = []
    total = len(positives) * len(factors)
    for ti, t in enumerate(positives):
        for fi, f in enumerate(factors):
            check(cancel)
            if progress is not None:
                progress(ti * len(factors) + fi, total, "matching")
            resized = _resized(t, float(f) * image.scale / t.scale)
            if resized is None:
                continue
            pixels, shape = resized
            th, tw = shape.shape
            if th > h or tw > w or min(th, tw) < params.min_side:
                continue
            score = _match(bgr, pixels, shape)
            rows, cols = _peaks(score, round(params.peak_radius * min(th, tw)),
                                params.candidate_floor)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                colour = _colour_similarity(image.lab[r:r + th, c:c + tw], shape, t)
                sim = (1 - params.colour_weight) * float(score[r, c]) \
                    + params.colour_weight * colour
                found.append(Candidate((c, r, c + tw, r + th), sim, ti, (th, tw)))
    if not found:
        return []
    boxes = np.array([c.box for c in found], dtype=np.float64)
    # a weaker match mostly inside a better one (a part of it at another scale) is the same
    keep = nms([c.similarity for c in found],
               lambda i, rest: _overlap(boxes[i], boxes[rest]), params.box_overlap)
    return [found[i] for i in keep]


def _colour_similarity(lab: np.ndarray, shape: np.ndarray, t: Template) -> float:
    """Correlation of the colour histograms of a candidate (its pixels under ``shape``)
    and of the template."""
    return float(cv2.compareHist(t.histogram, colour_histogram(lab, shape),
                                 cv2.HISTCMP_CORREL))


def _overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over the smaller area of one (4,) box with each of (N, 4) boxes."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return ix * iy / np.maximum(1e-6, np.minimum(area, areas))


def region_similarity(image: PreparedImage, mask: np.ndarray, t: Template,
                      params: MatchParams) -> float:
    """How much the object ``mask`` (the prepared image's frame) resembles template ``t``:
    the template resized to the mask's box, compared as the matching compares."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return -1.0
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    size = (int(x1 - x0), int(y1 - y0))
    if min(size) < 2:
        return -1.0
    pixels = cv2.resize(t.pixels, size, interpolation=cv2.INTER_AREA)
    shape = cv2.resize(t.shape, size, interpolation=cv2.INTER_NEAREST)
    if shape.sum() < 4:
        return -1.0
    patch = image.image[y0:y1, x0:x1].astype(np.float32)
    ncc = float(_match(patch, pixels, shape)[0, 0])
    colour = _colour_similarity(image.lab[y0:y1, x0:x1], mask[y0:y1, x0:x1], t)
    return (1 - params.colour_weight) * ncc + params.colour_weight * colour


def with_negatives(similarity: float, image: PreparedImage, mask: np.ndarray,
                   positive: Template, negatives: list[Template], params: MatchParams) -> float:
    """``similarity`` lowered by how much more a negative template resembles the found
    object than the positive one does: ``- max(0, neg - pos)``."""
    if not negatives:
        return similarity
    pos = region_similarity(image, mask, positive, params)
    neg = max(region_similarity(image, mask, t, params) for t in negatives)
    return similarity - max(0.0, neg - pos)


def grabcut_candidate(image: PreparedImage, c: Candidate, t: Template, match: MatchParams,
                      params: GrabCutParams) -> np.ndarray:
    """GrabCut seeded by the template's shape at the candidate (the prepared image's frame)."""
    h, w = image.image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in c.box)
    th, tw = c.size
    shape = cv2.resize(t.shape, (tw, th), interpolation=cv2.INTER_NEAREST).astype(bool)
    seed = np.full((h, w), cv2.GC_BGD, dtype=np.uint8)
    gx, gy = round(match.ring * tw), round(match.ring * th)
    seed[max(0, y0 - gy):min(h, y1 + gy), max(0, x0 - gx):min(w, x1 + gx)] = cv2.GC_PR_BGD
    region = seed[y0:y1, x0:x1]
    region[shape] = cv2.GC_PR_FGD
    dist = cv2.distanceTransform(np.pad(shape, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    core = dist > (1.0 - match.core) * float(dist.max())
    region[core] = cv2.GC_FGD
    mask = run_grabcut(image, seed, params)[1]
    sure = seed == cv2.GC_FGD
    mask = keep_connected(mask, sure) if mask.any() else mask
    return fill_small_holes(mask, max(4, int(0.1 * shape.sum())))


def find_like(image: PreparedImage, query: FindQuery, prepare: PreparedFor,
              params: GrabCutParams, match: MatchParams = MatchParams(), *,
              cancel: CancelToken | None = None,
              progress: Progress | None = None) -> list[MaskProposal]:
    """Every object of ``image`` like the query's positive exemplars (and unlike its
    negative ones), best first: masks at the original size, the exemplars themselves left
    out. ``prepare(exemplar)`` gives the prepared picture an exemplar lies in."""
    positives = [exemplar_template(e, prepare(e), params) for e in query.positives]
    negatives = [exemplar_template(e, prepare(e), params) for e in query.negatives]
    candidates = [c for c in find_candidates(image, positives, match, cancel, progress)
                  if match.score(c.similarity) >= query.score_threshold]
    own = [e for e in query.positives if e.image is None]
    own_boxes = np.array([[v * image.scale for v in e.box] for e in own], dtype=np.float64)
    if own:  # not the exemplars themselves: a candidate mostly inside one is one
        candidates = [c for c in candidates if not _mostly_inside(c.box, own_boxes)]
    candidates = candidates[:max(0, query.max_results) * 2]
    prompt = query.describe()
    masks: list[np.ndarray] = []
    scores: list[float] = []
    for i, c in enumerate(candidates):
        check(cancel)
        if progress is not None:
            progress(i, len(candidates), "GrabCut")
        small = grabcut_candidate(image, c, positives[c.template], match, params)
        if not small.any():
            continue
        similarity = with_negatives(c.similarity, image, small, positives[c.template],
                                    negatives, match)
        if match.score(similarity) >= query.score_threshold:
            masks.append(small)
            scores.append(match.score(similarity))
    keep = mask_nms(masks, scores, query.nms_iou)[:max(0, query.max_results)]
    out = []
    for i in keep:
        big = upscale_mask(masks[int(i)], image.size)
        ys, xs = np.nonzero(big)
        if ys.size == 0:
            continue
        bbox = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        out.append(MaskProposal(big, float(scores[int(i)]), 1.0, bbox, prompt))
    if progress is not None:
        progress(1, 1, "done")
    return out


def _mostly_inside(box: tuple[float, float, float, float], others: np.ndarray) -> bool:
    """Over half of ``box`` lies in one of ``others`` (or they overlap by IoU > 0.5)."""
    b = np.asarray(box, dtype=np.float64)
    area = max(1e-6, (b[2] - b[0]) * (b[3] - b[1]))
    ix = np.clip(np.minimum(b[2], others[:, 2]) - np.maximum(b[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(b[3], others[:, 3]) - np.maximum(b[1], others[:, 1]), 0, None)
    return bool(np.any(ix * iy / area > 0.5) or np.any(box_iou(b, others) > 0.5))


class PreparedFor:
    """The prepared picture of each exemplar: the searched one, or its own ``image``
    (prepared once per distinct array)."""

    def __init__(self, searched: PreparedImage, max_side: int) -> None:
        self.searched = searched
        self.max_side = max_side
        self._others: dict[int, PreparedImage] = {}

    def __call__(self, exemplar: Exemplar) -> PreparedImage:
        if exemplar.image is None:
            return self.searched
        key = id(exemplar.image)
        if key not in self._others:
            self._others[key] = prepare_image(np.asarray(exemplar.image), self.max_side)
        return self._others[key]
