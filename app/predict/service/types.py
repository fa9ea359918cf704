"""Public value types of the prediction service: jobs, callbacks and counters."""

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
    FIND_ALL = "find_all"  # every instance of a text prompt (``Predictor.find_all``)


@dataclass(frozen=True)
class Job:
    """What a callback is about: the kind of work, its image and (for requests) generation."""

    kind: JobKind
    image_hash: str | None
    generation: int | None = None


@dataclass
class ServiceCallbacks:
    """Listeners, all optional, all called on the worker thread.

    on_embedding_ready(key, seconds): the current image is encoded (seconds incl. loading).
    on_mask(result, prompt, generation, latency_ms): a click answered; latency is measured
        from ``request_mask`` (so it includes waiting for the encode).
    on_error(exc, job): a job failed; nothing else changed.
    on_progress(message, done, total): encoding / prefetch / segment-everything progress.
    on_everything(proposals, generation): segment-everything finished.
    """

    on_embedding_ready: Callable[[EmbeddingKey, float], None] | None = None
    on_mask: Callable[[MaskResult, Prompt, int, float], None] | None = None
    on_error: Callable[[BaseException, Job], None] | None = None
    on_progress: Callable[[str, int, int], None] | None = None
    on_everything: Callable[[list[MaskProposal], int], None] | None = None


@dataclass
class ServiceStats:
    """Counters since the service started."""

    masks: int = 0  # clicks answered
    stale_dropped: int = 0  # requests superseded, cancelled or for another image
    embeds: int = 0  # current images encoded
    prefetched: int = 0  # next images encoded ahead
    prefetch_skipped: int = 0  # next images already in the predictor's cache
    everything: int = 0  # segment-everything and find-all runs finished
    cancelled: int = 0  # jobs stopped by a CancelToken
    errors: int = 0  # jobs reported through on_error
