"""The records of the prediction service's queued work (images, clicks, segment-everything
requests, tasks; the resumable encodes are in ``encodes.py``). Internal to
``PredictionService`` (service.py), which owns them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey, Prompt
from app.predict.base import EverythingOptions, FindQuery
from app.predict.service.types import ImageLoader, Job, JobKind


class _Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    READY = "ready"
    FAILED = "failed"


@dataclass(eq=False)
class _Image:
    hash: str
    loader: ImageLoader
    token: CancelToken = field(default_factory=CancelToken)
    status: _Status = _Status.PENDING
    key: EmbeddingKey | None = None
    image: np.ndarray | None = None  # kept while current, to re-embed after a prefetch
    prepared: bool = False  # made ready for its first click (or nothing to do)
    error: BaseException | None = None


@dataclass
class _Click:
    prompt: Prompt
    generation: int
    image_hash: str | None
    requested: float


@dataclass
class _Everything:
    """A request for proposals: segment everything (``options``) or find all (``query``)."""

    generation: int
    image_hash: str | None
    options: EverythingOptions
    token: CancelToken = field(default_factory=CancelToken)
    query: FindQuery | None = None

    @property
    def kind(self) -> JobKind:
        return JobKind.EVERYTHING if self.query is None else JobKind.FIND_ALL


@dataclass
class _Task:
    job: Job
    token: CancelToken | None
    run: Callable[[], None]
    item: _Image | None = None  # the prefetch item, to re-queue it when a click preempts it


@dataclass
class _FindIn:
    """A find-all request for an image other than the current one (``find_all_in``)."""

    generation: int
    image_hash: str
    loader: ImageLoader
    query: FindQuery
    token: CancelToken = field(default_factory=CancelToken)
