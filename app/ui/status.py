"""The status bar: messages, the image counter ("image 3 / 15"), the encoding state (with
the encoder's progress, block by block, when the backend tells it), the last click's
latency, whether the work is saved, how many proposals wait for review, and the backend.

What is about one image (its error, the latency of a click on it, a candidate's scores)
is cleared when another image is shown (``new_image``), so nothing of the previous image
stays on the next. A message shown without a timeout (a backend that failed to load) is
about the app, not the image, and stays.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from app.predict.service.types import Phase, ProgressEvent

MESSAGE_MS = 8000
_WORDS = {  # how the status bar names the work in progress
    Phase.PREFETCHING: "prefetching next images",
    Phase.SEGMENTING: "segmenting everything",
    Phase.FINDING: "finding",
}


class StatusLine(QObject):
    """The window's status bar; connect the predictor bridge's signals to its slots."""

    def __init__(self, bar: QStatusBar, backend: str) -> None:
        super().__init__(bar)
        self.bar = bar
        self.backend = QLabel(backend)
        self.counter = QLabel("")
        self.counter.setToolTip("The image shown / the images in the list (with its filter)")
        self.encode = QLabel("")
        self.encode_bar = QProgressBar()
        self.encode_bar.setRange(0, 100)
        self.encode_bar.setMaximumWidth(90)
        self.encode_bar.setMaximumHeight(14)
        self.encode_bar.setTextVisible(False)
        self.encode_bar.setVisible(False)
        self.latency = QLabel("")
        self.saved = QLabel("")
        self.review = QLabel("")
        self.review.setToolTip("Proposals waiting for a decision in the project (Ctrl+R "
                               "reviews them)")
        for w in (self.counter, self.encode, self.encode_bar, self.latency, self.saved,
                  self.review, self.backend):
            bar.addPermanentWidget(w)
        self._lasting: str | None = None  # the message shown without a timeout, if any
        self.encode_fraction: float | None = None  # of the current image's encode, if told

    def show(self, text: str, ms: int = MESSAGE_MS) -> None:
        self._lasting = text if ms == 0 else None
        self.bar.showMessage(text, ms)

    def new_image(self) -> None:
        """Another image is shown: forget what was said about the previous one."""
        if self._lasting is None or self.bar.currentMessage() != self._lasting:
            self.bar.clearMessage()
        self.latency.setText("")

    # -- predictor signals -------------------------------------------------------------------
    def set_counter(self, text: str) -> None:
        self.counter.setText(text)

    def set_review(self, text: str) -> None:
        """The review's summary ("12 to review"; empty: nothing pending)."""
        self.review.setText(text)

    def saved_now(self, where: str) -> None:
        """An edit is in the project file (each edit is one committed transaction)."""
        self.saved.setText(f"✓ saved {time.strftime('%H:%M:%S')}")
        self.saved.setToolTip(f"Every change is written to {where} at once")

    @Slot(object)
    def progress(self, event: ProgressEvent) -> None:
        done, total = event.done, event.total
        if event.phase is Phase.ENCODING:
            if total > 1:  # the encoder's blocks
                self.encode_fraction = done / total
                self.encode.setText(f"encoding {100 * done // total}%")
                self.encode_bar.setValue(100 * done // total)
                self.encode_bar.setVisible(True)
            else:
                self.encode_fraction = None
                self.encode.setText("encoding…")
            return
        if event.phase is Phase.ENCODED:
            self._encode_done()
        elif total and done < total:
            words = _WORDS.get(event.phase, event.phase.value)
            if event.phase is Phase.FINDING:
                words = f"{words} {event.detail!r}"
            self.encode.setText(f"{words} {done}/{total}")
        else:
            self.encode.setText("")

    def _encode_done(self) -> None:
        self.encode_fraction = None
        self.encode_bar.setVisible(False)

    @Slot(object, float)
    def embedded(self, key: object, seconds: float) -> None:
        self._encode_done()
        self.encode.setText(f"ready ({seconds:.1f} s)")

    @Slot(float)
    def answered(self, latency_ms: float) -> None:
        self.latency.setText(f"click {latency_ms:.0f} ms")

    @Slot(str, int, str)
    def failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "embed":
            self._encode_done()
            self.encode.setText("encoding failed")
            self.show(f"Encoding failed: {message}")
        # "predict": the SAM tool says; "everything" (segment everything, find all): the
        # ProposalsController says; "prefetch": a next image, nothing to say until shown
