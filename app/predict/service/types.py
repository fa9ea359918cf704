"""Public value types of the prediction service: jobs, progress events, callbacks and
counters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt

ImageLoader = Callable[[], np.ndarray]  # returns RGB uint8 (H, W, 3); runs on the worker


class JobKind(StrEnum):
    PREDICT = "predict"
    EMBED = "embed"  # encoding the current image
    PREFETCH = "prefetch"
    EVERYTHING = "everything"  # segment everything
    FIND_ALL = "find_all"  # what a ``FindQuery`` asks for (``Predictor.find_all``)
    STEPS = "steps"  # one step of a stepped job (``PredictionService.run_steps``)
    PREPARE = "prepare"  # the current image made ready for its first click (``Preparing``)


@dataclass(frozen=True)
class Job:
    """What a callback is about: the kind of work, its image and (for requests) generation."""

    kind: JobKind
    image_hash: str | None
    generation: int | None = None


class Phase(StrEnum):
    """What a ``ProgressEvent`` is about."""

    ENCODING = "encoding"  # the current image's encoder: steps done / steps (total 1: not told)
    ENCODED = "encoded"  # the current image is encoded (1 / 1)
    PREFETCHING = "prefetching"  # the next images: images done / images to prefetch
    SEGMENTING = "segmenting"  # segment everything: the predictor's done / total
    FINDING = "finding"  # find all: done / total (0 / 1 when it starts); ``detail`` the query


@dataclass(frozen=True)
class ProgressEvent:
    """Progress of the service's work: ``phase``, ``done`` of ``total``, the image it is
    about and ``detail`` (the predictor's own words for segment everything, the query of a
    find all)."""

    phase: Phase
    done: int
    total: int
    image_hash: str | None = None
    detail: str = ""

    @property
    def fraction(self) -> float | None:
        """done / total when there is more than one step to tell, else None."""
        return self.done / self.total if self.total > 1 else None

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done >= self.total


@dataclass
class ServiceCallbacks:
    """Listeners, all optional, all called on the worker thread.

    on_embedding_ready(key, seconds): the current image is encoded (seconds incl. loading).
    on_mask(result, prompt, generation, latency_ms): a click answered; latency is measured
        from ``request_mask`` (so it includes waiting for the encode).
    on_error(exc, job): a job failed; nothing else changed.
    on_progress(event): encoding / prefetch / segment-everything progress (``ProgressEvent``).
    on_everything(proposals, generation): segment-everything finished.
    """

    on_embedding_ready: Callable[[EmbeddingKey, float], None] | None = None
    on_mask: Callable[[MaskResult, Prompt, int, float], None] | None = None
    on_error: Callable[[BaseException, Job], None] | None = None
    on_progress: Callable[[ProgressEvent], None] | None = None
    on_everything: Callable[[list[MaskProposal], int], None] | None = None


@dataclass
class ServiceStats:
    """Counters since the service started."""

    masks: int = 0  # clicks answered
    masks_beside_encode: int = 0  # of them, decoded on the click lane beside a prefetch step
    prepared: int = 0  # current images made ready for their first click (``Preparing``)
    stale_dropped: int = 0  # requests superseded, cancelled or for another image
    embeds: int = 0  # current images encoded
    prefetched: int = 0  # next images encoded ahead
    prefetch_skipped: int = 0  # next images already in the predictor's cache
    everything: int = 0  # segment-everything and find-all runs finished
    cancelled: int = 0  # jobs stopped by a CancelToken
    errors: int = 0  # jobs reported through on_error
    encode_steps: int = 0  # encoder steps run (resumable encodes)
    encode_steps_discarded: int = 0  # steps of encodes released (or cancelled) unfinished
    encode_seconds_discarded: float = 0.0  # encoder time thrown away (cancelled or released)
