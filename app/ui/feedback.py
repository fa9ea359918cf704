"""Feedback while waiting: a click being answered spins a ring where it was made (after a
short delay, so fast answers do not flicker), with the encode's progress under it while
the click waits for the encoder; every edit shows "saved" in the status bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer

from app.predict.service.types import Phase, ProgressEvent
from app.ui.canvas.feedback import BusyRing

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

RING_DELAY_MS = 120  # answers faster than this show no ring


class ClickFeedback(QObject):
    """Connects the SAM tool's requests and the encoder's progress to a ``BusyRing``."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.w = window
        self.ring = BusyRing()
        window.canvas.scene().addItem(self.ring)
        self.ready_hash: str | None = None  # the shown image whose embedding is ready
        self._at: tuple[float, float] | None = None
        self._delay = QTimer(self)
        self._delay.setSingleShot(True)
        self._delay.setInterval(RING_DELAY_MS)
        self._delay.timeout.connect(self._show)
        tool = window.sam_tool
        tool.requested.connect(self._requested)
        tool.settled.connect(self.stop)
        window.session.image_changed.connect(lambda _: self._new_image())
        self.connect_bridge(window.bridge)

    def connect_bridge(self, bridge: object, connect: bool = True) -> None:
        for signal, slot in ((bridge.progress, self._progress),  # type: ignore[attr-defined]
                             (bridge.embedding_ready, self._embedded)):  # type: ignore[attr-defined]
            if connect:
                signal.connect(slot)
            else:
                signal.disconnect(slot)
        if connect:
            self.ready_hash = None

    @property
    def waiting_for_encoder(self) -> bool:
        current = self.w.bridge.current_hash
        return current is not None and current != self.ready_hash

    def _new_image(self) -> None:
        self.stop()

    def _requested(self, x: float, y: float) -> None:
        self._at = (x, y)
        if self.ring.spinning:
            self._show()  # follow the newest click
        else:
            self._delay.start()

    def _show(self) -> None:
        if self._at is None or not self.w.sam_tool.pending:
            return
        self.ring.start(*self._at)
        self._update_text()

    def stop(self) -> None:
        self._delay.stop()
        self._at = None
        self.ring.stop()

    def _update_text(self) -> None:
        if not self.ring.spinning:
            return
        if not self.waiting_for_encoder:
            self.ring.set_text("")
            return
        fraction = self.w.status.encode_fraction
        self.ring.set_text("waiting for the encoder" if fraction is None
                           else f"encoding {100 * fraction:.0f}%")

    def _progress(self, event: ProgressEvent) -> None:
        if event.phase is Phase.ENCODING:
            self._update_text()

    def _embedded(self, key: object, seconds: float) -> None:
        self.ready_hash = getattr(key, "image_hash", None)
        self._update_text()
