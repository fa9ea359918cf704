"""Plain value types shared by every layer.

Coordinates are pixels of the (EXIF-oriented) original image: x right, y down, floats.
Boxes are (x0, y0, x1, y1) inside the core; other conventions are converted at the edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

Geometry: TypeAlias = Polygon | MultiPolygon

LOW_RES = 256  # side of SAM's low-resolution logits


class Source(StrEnum):
    """Where an instance's geometry came from."""

    MANUAL = "manual"
    SAM2 = "sam2"
    REMOTE = "remote"
    CLASSICAL = "classical"


class InstanceOrigin(StrEnum):
    """Whether a person stands behind an instance (the frames propagation starts from and
    must never overwrite) or propagation wrote it and nobody has reviewed it yet."""

    ANCHOR = "anchor"  # drawn, clicked, or a propagated one the person edited
    PROPAGATED = "propagated"  # written by propagation, not reviewed


class ImageStatus(StrEnum):
    NEW = "new"
    IN_PROGRESS = "in progress"
    DONE = "done"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Point:
    """A click: positive (left click) adds to the object, negative (right click) removes."""

    x: float
    y: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, corners (x0, y0) top-left and (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float

    def normalized(self) -> Box:
        """The same box with x0 <= x1 and y0 <= y1 (a drag can go any direction)."""
        return Box(min(self.x0, self.x1), min(self.y0, self.y1),
                   max(self.x0, self.x1), max(self.y0, self.y1))

    @property
    def width(self) -> float:
        return abs(self.x1 - self.x0)

    @property
    def height(self) -> float:
        return abs(self.y1 - self.y0)


@dataclass(frozen=True)
class Prompt:
    """What the person asked for: any mix of points, at most one box, and optionally the
    previous low-res logits (1 x 256 x 256 float32) to refine the chosen candidate.

    ``view``: the part of the image the person sees (image pixels), when known. It is not
    part of what was asked (not compared): a backend that fits its window to the prompt on a
    large image (the classical one, ``app/predict/tiles/region.py``) takes it as the scale of a
    click alone, whose object's size nothing else tells."""

    points: tuple[Point, ...] = ()
    box: Box | None = None
    mask_input: np.ndarray | None = field(default=None, compare=False)
    multimask: bool = True
    view: Box | None = field(default=None, compare=False)

    def is_empty(self) -> bool:
        return not self.points and self.box is None


class MaskResult:
    """Candidate masks for one prompt, best first is NOT implied: use ``best``.

    masks: (N, H, W) bool at full image resolution (N = 3 when multimask, else 1).
    scores: (N,) float32 predicted IoU of each candidate.
    low_res_logits: (N, 256, 256) float32 logits, fed back as ``Prompt.mask_input``.

    Full-resolution masks may be lazy (issue 14: per-click work in proportion to what is
    shown): a predictor passes ``masks=None`` with ``size`` (H, W) and ``upscale(index)`` ->
    that candidate's (H, W) bool mask, plus any candidates it already made in ``ready``.
    ``mask(index)`` then upscales only the candidate asked for (once; the others when the
    person cycles to them), and ``masks`` all of them.
    """

    __slots__ = ("scores", "low_res_logits", "_size", "_upscale", "_made", "_all")

    def __init__(
        self,
        masks: np.ndarray | None,
        scores: np.ndarray,
        low_res_logits: np.ndarray,
        *,
        size: tuple[int, int] | None = None,
        upscale: Callable[[int], np.ndarray] | None = None,
        ready: dict[int, np.ndarray] | None = None,
    ) -> None:
        self.scores = scores
        self.low_res_logits = low_res_logits
        self._all: np.ndarray | None = None
        self._made: dict[int, np.ndarray] = dict(ready or {})
        n = int(scores.shape[0]) if scores.ndim == 1 else -1
        if masks is not None:
            if masks.ndim != 3 or masks.dtype != np.bool_:
                raise ValueError(
                    f"masks must be (N, H, W) bool, got {masks.shape} {masks.dtype}"
                )
            self._all = masks
            self._size = (int(masks.shape[1]), int(masks.shape[2]))
            self._upscale = None
            n = int(masks.shape[0])
        elif upscale is None or size is None:
            raise ValueError("give masks, or size and upscale")
        else:
            self._size = (int(size[0]), int(size[1]))
            self._upscale = upscale
        if self.scores.shape != (n,) or self.low_res_logits.shape[0] != n:
            raise ValueError("masks, scores and low_res_logits must have the same length")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return f"MaskResult({len(self)} x {self._size}, scores={self.scores!r})"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the full-resolution masks."""
        return self._size

    @property
    def made(self) -> frozenset[int]:
        """The candidates whose full-resolution mask exists now (all when not lazy)."""
        if self._all is not None:
            return frozenset(range(len(self)))
        return frozenset(self._made)

    def mask(self, index: int) -> np.ndarray:
        """Candidate ``index``'s (H, W) bool mask at full resolution (upscaled on first use)."""
        if self._all is not None:
            return self._all[index]
        index = range(len(self))[index]  # IndexError when out of range, like an array
        made = self._made.get(index)
        if made is None:
            assert self._upscale is not None
            made = self._made[index] = self._upscale(index)
        return made

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool: every candidate at full resolution (upscales the missing ones)."""
        if self._all is None:
            n = len(self)
            out = np.empty((n, *self._size), dtype=bool)
            for i in range(n):
                out[i] = self.mask(i)
            self._all = out
            self._made.clear()
        return self._all

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores)) if len(self) else 0

    def logits_for(self, index: int) -> np.ndarray:
        """The (1, 256, 256) logits of candidate ``index``, ready for ``Prompt.mask_input``."""
        return self.low_res_logits[index][None].astype(np.float32, copy=False)


@dataclass(frozen=True)
class EmbeddingKey:
    """Identifies one image's embedding under one model: (image content hash, model id)."""

    image_hash: str
    model_id: str

    def filename(self) -> str:
        safe_model = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_id)
        return f"{self.image_hash}-{safe_model}"


