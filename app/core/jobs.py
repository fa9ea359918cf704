"""Progress and cancellation for long jobs (encoding, downloads, bulk export).

Every long job takes an optional ``progress`` callback and an optional ``CancelToken``; the UI
runs the job on a worker thread and connects both to a progress bar and a Cancel button.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.core.errors import Cancelled

# progress(done, total, message): total may be 0 when unknown.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """A progress callback that does nothing."""


class CancelToken:
    """A thread-safe flag a job polls between steps; ``raise_if_cancelled`` ends the job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def check(token: CancelToken | None) -> None:
    """Raise ``Cancelled`` if ``token`` is set; a ``None`` token never cancels."""
    if token is not None:
        token.raise_if_cancelled()
