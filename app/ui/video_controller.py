"""Videos in the window: the chosen sequence and frame, stepping and playing, the tracks new
instances join, the frame bar's marks and propagation through the prediction service.

A frame is an ordinary ``ImageRecord`` (``project.sequences.frame_image``), so the window
shows, labels and undoes on it as on an image; this controller only says which record to
show, where its pixels come from (``RecordPixels``: decoded from the video) and which track
an accepted instance joins (``track_for``, the session's hook)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, QTimer, Signal

from app.core.errors import MaskLoopError
from app.core.jobs import CancelToken
from app.core.record_pixels import RecordPixels
from app.core.types import ImageRecord, InstanceOrigin, SequenceRecord
from app.predict.base import Predictor
from app.predict.propagation import propagator_for
from app.predict.track_propagation import FrameWritten, iter_propagate_tracks
from app.ui.app_state import AppState
from app.ui.panels.frame_bar import FrameBar
from app.ui.panels.video_panel import TrackRow, VideoPanel, ask_yes
from app.ui.tasks import TaskRunner

ENCODE_AHEAD = 2  # frames encoded ahead of the shown one
PLAY_STALL_TICKS = 50  # a frame not shown after this many ticks stops playback


@dataclass
class Marks:
    """The frames with an anchor / a propagated instance of the chosen track (or any)."""

    anchors: set[int] = field(default_factory=set)
    propagated: set[int] = field(default_factory=set)


class VideoController(QObject):
    """Owns the video state of one window. ``show_image`` is the window's (it shows a
    record); ``image_shown`` fires once a record's pixels are on the canvas."""

    propagation_finished = Signal(object, bool)  # error message | None, cancelled

    def __init__(self, state: AppState, tasks: TaskRunner, panel: VideoPanel, bar: FrameBar,
                 show_image: Callable[[ImageRecord], None], parent: QObject | None = None
                 ) -> None:
        super().__init__(parent)
        self.state, self.tasks, self.panel, self.bar = state, tasks, panel, bar
        self.show_image = show_image
        self.project = state.project
        self.pixels = RecordPixels(self.project)
        self.confirm: Callable[[str], bool] = lambda text: ask_yes(panel, text)
        self.sequence: SequenceRecord | None = None
        self.frame = 0
        self._heading = 1  # the direction of the last step: frames are encoded ahead that way
        self.track_id: int | None = None
        self.marks = Marks()
        self._frames: dict[int, tuple[int, int] | None] = {}  # image id -> (sequence, frame)
        self._play = QTimer(self)
        self._play.timeout.connect(self._tick)
        self._clock = QElapsedTimer()
        self._play_from = 0
        self._waiting: int | None = None  # the image id playback waits to see shown
        self._stalled = 0
        self._job: tuple[int, CancelToken] | None = None  # (request id, its cancel token)
        state.session.track_hook = self.track_for
        state.image_changed.connect(self._follow_image)
        state.session.instances_changed.connect(self.refresh_tracks)
        panel.sequence_chosen.connect(self.choose_sequence)
        panel.track_chosen.connect(self.choose_track)
        panel.rename_requested.connect(self.rename_track)
        panel.relabel_requested.connect(self.relabel_track)
        panel.delete_requested.connect(self.delete_track_from_here)
        bar.frame_chosen.connect(self.go_to)
        self._connect_bridge(state.bridge)
        state.backend_changed.connect(self._connect_bridge)
        bar.hide()
        self.refresh_sequences()

    # -- sequences and frames ------------------------------------------------------------------
    def refresh_sequences(self) -> None:
        self.panel.set_sequences(self.project.sequences.all(),
                                 None if self.sequence is None else self.sequence.id)

    def add_sequence(self, path: Path) -> None:
        """Add a video file or frame folder (read off the GUI thread), then show frame 0;
        a file that cannot be read is said in the status bar, named."""
        self.state.say(f"Adding {path.name} …")

        def added(record: SequenceRecord) -> None:
            self.refresh_sequences()
            self.state.say(f"Added {record.path}: {record.frame_count} frames")
            self.choose_sequence(int(record.id or 0))

        self.tasks.start(self.project.sequences.add, path, on_result=added,
                         on_error=lambda exc: self.state.say(f"Cannot add {path}: {exc}", 0))

    def frame_of(self, record: ImageRecord | None) -> tuple[int, int] | None:
        """(sequence id, frame index) when ``record`` is a frame, else None."""
        if record is None or record.id is None:
            return None
        if record.id not in self._frames:
            try:
                self._frames[record.id] = self.project.sequences.frame_of(record.id)
            except MaskLoopError:
                return None
        return self._frames[record.id]

    def loader(self, record: ImageRecord) -> Callable[[], np.ndarray] | None:
        """How to get ``record``'s pixels when it is a frame (None: a plain image, which
        the window loads as before)."""
        if self.frame_of(record) is None:
            return None
        pixels, store = self.pixels, self.state.bridge.images
        # through the bridge's image store: the display and the encoder share one decode
        return lambda: store.get_with(record.content_hash, lambda: pixels.load(record))

    def encode_frame(self, record: ImageRecord) -> None:
        """Make the frame the predictor's current image (encoded at once), and the next
        ``ENCODE_AHEAD`` frames in the direction of the last step the ones encoded after it
        (the service's prefetch: it waits for the person's clicks)."""
        pixels, seq, where = self.pixels, self.sequence, self.frame_of(record)
        ahead: list[tuple[str, Callable[[], np.ndarray]]] = []
        if seq is not None and where is not None and where[0] == seq.id:
            for k in range(1, ENCODE_AHEAD + 1):
                index = where[1] + k * self._heading
                if 0 <= index < seq.frame_count:
                    ahead.append((f"{seq.content_hash}#{index}",
                                  functools.partial(pixels.frame, seq, index)))
        self.state.bridge.set_image_loader(record.content_hash, lambda: pixels.load(record),
                                           ahead)

    def choose_sequence(self, sequence_id: int) -> None:
        """Show the sequence's first frame (nothing happens if it is the one shown)."""
        if self.sequence is not None and self.sequence.id == sequence_id:
            return
        self.stop()
        self.track_id = None
        self.show_frame(sequence_id, 0)

    def show_frame(self, sequence_id: int, index: int) -> None:
        record = self.project.sequences.frame_image(sequence_id, index)
        self._frames[int(record.id or 0)] = (sequence_id, index)
        self.show_image(record)

    def go_to(self, index: int) -> None:
        """Show frame ``index`` (clamped to the sequence) of the current sequence."""
        if self.sequence is None:
            return
        index = max(0, min(int(index), self.sequence.frame_count - 1))
        if index != self.frame or self.state.image is None or \
                self.frame_of(self.state.image) != (self.sequence.id, index):
            self.show_frame(int(self.sequence.id or 0), index)
        else:
            self.bar.set_frame(index)

    def step(self, delta: int) -> None:
        self.stop()
        if delta:
            self._heading = 1 if delta > 0 else -1
        self.go_to(self.frame + delta)

    def _follow_image(self, record: ImageRecord | None) -> None:
        where = self.frame_of(record)
        if where is None:
            if self.sequence is not None:
                self.stop()
                self.sequence = None
                self.panel.show_sequence(None)
                self.panel.set_tracks([], None)
                self.bar.hide()
            return
        sequence_id, index = where
        if self.sequence is None or self.sequence.id != sequence_id:
            self.sequence = self.project.sequences.get(sequence_id)
            self.bar.set_sequence(self.sequence.frame_count, self.sequence.fps)
            self.panel.show_sequence(sequence_id)
            self.refresh_tracks()
        self.frame = index
        self.bar.set_frame(index)
        self.bar.show()

    # -- playing -------------------------------------------------------------------------------
    @property
    def playing(self) -> bool:
        return self._play.isActive()

    def play_pause(self) -> None:
        """Play from the current frame at the sequence's rate; frames the decoder cannot
        keep up with are skipped (the next tick shows the frame due then), never queued."""
        if self.playing or self.sequence is None:
            self.stop()
            return
        if self.frame >= self.sequence.frame_count - 1:
            self.go_to(0)
        self._play_from, self._waiting, self._stalled = self.frame, None, 0
        self._clock.start()
        self._play.start(max(1, round(1000 / (self.sequence.fps or 30.0))))
        self.state.say("Playing (K pauses)", 2000)

    def stop(self) -> None:
        self._play.stop()
        self._waiting = None

    def image_shown(self, record: ImageRecord) -> None:
        """The window put ``record``'s pixels on the canvas (playback may go on)."""
        if self._waiting == record.id:
            self._waiting = None

    def _tick(self) -> None:
        seq = self.sequence
        if seq is None:
            self.stop()
            return
        if self._waiting is not None:  # the last frame is still being decoded: skip a tick
            self._stalled += 1
            if self._stalled > PLAY_STALL_TICKS:
                self.stop()
                self.state.say("Playback stopped: a frame could not be shown")
            return
        self._stalled = 0
        due = self._play_from + int(self._clock.elapsed() * (seq.fps or 30.0) / 1000)
        last = seq.frame_count - 1
        if due != self.frame:
            self.go_to(min(due, last))
            self._waiting = self.state.image.id if self.state.image is not None else None
        if due >= last:
            self.stop()

    # -- anchors and marks ---------------------------------------------------------------------
    def refresh_tracks(self) -> None:
        """Re-read the sequence's tracks, their counts and the marks (after an edit)."""
        if self.sequence is None:
            return
        seq_id = int(self.sequence.id or 0)
        tracks = self.project.sequences.tracks(seq_id)
        if self.track_id not in {t.id for t in tracks}:
            self.track_id = None
        counts: dict[int | None, list[int]] = {}
        marks = Marks()
        for frame, track_id, origin in self.project.sequences.frame_marks(seq_id):
            anchor = origin == InstanceOrigin.ANCHOR
            counts.setdefault(track_id, [0, 0])[0 if anchor else 1] += 1
            if self.track_id is None or track_id == self.track_id:
                (marks.anchors if anchor else marks.propagated).add(frame)
        self.marks = marks
        self.bar.set_marks(marks.anchors, marks.propagated)
        self.panel.set_tracks([TrackRow(t, *counts.get(t.id, [0, 0])) for t in tracks],
                              self.track_id)

    def choose_track(self, track_id: int | None) -> None:
        """New instances join this track (None: each starts its own); the marks follow."""
        self.track_id = track_id
        self.refresh_tracks()

    def step_anchor(self, delta: int) -> None:
        """The next (1) / previous (-1) frame with an anchor of the chosen track (or any)."""
        frames = sorted(f for f in self.marks.anchors if (f - self.frame) * delta > 0)
        if not frames:
            self.state.say("No other anchor that way", 3000)
            return
        self.stop()
        self.go_to(frames[0] if delta > 0 else frames[-1])

    # -- tracks --------------------------------------------------------------------------------
    def track_for(self, label: str) -> tuple[int | None, str, list[int]]:
        """The session's hook on accept: the track a new instance with ``label`` joins on
        the shown frame, the label it gets (its track's) and the propagated instances of
        that track there it replaces (in the same undoable step). The chosen track, unless
        it has an anchor here already; else a new track named after the label."""
        record = self.state.image
        where = self.frame_of(record)
        if record is None or where is None:
            return None, label, []
        sequences = self.project.sequences
        if self.track_id is not None:
            mine = [i for i in self.project.instances(int(record.id or 0))
                    if i.track_id == self.track_id]
            chosen = sequences.track(self.track_id)
            if not any(i.origin == InstanceOrigin.ANCHOR for i in mine):
                return self.track_id, chosen.label, [int(i.id or 0) for i in mine]
            self.state.say(f"{chosen.name} has an anchor on this frame already: a new track",
                           5000)
        track = sequences.add_track(where[0], label)
        self.state.say(f"New track: {track.name}", 3000)
        return track.id, track.label, []

    def rename_track(self, track_id: int, name: str) -> None:
        try:
            self.project.sequences.rename_track(track_id, name)
        except MaskLoopError as exc:
            self.state.say(str(exc))
        QTimer.singleShot(0, self.refresh_tracks)  # not inside the list's own edit

    def relabel_track(self, track_id: int, label: str) -> None:
        self.project.sequences.relabel_track(track_id, label)
        self.state.session.instances_changed.emit()  # the canvas shows the new label

    def delete_track_from_here(self, track_id: int) -> None:
        """Delete the track's instances from the shown frame on, after a confirmation that
        says how many of each kind go (from frame 0: the track too)."""
        if self.sequence is None:
            return
        track = self.project.sequences.track(track_id)
        going = [i for f, insts in self.project.sequences.instances(
            int(self.sequence.id or 0), track_id).items() if f >= self.frame for i in insts]
        anchors = sum(i.origin == InstanceOrigin.ANCHOR for i in going)
        whole = " and the track itself" if self.frame == 0 else ""
        if not self.confirm(f"Delete {len(going)} instances of {track.name} from frame "
                            f"{self.frame} on ({anchors} anchors, {len(going) - anchors} "
                            f"propagated){whole}? This cannot be undone."):
            return
        removed = self.project.sequences.delete_track(track_id, self.frame)
        self.state.say(f"Deleted {removed} instances of {track.name}")
        self.state.session.instances_changed.emit()

    # -- propagation ---------------------------------------------------------------------------
    def _connect_bridge(self, bridge: object) -> None:
        from app.ui.workers import PredictorBridge

        if self._job is not None:  # it ran on the previous backend, which is closing
            self._job[1].cancel()
            self._job = None
            self.state.say("Propagation stopped: the backend changed (the frames done stay)")
            self.refresh_tracks()
        if isinstance(bridge, PredictorBridge):
            bridge.step_done.connect(self._step_done)
            bridge.steps_finished.connect(self._steps_finished)

    @property
    def job_token(self) -> CancelToken | None:
        """The running propagation's cancel token (any thread may cancel it), or None."""
        return None if self._job is None else self._job[1]

    def propagate(self, direction: int) -> None:
        """Propagate the chosen track (or every track) from the shown frame forward (1) or
        backward (-1), each track up to its next anchor or the end, in steps on the
        prediction service's worker; the frames written are kept if it is cancelled."""
        if self.sequence is None:
            self.state.say("Propagation needs a video: add one (File > Add video or frames)")
            return
        if self._job is not None:
            self.state.say("Propagation is running (Ctrl+Shift+K cancels it)")
            return
        self.stop()
        project, seq_id, start = self.project, int(self.sequence.id or 0), self.frame
        tracks = None if self.track_id is None else [self.track_id]

        def make(predictor: Predictor) -> Iterator[FrameWritten]:  # on the worker
            return iter_propagate_tracks(project, propagator_for(predictor), seq_id,
                                         start=start, direction=direction, tracks=tracks)

        self._job = self.state.bridge.run_steps(make)
        way = "forward" if direction > 0 else "backward"
        self.state.say(f"Propagating {way} from frame {start} …", 0)

    def cancel_propagation(self) -> None:
        if self._job is None:
            self.state.say("No propagation is running", 3000)
            return
        self._job[1].cancel()
        self.state.say("Cancelling propagation (the frames done stay) …", 0)

    def _step_done(self, request: int, item: FrameWritten) -> None:
        if self._job is None or request != self._job[0]:
            return
        if item.written and (self.track_id is None or self.track_id in item.written):
            self.marks.propagated.add(item.frame)
            self.bar.set_marks(self.marks.anchors, self.marks.propagated)
        self.state.say(f"Propagating: frame {item.frame}, {item.done} / {item.total}", 0)
        if item.written and item.frame == self.frame:
            self.state.session.instances_changed.emit()  # the shown frame was written

    def _steps_finished(self, request: int, error: object, cancelled: bool) -> None:
        if self._job is None or request != self._job[0]:
            return
        self._job = None
        if error is not None:
            self.state.say(f"Propagation failed: {error}", 0)
        else:
            self.state.say("Propagation cancelled: the frames done are kept" if cancelled
                           else "Propagation done", 8000)
        self.state.session.instances_changed.emit()
        self.propagation_finished.emit(error, cancelled)

    def close(self) -> None:
        self.stop()
        if self._job is not None:
            self._job[1].cancel()
        self.pixels.close()
