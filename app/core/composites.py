"""Synthetic composites for the "find all like this" benchmark, built from real photographs
with ground-truth masks (a folder laid out like the GrabCut benchmark: images/, masks/).

Each composite is one photograph as background with objects cut out of other photographs
(their masks as alpha) pasted at random places and scales: ``copies`` copies of one object
(the target: one copy serves as the exemplar, the others are what should be found) plus
``distractors`` other objects. Pasted objects do not overlap, so every ground-truth mask is
whole. Everything follows one seeded RNG: the same arguments give the same composites.

The photographs are split into two seeded halves (``split_names``) so that a method's
parameters can be tuned on composites of one half and reported on the other's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.errors import MaskLoopError
from app.core.evaluation import dataset_items, read_rgb

SPLITS = ("tune", "test", "all")


class CompositeError(MaskLoopError):
    """The photographs cannot make composites (too few, an empty mask...)."""


@dataclass(frozen=True)
class CutOut:
    """An object cut out of a photograph: its pixels (RGB) and alpha in [0, 1] (1 on the
    mask's object, 0.5 on its ignored band, 0 elsewhere), cropped to the object's box."""

    name: str
    rgb: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32


@dataclass(frozen=True)
class Placed:
    """One pasted object: which photograph it came from, its mask in the composite and box
    (x0, y0, x1, y1; x1, y1 exclusive)."""

    name: str
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Composite:
    """A background with pasted objects: ``copies`` of the target object (the first is the
    exemplar) and ``distractors`` (other objects)."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    background: str
    copies: tuple[Placed, ...]
    distractors: tuple[Placed, ...]

    @property
    def exemplar(self) -> Placed:
        return self.copies[0]

    @property
    def targets(self) -> tuple[Placed, ...]:
        """The copies to be found: every copy but the exemplar."""
        return self.copies[1:]


@dataclass(frozen=True)
class CompositeSpec:
    """How composites are made: the background's longest side in pixels, the pasted
    objects' longest side as a fraction of it (drawn uniformly per copy), how many copies
    of the target and how many distractors, how many placements are tried per object."""

    side: int = 640
    object_size: tuple[float, float] = (0.14, 0.26)
    copies: int = 3
    distractors: int = 2
    tries: int = 200


def split_names(names: Sequence[str], split: str, seed: int = 0) -> list[str]:
    """The photographs of one half: a seeded permutation of the sorted names, its first half
    "tune", the rest "test"; "all" keeps every name."""
    if split not in SPLITS:
        raise CompositeError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    ordered = sorted(names)
    if split == "all":
        return ordered
    order = np.random.default_rng(seed).permutation(len(ordered))
    half = len(ordered) // 2
    chosen = order[:half] if split == "tune" else order[half:]
    return [ordered[i] for i in sorted(chosen)]


def cut_out(name: str, image: np.ndarray, labels: np.ndarray) -> CutOut:
    """The object of a 255 / 128 / 0 mask, cropped to its box."""
    alpha = np.where(labels == 255, 1.0, np.where(labels == 128, 0.5, 0.0)).astype(np.float32)
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        raise CompositeError(f"{name}: the mask has no object")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return CutOut(name, image[y0:y1, x0:x1].copy(), alpha[y0:y1, x0:x1].copy())


def load_photos(dataset: Path | str, names: Sequence[str] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, CutOut]]:
    """The photographs of ``dataset`` (images/ and masks/) and their cut-out objects, only
    those in ``names`` when given."""
    from app.core.evaluation import read_ground_truth

    photos: dict[str, np.ndarray] = {}
    cuts: dict[str, CutOut] = {}
    wanted = None if names is None else set(names)
    for name, image_path, mask_path in dataset_items(dataset):
        if wanted is not None and name not in wanted:
            continue
        image = read_rgb(image_path)
        gt = read_ground_truth(mask_path, image.shape[:2])
        labels = np.where(gt.ignore, 128, np.where(gt.mask, 255, 0)).astype(np.uint8)
        photos[name] = image
        cuts[name] = cut_out(name, image, labels)
    return photos, cuts


