"""The status bar: messages, the encoding state, the last click's latency and the backend.

What is about one image (its error, the latency of a click on it, a candidate's scores)
is cleared when another image is shown (``new_image``), so nothing of the previous image
stays on the next. A message shown without a timeout (a backend that failed to load) is
about the app, not the image, and stays.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel, QStatusBar

MESSAGE_MS = 8000


class StatusLine(QObject):
    """The window's status bar; connect the predictor bridge's signals to its slots."""

    def __init__(self, bar: QStatusBar, backend: str) -> None:
        super().__init__(bar)
        self.bar = bar
        self.backend = QLabel(backend)
        self.encode = QLabel("")
        self.latency = QLabel("")
        for w in (self.encode, self.latency, self.backend):
            bar.addPermanentWidget(w)
        self._lasting: str | None = None  # the message shown without a timeout, if any

    def show(self, text: str, ms: int = MESSAGE_MS) -> None:
        self._lasting = text if ms == 0 else None
        self.bar.showMessage(text, ms)

    def new_image(self) -> None:
        """Another image is shown: forget what was said about the previous one."""
        if self._lasting is None or self.bar.currentMessage() != self._lasting:
            self.bar.clearMessage()
        self.latency.setText("")

    # -- predictor signals -------------------------------------------------------------------
    @Slot(str, int, int)
    def progress(self, message: str, done: int, total: int) -> None:
        if message == "encoding image":
            self.encode.setText("encoding…")
        elif total and done < total:
            self.encode.setText(f"{message} {done}/{total}")
        elif message != "image encoded":
            self.encode.setText("")

    @Slot(object, float)
    def embedded(self, key: object, seconds: float) -> None:
        self.encode.setText(f"ready ({seconds:.1f} s)")

    @Slot(float)
    def answered(self, latency_ms: float) -> None:
        self.latency.setText(f"click {latency_ms:.0f} ms")

    @Slot(str, int, str)
    def failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "embed":
            self.encode.setText("encoding failed")
            self.show(f"Encoding failed: {message}")
        # "predict": the SAM tool says; "everything" (segment everything, find all): the
        # ProposalsController says; "prefetch": a next image, nothing to say until shown