@dataclass
class Label:
    """A class name with its display colour ("#rrggbb") and an optional hotkey ("1".."9")."""

    name: str
    colour: str = "#ff0000"
    hotkey: str | None = None
    id: int | None = None


@dataclass
class ImageRecord:
    """An image of a project: path relative to the project's image root (POSIX separators)."""

    path: str
    width: int
    height: int
    content_hash: str
    status: ImageStatus = ImageStatus.NEW
    id: int | None = None


@dataclass
class Instance:
    """One annotated object: a label and a (Multi)Polygon with holes, in image pixels.
    ``label_id`` is the label's id in the project when the instance was read from one (the
    edit history refers to labels by it, so a renamed label is followed); the project
    stores instances by ``label`` name and ignores ``label_id``. On a frame of a sequence,
    ``track_id`` is the track the instance belongs to and ``origin`` says whether a person
    made it or propagation did."""

    image_id: int
    label: str
    geometry: Geometry
    score: float | None = None
    source: Source = Source.MANUAL
    id: int | None = None
    label_id: int | None = field(default=None, compare=False)
    track_id: int | None = None
    origin: InstanceOrigin = InstanceOrigin.ANCHOR


@dataclass(frozen=True)
class SequenceRecord:
    """A video file or frame folder of a project: path relative to the image root (POSIX);
    ``kind`` is "video" or "frames"; its frames are reached through ``project.sequences``."""

    path: str
    kind: str
    frame_count: int
    fps: float
    width: int
    height: int
    content_hash: str
    id: int | None = None


@dataclass(frozen=True)
class Track:
    """One object followed through a sequence: its name (unique in the sequence, e.g.
    "car 1") and label name; its instances carry ``track_id``."""

    sequence_id: int
    name: str
    label: str
    id: int | None = None


@dataclass
class MaskProposal:
    """One mask a predictor proposes (segment everything, find all, propagation):
    full-resolution bool mask and its scores. ``prompt`` says what found it: the text
    ("person") or exemplar that matched, empty for segment everything."""

    mask: np.ndarray
    score: float
    stability: float
    bbox: tuple[float, float, float, float]  # (x0, y0, x1, y1)
    prompt: str = ""
