"""The one Predictor interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

import numpy as np

from app.core.errors import MaskLoopError
from app.core.jobs import CancelToken, Progress
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt, Source


class PredictorError(MaskLoopError):
    """A prediction failed (bad checkpoint, server down, unknown embedding...)."""


class SourceKind(StrEnum):
    """What kind of backend a predictor is."""

    SAM2 = "sam2"  # SAM2 on this machine
    CLASSICAL = "classical"  # no network, no model: GrabCut and watershed
    REMOTE = "remote"  # MaskLoop's own server
    HOSTED = "hosted"  # a hosted SAM API (Roboflow, fal, Segmind)


@dataclass(frozen=True)
class Capabilities:
    """What a backend is and can do, declared by the backend (never guessed from names).

    ``device``: where masks are decoded ("cpu", "cuda", "mps"; "remote" for a server or an
    API). ``text_prompts``: ``find_all`` takes a ``FindQuery`` with texts.
    ``exemplar_prompts``: ``find_all`` takes one with exemplars ("find all like this").
    ``video``: propagation through a sequence (``app.predict.propagation.propagator_for``).
    ``batched_decode``: ``predict_batch`` decodes several prompts at once.
    ``resumable_encode``: ``start_embed`` returns an ``EncodeJob`` that encodes one step at
    a time, so the owner can decode clicks between two steps and resume where it stopped.
    ``thread_control``: ``set_threads(n)`` sets how many CPU threads the next jobs use (the
    service gives a click and the current image every core, a prefetch one less).
    ``decode_beside_encode``: ``predict`` may run on one thread while a step of an
    ``EncodeJob`` runs on another (they share no state), so a click need not wait for a
    prefetch step to end.
    """

    kind: SourceKind
    device: str = "cpu"
    text_prompts: bool = False
    exemplar_prompts: bool = False
    video: bool = False
    batched_decode: bool = False
    resumable_encode: bool = False
    thread_control: bool = False
    decode_beside_encode: bool = False

    @property
    def source(self) -> Source:
        """The ``Source`` recorded on the instances this backend makes."""
        return {
            SourceKind.SAM2: Source.SAM2,
            SourceKind.CLASSICAL: Source.CLASSICAL,
        }.get(self.kind, Source.REMOTE)


@dataclass(frozen=True)
class EverythingOptions:
    """The knobs of "segment everything" (the names of SAM's automatic mask generator):
    a ``points_per_side`` x ``points_per_side`` grid of prompts (or, for the classical
    backend, of superpixel seeds); proposals kept with predicted IoU over
    ``pred_iou_thresh`` and stability at least ``stability_score_thresh``; regions and
    holes under ``min_mask_region_area`` pixels cleaned away."""

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 100


@dataclass(frozen=True)
class Exemplar:
    """An example region for "find all like this": a box in image pixels (x0, y0, x1, y1,
    corners) and whether things like it are wanted (``positive``) or not. ``mask`` (bool,
    image-sized), when the exemplar is an accepted instance, lets a local backend use its
    exact shape instead of the box. ``image`` (RGB uint8) is the picture the exemplar lies
    in when it is not the one searched ("the same exemplar in the next images"); None means
    the searched image itself."""

    box: tuple[float, float, float, float]
    positive: bool = True
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    image: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FindQuery:
    """What "find all" looks for: any of ``texts`` ("person", "car"), or things like the
    positive ``exemplars`` and unlike the negative ones, or both together (SAM3's concept
    prompts). Results scoring under ``score_threshold`` are dropped, overlaps above
    ``nms_iou`` suppressed, at most ``max_results`` kept, best first."""

    texts: tuple[str, ...] = ()
    exemplars: tuple[Exemplar, ...] = ()
    score_threshold: float = 0.5
    nms_iou: float = 0.5
    max_results: int = 100

    @classmethod
    def text(cls, text: str, **kw: float | int) -> FindQuery:
        """A query from comma-separated text: "person, car" -> ("person", "car")."""
        names = tuple(t.strip() for t in text.split(",") if t.strip())
        return cls(texts=names, **kw)  # type: ignore[arg-type]

    @property
    def positives(self) -> tuple[Exemplar, ...]:
        return tuple(e for e in self.exemplars if e.positive)

    @property
    def negatives(self) -> tuple[Exemplar, ...]:
        return tuple(e for e in self.exemplars if not e.positive)

    def check_supported(self, capabilities: Capabilities, who: str) -> None:
        """PredictorError naming ``who`` when the query asks for what it cannot do (text, or
        exemplars) or asks for nothing at all."""
        if not self.texts and not self.exemplars:
            raise PredictorError("find all needs a text or an exemplar")
        if self.texts and not capabilities.text_prompts:
            raise PredictorError(f"{who} does not understand text prompts")
        if self.exemplars and not capabilities.exemplar_prompts:
            raise PredictorError(f"{who} does not find objects from exemplars")
        if self.exemplars and not self.positives and not self.texts:
            raise PredictorError("find all like this needs at least one positive exemplar")

    def describe(self) -> str:
        """A short, stable text of the query (a proposal's prompt; autolabel's resume key)."""
        parts = list(self.texts)
        for e in self.exemplars:
            x0, y0, x1, y1 = (round(v) for v in e.box)
            parts.append(f"{'+' if e.positive else '-'}box({x0},{y0},{x1},{y1})")
        return ", ".join(parts)


class EncodeJob(Protocol):
    """An encode in steps (``Predictor.start_embed``, where ``resumable_encode``): ``step``
    runs the next one and returns True once the embedding is cached under ``key``. Between
    two steps the owner may run other work on the same thread (decode a click, encode
    another image) and come back later: nothing done is lost. ``release`` drops the
    activations of an encode no longer wanted."""

    @property
    def key(self) -> EmbeddingKey: ...

    @property
    def total(self) -> int: ...

    @property
    def done(self) -> int: ...

    def step(self) -> bool: ...

    def release(self) -> None: ...


class Preparing(Protocol):
    """A predictor that can do, before the first click on an embedded image, the work that
    click would otherwise do first (SAM2: its features made ready for the decoder and the
    decoder's per-image part), so that the first click is as fast as the next ones. The
    prediction service calls it when an image becomes current and ready."""

    def prepare(self, key: EmbeddingKey) -> None: ...


class ThreadControl(Protocol):
    """A predictor whose CPU thread count can change between jobs (``thread_control``)."""

    def set_threads(self, n: int) -> None: ...


@runtime_checkable
class Predictor(Protocol):
    """Turns prompts into masks. ``embed`` is slow and cached, ``predict`` is fast.

    Implementations are NOT thread-safe: one worker thread owns a predictor (except that
    one declaring ``decode_beside_encode`` may decode on a second thread while an encoder
    step runs).
    """

    @property
    def model_id(self) -> str:
        """Stable id of the model, part of every embedding cache key (e.g. "sam2.1_hiera_tiny")."""
        ...

    @property
    def description(self) -> str:
        """Short human text for the status bar, e.g. "SAM2.1 tiny on cuda (bf16)"."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend is and can do (the UI offers only what it declares)."""
        ...

    def embed(
        self,
        image: np.ndarray,
        image_hash: str | None = None,
        cancel: CancelToken | None = None,
    ) -> EmbeddingKey:
        """Encode an RGB uint8 (H, W, 3) image (or fetch it from the cache) and return its key.

        ``image_hash`` is the content hash of the image file (the disk cache key); when None
        it is computed from the pixels. Raises ``Cancelled`` if ``cancel`` is set meanwhile.
        """
        ...

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Decode one prompt against an embedded image: full-resolution candidate masks."""
        ...

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        """Propose every object of the image (after non-maximum suppression), largest first."""
        ...

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """Every object of the image that ``query`` asks for, best first, each with the
        ``prompt`` that found it: by text (PredictorError unless
        ``capabilities.text_prompts``) and/or like its exemplars (PredictorError unless
        ``capabilities.exemplar_prompts``)."""
        ...

    def close(self) -> None:
        """Release the model, files and connections."""
        ...