def _resized_background(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _scaled(cut: CutOut, longest: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = cut.alpha.shape
    scale = longest / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(cut.rgb, size, interpolation=interp)
    alpha = cv2.resize(cut.alpha, size, interpolation=cv2.INTER_LINEAR)
    return rgb, alpha


def _paste(canvas: np.ndarray, taken: np.ndarray, rgb: np.ndarray, alpha: np.ndarray,
           rng: np.random.Generator, tries: int
           ) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Blend ``rgb`` with ``alpha`` into ``canvas`` where its box does not touch ``taken``
    (boxes of earlier objects, grown by a margin); its mask and box, None if no place fits."""
    big_h, big_w = canvas.shape[:2]
    h, w = alpha.shape
    if h >= big_h or w >= big_w:
        return None
    margin = 4
    for _ in range(tries):
        y0 = int(rng.integers(0, big_h - h + 1))
        x0 = int(rng.integers(0, big_w - w + 1))
        if taken[max(0, y0 - margin):y0 + h + margin, max(0, x0 - margin):x0 + w + margin].any():
            continue
        region = canvas[y0:y0 + h, x0:x0 + w].astype(np.float32)
        a = alpha[..., None]
        canvas[y0:y0 + h, x0:x0 + w] = np.clip(a * rgb + (1 - a) * region + 0.5, 0, 255
                                               ).astype(np.uint8)
        mask = np.zeros((big_h, big_w), dtype=bool)
        mask[y0:y0 + h, x0:x0 + w] = alpha >= 0.5
        taken[y0:y0 + h, x0:x0 + w] = True
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        return mask, box
    return None


def make_composite(name: str, background: tuple[str, np.ndarray], target: CutOut,
                   others: Sequence[CutOut], spec: CompositeSpec,
                   rng: np.random.Generator) -> Composite | None:
    """One composite: ``spec.copies`` copies of ``target`` and one copy of each of
    ``others`` pasted into ``background`` (None when they do not all fit)."""
    canvas = _resized_background(background[1], spec.side)
    taken = np.zeros(canvas.shape[:2], dtype=bool)
    side = max(canvas.shape[:2])
    lo, hi = spec.object_size

    def place(cut: CutOut) -> Placed | None:
        longest = max(8, round(float(rng.uniform(lo, hi)) * side))
        rgb, alpha = _scaled(cut, longest)
        pasted = _paste(canvas, taken, rgb, alpha, rng, spec.tries)
        if pasted is None or not pasted[0].any():
            return None
        return Placed(cut.name, pasted[0], pasted[1])

    copies = [place(target) for _ in range(spec.copies)]
    distractors = [place(cut) for cut in others]
    if any(p is None for p in copies) or any(p is None for p in distractors):
        return None
    return Composite(name, canvas, background[0], tuple(copies),  # type: ignore[arg-type]
                     tuple(distractors))  # type: ignore[arg-type]


def build_composites(photos: dict[str, np.ndarray], cuts: dict[str, CutOut], count: int,
                     spec: CompositeSpec = CompositeSpec(), seed: int = 0
                     ) -> Iterator[Composite]:
    """``count`` composites from ``photos`` (backgrounds) and ``cuts`` (objects): each takes
    a background, a target object and ``spec.distractors`` other objects, all different
    photographs, drawn by a RNG seeded with ``seed``. Yields them one by one (each holds a
    full image). CompositeError when there are too few photographs."""
    names = sorted(cuts)
    if len(names) < spec.distractors + 2 or not photos:
        raise CompositeError(f"{len(names)} photographs cannot make composites with "
                             f"{spec.distractors} distractors (need {spec.distractors + 2})")
    rng = np.random.default_rng(seed)
    made = 0
    attempts = 0
    while made < count:
        attempts += 1
        if attempts > 20 * count + 20:
            raise CompositeError("the objects do not fit in the backgrounds: "
                                 "use smaller objects or fewer copies")
        picked = [names[i] for i in rng.permutation(len(names))[:spec.distractors + 2]]
        bg, target, others = picked[0], picked[1], picked[2:]
        comp = make_composite(f"composite_{made:03d}", (bg, photos[bg]), cuts[target],
                              [cuts[o] for o in others], spec, rng)
        if comp is not None:
            made += 1
            yield comp
