"""The one Predictor interface every backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from app.core.errors import MaskLoopError
from app.core.jobs import CancelToken, Progress
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt


class PredictorError(MaskLoopError):
    """A prediction failed (bad checkpoint, server down, unknown embedding...)."""


@runtime_checkable
class Predictor(Protocol):
    """Turns prompts into masks. ``embed`` is slow and cached, ``predict`` is fast.

    Implementations are NOT thread-safe: one worker thread owns a predictor.
    """

    @property
    def model_id(self) -> str:
        """Stable id of the model, part of every embedding cache key (e.g. "sam2.1_hiera_tiny")."""
        ...

    @property
    def description(self) -> str:
        """Short human text for the status bar, e.g. "SAM2.1 tiny on cuda (bf16)"."""
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

    def segment_everything(
        self,
        image: EmbeddingKey | np.ndarray,
        *,
        points_per_side: int = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        min_mask_region_area: int = 100,
        cancel: CancelToken | None = None,
        progress: Progress | None = None,
    ) -> list[MaskProposal]:
        """Propose every object of the image (after non-maximum suppression), largest first."""
        ...

    def close(self) -> None:
        """Release the model, files and connections."""
        ...
