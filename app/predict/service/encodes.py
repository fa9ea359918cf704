"""The resumable encodes (``Predictor.start_embed``) under way or paused, by image.

The prediction service runs one step of one of them per scheduling round, whether its image
is the current one or a next one. An encode no longer wanted (the person moved on) stays
paused in case they come back: the ``KEEP_PAUSED`` most recently stepped ones; older ones
are released and the steps they had done counted as discarded. ``ResumableEncodes`` has no
lock of its own: the service calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from app.predict.base import EncodeJob
from app.predict.service.types import ServiceStats

KEEP_PAUSED = 2  # half-done encodes no longer wanted, kept in case


@dataclass
class _Encode:
    """A resumable encode and the image it encodes."""

    hash: str
    job: EncodeJob
    image: np.ndarray
    seconds: float = 0.0  # loading and steps so far
    step_seconds: float = 0.0  # the steps alone (the encoder work)


class ResumableEncodes:
    """The encodes by image hash, least recently stepped first (an ``OrderedDict``, not a
    ``BoundedCache``: what is evicted depends on what is still wanted, not only on age)."""

    def __init__(self, keep_paused: int = KEEP_PAUSED) -> None:
        self.keep_paused = keep_paused
        self._by_hash: OrderedDict[str, _Encode] = OrderedDict()

    def get(self, image_hash: str) -> _Encode | None:
        return self._by_hash.get(image_hash)

    def __contains__(self, image_hash: object) -> bool:
        return image_hash in self._by_hash

    def add(self, enc: _Encode) -> None:
        self._by_hash[enc.hash] = enc

    def stepped(self, enc: _Encode, finished: bool) -> None:
        """``enc`` ran a step: it is the most recent now, or gone once ``finished``."""
        if self._by_hash.get(enc.hash) is not enc:
            return
        if finished:
            del self._by_hash[enc.hash]
        else:
            self._by_hash.move_to_end(enc.hash)

    def drop(self, enc: _Encode) -> None:
        """Forget ``enc`` (a step failed); the caller releases it."""
        if self._by_hash.get(enc.hash) is enc:
            del self._by_hash[enc.hash]

    def trim(self, wanted: Collection[str], stats: ServiceStats) -> None:
        """Release the encodes not ``wanted`` beyond the ``keep_paused`` most recently
        stepped, counting their steps and seconds in ``stats`` (no step runs meanwhile)."""
        unwanted = [h for h in self._by_hash if h not in wanted]  # least recent first
        for image_hash in unwanted[:max(0, len(unwanted) - self.keep_paused)]:
            enc = self._by_hash.pop(image_hash)
            job = enc.job
            if 0 < job.done < job.total:
                stats.encode_steps_discarded += job.done
                stats.encode_seconds_discarded += enc.step_seconds
            job.release()
