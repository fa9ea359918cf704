"""The image operations behind the classical (GrabCut) predictor: preparing an image,
turning a prompt into a GrabCut seed, running GrabCut, cleaning and scoring its result, and
converting masks to and from SAM-style low-res logits. See ``app.predict.classical.predictor``."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from app.core.types import LOW_RES, Box, Point, Prompt
from app.predict.base import PredictorError
from app.predict.classical.fill import fill_components

GRABCUT_SEED = 0x5EED  # see run_grabcut: deterministic colour models


@dataclass(frozen=True)
class PreparedImage:
    """What GrabCut needs of one image, computed once by ``embed``."""

    image: np.ndarray  # (h, w, 3) uint8 BGR, downscaled so that max(h, w) <= max_side
    scale: float  # small / original
    size: tuple[int, int]  # original (H, W)
    gradient: np.ndarray  # (h, w) float32 colour gradient magnitude of the small image
    gradient_ref: float  # a high percentile of the gradient, to normalise edge scores
    lab: np.ndarray  # (h, w, 3) float32 Lab of the small image
    smooth: np.ndarray  # (h, w, 3) uint8 BGR, slightly blurred (for the watershed)
    fill: np.ndarray  # (h, w) int32 uniform fill areas, 0 elsewhere (``fill.py``)

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + self.gradient.nbytes + self.lab.nbytes
                   + self.smooth.nbytes + self.fill.nbytes)


def prepare_image(image: np.ndarray, max_side: int) -> PreparedImage:
    """Downscale ``image`` (RGB uint8) and compute its gradient and Lab colours."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PredictorError(f"expected an RGB uint8 (H, W, 3) image, got {image.shape}")
    big_h, big_w = image.shape[:2]
    scale = min(1.0, max_side / max(big_h, big_w))
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if scale < 1.0:
        size = (max(1, round(big_w * scale)), max(1, round(big_h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)
    smooth = cv2.GaussianBlur(lab, (0, 0), 1.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    grad = np.sqrt((gx * gx + gy * gy).sum(axis=2)).astype(np.float32)
    ref = float(np.percentile(grad, 90)) + 1e-6
    blurred = cv2.GaussianBlur(bgr, (0, 0), 1.0)
    return PreparedImage(bgr, scale, (big_h, big_w), grad, ref, lab, blurred,
                         fill_components(bgr))


def image_key_hash(image: np.ndarray) -> str:
    """A hash of the pixels (when no file content hash is given)."""
    digest = hashlib.sha256()
    digest.update(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- logits <-> masks


def mask_to_logits(mask: np.ndarray, clip: float = 20.0) -> np.ndarray:
    """A (h, w) bool mask as SAM-style (256, 256) logits of the padded square frame:
    the signed distance to the boundary in 256-frame pixels (positive inside), clipped."""
    h, w = mask.shape
    side = max(h, w)
    m = mask.astype(np.uint8)
    inside = np.minimum(cv2.distanceTransform(m, cv2.DIST_L2, 3), 2 * side)
    outside = np.minimum(cv2.distanceTransform(1 - m, cv2.DIST_L2, 3), 2 * side)
    signed = np.where(mask, inside, -outside).astype(np.float32) * (LOW_RES / side)
    square = np.full((side, side), -clip, dtype=np.float32)
    square[:h, :w] = signed
    small = cv2.resize(square, (LOW_RES, LOW_RES), interpolation=cv2.INTER_AREA)
    return np.clip(small, -clip, clip).astype(np.float32)


def logits_to_frame(logits: np.ndarray, h: int, w: int) -> np.ndarray:
    """(1, 256, 256) or (256, 256) logits of the padded square frame -> (h, w) float32."""
    low = np.asarray(logits, dtype=np.float32).reshape(LOW_RES, LOW_RES)
    side = max(h, w)
    square = cv2.resize(low, (side, side), interpolation=cv2.INTER_LINEAR)
    return square[:h, :w]


def upscale_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A small bool mask at the original (H, W), through a smoothed signed field."""
    big_h, big_w = size
    if mask.shape == (big_h, big_w):
        return mask.copy()
    field = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7) - 0.5
    return cv2.resize(field, (big_w, big_h), interpolation=cv2.INTER_LINEAR) > 0.0


# ---------------------------------------------------------------- seeding


@dataclass(frozen=True)
class GrabCutParams:
    """Tunable sizes are fractions of the small image's longest side."""

    max_side: int = 512
    click_radius: float = 0.012  # definite disc around each click
    local_radius: float = 0.15  # around the newest click a previous mask is only "probable"
    band: float = 0.03  # a previous mask is "probable" this close to its boundary
    zone_factor: float = 2.0  # ... or this times the newest click's depth in its error
    max_zone: float = 0.6
    sure_prior: bool = True  # the core of a previous mask outside the zone is definite
    sure_basin: bool = True  # the newest click's watershed basin in its zone is definite
    first_disc: float = 0.16  # clicks alone: probable object in discs this big (0: watershed)
    margin: float = 0.12  # crop margin around the undecided pixels
    iterations: int = 4
    early_iterations: int = 1


def pixel_of(point: Point, scale: float, h: int, w: int) -> tuple[int, int]:
    col = min(w - 1, max(0, int(point.x * scale)))
    row = min(h - 1, max(0, int(point.y * scale)))
    return col, row


def _box_slices(box: Box, scale: float, h: int, w: int) -> tuple[slice, slice]:
    b = box.normalized()
    c0, r0 = max(0, int(np.floor(b.x0 * scale))), max(0, int(np.floor(b.y0 * scale)))
    c1, r1 = min(w, int(np.ceil(b.x1 * scale))), min(h, int(np.ceil(b.y1 * scale)))
    return slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))


def _flood(prep: PreparedImage, markers: np.ndarray) -> np.ndarray:
    """Watershed of ``markers`` (0 = unknown) over the image: the label of every pixel."""
    flooded = markers.astype(np.int32)
    cv2.watershed(prep.smooth, flooded)
    return flooded


def _click_zone(prompt: Prompt, prep: PreparedImage, prior: np.ndarray,
                dist_in: np.ndarray, dist_out: np.ndarray,
                params: GrabCutParams) -> tuple[tuple[int, int], int] | None:
    """Centre and radius of the region the newest click may change in a previous mask: at
    least ``local_radius``, and ``zone_factor`` times the click's distance to the mask's
    boundary when the click is on the wrong side of it (it sits in an error region that
    is probably that big)."""
    if not prompt.points:
        return None
    h, w = prior.shape
    side = max(h, w)
    newest = prompt.points[-1]
    col, row = pixel_of(newest, prep.scale, h, w)
    wrong_side = dist_out[row, col] if newest.positive else dist_in[row, col]
    radius = max(params.local_radius * side, params.zone_factor * float(wrong_side))
    return (col, row), round(min(radius, params.max_zone * side))


def build_seed(prep: PreparedImage, prompt: Prompt, params: GrabCutParams) -> np.ndarray:
    """The GrabCut label image (GC_BGD / GC_FGD / GC_PR_BGD / GC_PR_FGD) for ``prompt``.

    Probable foreground is the watershed basin of the positive clicks (and of the core of a
    previous mask) against the negative clicks, the image border, the outside of the box
    and the core of the previous mask's background.
    """
    h, w = prep.image.shape[:2]
    side = max(h, w)
    r_click = max(2, round(params.click_radius * side))
    pos = [pixel_of(p, prep.scale, h, w) for p in prompt.points if p.positive]
    neg = [pixel_of(p, prep.scale, h, w) for p in prompt.points if not p.positive]
    allowed = np.ones((h, w), dtype=bool)
    if prompt.box is not None:
        allowed[:] = False
        rows, cols = _box_slices(prompt.box, prep.scale, h, w)
        allowed[rows, cols] = True
    markers = np.zeros((h, w), dtype=np.uint8)
    # cv2.watershed overwrites the outermost pixels with -1: seed the frame one pixel inside
    frame = np.zeros((h, w), dtype=bool)
    frame[:2, :] = frame[-2:, :] = frame[:, :2] = frame[:, -2:] = True
    sure = np.zeros((h, w), dtype=np.uint8)  # 1 object, 2 background (from a previous mask)
    zone_mask = np.zeros((h, w), dtype=np.uint8)
    if prompt.mask_input is not None:
        frame_logits = logits_to_frame(prompt.mask_input, h, w)
        prior = frame_logits > 0.0
        unknown = np.isnan(frame_logits)  # the previous mask says nothing there (see below)
        band = max(2.0, params.band * side)
        m = prior.astype(np.uint8)
        dist_in = cv2.distanceTransform(m, cv2.DIST_L2, 3)
        dist_out = cv2.distanceTransform(1 - m, cv2.DIST_L2, 3)
        sure[prior & (dist_in > band)] = 1
        sure[~prior & ~unknown & (dist_out > band)] = 2
        zone = _click_zone(prompt, prep, prior, dist_in, dist_out, params)
        if zone is not None:
            cv2.circle(sure, zone[0], max(r_click, zone[1]), 0, -1)
            cv2.circle(zone_mask, zone[0], max(r_click, zone[1]), 1, -1)
        markers[sure > 0] = sure[sure > 0]
        markers[frame & ~prior & ~unknown & (markers == 0)] = 2
    else:
        markers[frame] = 2
        if prompt.box is not None:
            markers[:] = 0
    markers[~allowed] = 2
    for col, row in neg:
        cv2.circle(markers, (col, row), r_click, 2, -1)
    for col, row in pos:
        cv2.circle(markers, (col, row), r_click, 1, -1)
    newest_basin = None
    if zone_mask.any() and params.sure_basin:
        newest = prompt.points[-1]
        cv2.circle(markers, pixel_of(newest, prep.scale, h, w), r_click, 3, -1)
        flooded = _flood(prep, markers)
        newest_basin = (flooded == 3) & (zone_mask > 0), newest.positive
        basin = (flooded == 1) | ((flooded == 3) & newest.positive)
    elif prompt.box is None and prompt.mask_input is None and params.first_disc > 0:
        basin = np.zeros((h, w), dtype=np.uint8)
        for col, row in pos:
            cv2.circle(basin, (col, row), round(params.first_disc * side), 1, -1)
        basin = basin > 0
    elif (markers == 1).any() and (markers == 2).any():
        basin = _flood(prep, markers) == 1
    elif prompt.box is not None:
        basin = allowed.copy()
    else:
        basin = markers == 1
    seed = np.where(basin, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    if params.sure_prior:
        seed[sure == 1] = cv2.GC_FGD
        seed[sure == 2] = cv2.GC_BGD
    if newest_basin is not None:
        seed[newest_basin[0]] = cv2.GC_FGD if newest_basin[1] else cv2.GC_BGD
    seed[~allowed] = cv2.GC_BGD
    for col, row in neg:
        cv2.circle(seed, (col, row), r_click, int(cv2.GC_BGD), -1)
    for col, row in pos:
        cv2.circle(seed, (col, row), r_click, int(cv2.GC_FGD), -1)
    return seed


# ---------------------------------------------------------------- GrabCut and clean-up


def _is_fg(labels: np.ndarray) -> np.ndarray:
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _crop_of(seed: np.ndarray, margin: int,
             bounds: tuple[slice, slice] | None = None) -> tuple[slice, slice]:
    undecided = (seed == cv2.GC_PR_FGD) | (seed == cv2.GC_PR_BGD) | (seed == cv2.GC_FGD)
    rows, cols = np.nonzero(undecided)
    h, w = seed.shape
    rows_in, cols_in = bounds if bounds is not None else (slice(None), slice(None))
    (lo_r, hi_r, _), (lo_c, hi_c, _) = rows_in.indices(h), cols_in.indices(w)
    if rows.size == 0:
        return slice(lo_r, hi_r), slice(lo_c, hi_c)
    r0, r1 = max(lo_r, rows.min() - margin), min(hi_r, rows.max() + 1 + margin)
    c0, c1 = max(lo_c, cols.min() - margin), min(hi_c, cols.max() + 1 + margin)
    if r1 <= r0 or c1 <= c0:
        return slice(lo_r, hi_r), slice(lo_c, hi_c)
    return slice(r0, r1), slice(c0, c1)


def run_grabcut(prep: PreparedImage, seed: np.ndarray, params: GrabCutParams,
                bounds: tuple[slice, slice] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """GrabCut on a crop around the undecided pixels (within ``bounds`` when given: the
    content around the clicks, see ``fill.py``).

    Returns the foreground after ``early_iterations`` and after ``iterations`` (small frame).
    """
    h, w = seed.shape
    rows, cols = _crop_of(seed, max(8, round(params.margin * max(h, w))), bounds)
    crop = seed[rows, cols].copy()
    fg_any = _is_fg(crop).any()
    bg_any = (~_is_fg(crop)).any()
    base = _is_fg(seed)
    if not fg_any:
        return base, base
    if not bg_any:  # GrabCut needs background samples: treat the crop's frame as probable
        crop[0, :] = crop[-1, :] = crop[:, 0] = crop[:, -1] = cv2.GC_PR_BGD
        crop[seed[rows, cols] == cv2.GC_FGD] = cv2.GC_FGD
        if not (~_is_fg(crop)).any():
            return base, base
    image = np.ascontiguousarray(prep.image[rows, cols])
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    results = []
    try:
        # GrabCut's colour models start from k-means on this thread's RNG: seeded, the same
        # image and prompt give the same mask whatever ran before (in this process or not)
        cv2.setRNGSeed(GRABCUT_SEED)
        cv2.grabCut(image, crop, (0, 0, 0, 0), bgd, fgd, params.early_iterations,
                    cv2.GC_INIT_WITH_MASK)
        results.append(_is_fg(crop))
        rest = params.iterations - params.early_iterations
        if rest > 0:
            cv2.grabCut(image, crop, (0, 0, 0, 0), bgd, fgd, rest, cv2.GC_EVAL)
        results.append(_is_fg(crop))
    except cv2.error:  # degenerate colour models (e.g. a flat image): keep the seed
        return base, base
    outs = []
    for fg in results:
        full = base.copy()
        full[rows, cols] = fg
        outs.append(full)
    return outs[0], outs[1]


def keep_connected(mask: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """The components of ``mask`` touching a ``sure`` pixel (positive clicks, the core of a
    previous mask); the largest one when there is none."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    keep = set(np.unique(labels[sure & mask]).tolist()) - {0}
    if not keep:
        areas = np.bincount(labels.ravel(), minlength=count)
        areas[0] = 0
        keep = {int(np.argmax(areas))}
    return np.isin(labels, list(keep))


def content_bounds(ignored: np.ndarray, keep: np.ndarray) -> tuple[slice, slice] | None:
    """The rectangle around the content (``keep_connected`` parts of what is not
    ``ignored``) joined to a ``keep`` pixel: where GrabCut may look (``fill.py``). None when
    nothing is ignored or no kept pixel lies in content."""
    content = ~ignored
    if content.all() or not (keep & content).any():
        return None
    x, y, w, h = cv2.boundingRect(keep_connected(content, keep).astype(np.uint8))
    return slice(y, y + h), slice(x, x + w)


def fill_small_holes(mask: np.ndarray, max_area: int,
                     keep_open: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """Fill background components enclosed by the mask and smaller than ``max_area``,
    except those containing a ``keep_open`` pixel (negative clicks)."""
    if max_area <= 0:
        return mask
    inv = (~mask).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if count <= 1:
        return mask
    h, w = mask.shape
    small = np.zeros(count, dtype=bool)
    for i in range(1, count):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        small[i] = area <= max_area and not touches
    for col, row in keep_open:
        small[labels[row, col]] = False
    return mask | small[labels]


def smooth_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening then closing with a disc of ``radius``."""
    if radius < 1:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    m: np.ndarray = mask.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    return m.astype(bool)


def edge_score(prep: PreparedImage, mask: np.ndarray,
               window: tuple[slice, slice] | None = None) -> float:
    """Confidence in [0, 1]: boundary gradient relative to the image's strong edges (half)
    and colour contrast across the boundary (half). 0 for an empty or full mask.

    ``window``: ``mask`` is this crop of the image (it must hold the whole mask plus a margin).
    """
    if not mask.any() or mask.all():
        return 0.0
    grad, lab = prep.gradient, prep.lab
    if window is not None:
        grad, lab = grad[window], lab[window]
    m: np.ndarray = mask.astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = m & (1 - np.asarray(cv2.erode(m, kernel)))
    ring_in = (m - cv2.erode(m, kernel, iterations=3)).astype(bool)
    ring_out = (cv2.dilate(m, kernel, iterations=3) - m).astype(bool)
    edge = float(grad[inner.astype(bool)].mean()) / prep.gradient_ref
    if not ring_in.any() or not ring_out.any():
        return 0.0
    diff = float(np.linalg.norm(lab[ring_in].mean(0) - lab[ring_out].mean(0)))
    return 0.5 * min(1.0, edge) + 0.5 * diff / (diff + 15.0)
