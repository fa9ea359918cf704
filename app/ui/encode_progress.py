"""The encode's progress, block by block: a predictor that can tell it (the local SAM2
predictor's ``encode_progress`` hook, called before each Hiera block and the neck) reports
the encode of the image being shown; prefetched images stay quiet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from app.core.jobs import CancelToken
from app.core.types import EmbeddingKey


class EncodeProgress:
    """The predictor as the prediction service sees it: ``embed`` of the current image
    (``is_current(image_hash)``) calls ``report(done, total)`` per encoder step. Every other
    attribute is the predictor's own. Runs on the service's worker thread."""

    def __init__(self, predictor: Any, report: Callable[[int, int], None],
                 is_current: Callable[[str | None], bool]) -> None:
        self.predictor = predictor
        self._report = report
        self._is_current = is_current

    def __getattr__(self, name: str) -> Any:
        return getattr(self.predictor, name)

    def _real(self, cancel: CancelToken | None) -> Any:
        """The predictor doing the encode (a stand-in's, once loaded; see startup.py)."""
        wait = getattr(self.predictor, "wait_loaded", None)
        return wait(cancel) if wait is not None else self.predictor

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        real = self._real(cancel)
        hooked = hasattr(real, "encode_progress") and self._is_current(image_hash)
        if hooked:
            real.encode_progress = self._report
        try:
            key: EmbeddingKey = self.predictor.embed(image, image_hash=image_hash, cancel=cancel)
            return key
        finally:
            if hooked:
                real.encode_progress = None
