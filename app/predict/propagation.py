"""Propagation through a sequence, whatever the backend: label a frame, follow it.

A ``Propagator`` (SAM2's video memory in ``app.predict.sam2.video``, optical flow + GrabCut in
``app.predict.classical.propagate``) opens a ``PropagationSession`` on a sequence. The person's
prompts (clicks, a box or a mask, on one or more frames, for one or more tracks) become
anchors; ``session.propagate(request)`` gives a ``PropagationRun`` that yields one
``FrameResult`` (a mask per track) per frame as it is computed, reports progress, stops at a
cancel and keeps every frame it finished (the anchors lose them: X-AnyLabeling drops the frames
done when a run is cancelled).

``TrackMasks`` holds one mask per (frame, track) with its origin: an anchor (the person's) or
propagated. Propagated masks never replace an anchor, so ``repropagate`` after a correction
replaces only the machine's frames after it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from app.core.errors import Cancelled
from app.core.jobs import CancelToken, Progress
from app.core.types import Prompt
from app.predict.base import Capabilities, PredictorError, SourceKind

if TYPE_CHECKING:
    from app.predict.base import Predictor


class FrameSource(Protocol):
    """What propagation reads: ``app.core.sequences.Sequence`` or anything with these."""

    def __len__(self) -> int: ...

    def frame(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FrameResult:
    """One frame's masks: track id -> bool (H, W) mask and its score (SAM2: the probability
    that the object is present; classical: 1.0). ``lost``: tracks that ended at this frame
    (no mask here for them)."""

    frame: int
    masks: dict[int, np.ndarray]
    scores: dict[int, float] = field(default_factory=dict)
    lost: tuple[int, ...] = ()


@dataclass(frozen=True)
class PropagationRequest:
    """From frame ``start``, ``direction`` +1 (forward) or -1 (backward), for ``count`` frames
    after it (None: to the end). ``tracks`` None: every track with an anchor.
    ``stop_when_lost``: a track ends when its object is lost (SAM2: presence score under
    ``lost_score``; the classical backend always ends a track it lost).
    ``stop_at_anchors``: a track ends before its next anchor in the direction (the frames
    beyond were propagated from that anchor)."""

    start: int
    direction: int = 1
    count: int | None = None
    tracks: tuple[int, ...] | None = None
    stop_when_lost: bool = False
    lost_score: float = 0.5
    stop_at_anchors: bool = True

    def frames(self, length: int) -> list[int]:
        """The frames the run visits, the start's included, in order."""
        if self.direction not in (1, -1):
            raise ValueError("direction must be 1 or -1")
        if not 0 <= self.start < length:
            raise IndexError(f"start frame {self.start} out of range (0..{length - 1})")
        end = length - 1 if self.direction > 0 else 0
        steps = abs(end - self.start)
        if self.count is not None:
            steps = min(steps, max(0, int(self.count)))
        return [self.start + self.direction * i for i in range(steps + 1)]


def track_ends(request: PropagationRequest, anchors: dict[int, set[int]],
               length: int) -> dict[int, int]:
    """The last frame each track of ``request`` visits: the run's end, or the frame before
    its next anchor after the start (``stop_at_anchors``). ``anchors``: track -> frames."""
    visits = request.frames(length)
    last = visits[-1]
    ends: dict[int, int] = {}
    for track in (request.tracks if request.tracks is not None else sorted(anchors)):
        if not anchors.get(track):
            raise PredictorError(f"track {track} has no anchor: give it a prompt first")
        end = last
        if request.stop_at_anchors:
            d = request.direction
            ahead = [f for f in anchors[track] if (f - request.start) * d > 0
                     and (last - f) * d >= 0]
            if ahead:
                end = min(ahead, key=lambda f: abs(f - request.start)) - d
        ends[track] = end
    return ends


RunState = Literal["running", "end", "lost", "cancelled"]


class PropagationRun:
    """A propagation under way: iterate it for the ``FrameResult``s as they come. Before each
    frame it tells ``progress(done, total, "frame N")`` and polls ``cancel``; a cancel (also
    one raised inside a frame as ``Cancelled``) ends it with ``stopped == "cancelled"`` and
    every finished frame kept (``results``, and ``sink`` was told each one). Never raises
    on cancel."""

    def __init__(self, steps: Iterator[FrameResult], total: int, *,
                 progress: Progress | None = None, cancel: CancelToken | None = None,
                 sink: Callable[[FrameResult], object] | None = None) -> None:
        self._steps = steps
        self.total = total
        self._progress = progress
        self._cancel = cancel
        self.sink = sink
        self.results: list[FrameResult] = []
        self.stopped: RunState = "running"

    @property
    def frames_done(self) -> list[int]:
        return [r.frame for r in self.results]

    def __iter__(self) -> Iterator[FrameResult]:
        if self.stopped != "running":
            return
        lost: set[int] = set()
        tracks: set[int] = set()
        while True:
            done = len(self.results)
            if self._progress is not None:
                self._progress(done, self.total,
                               f"frame {self.results[-1].frame}" if self.results else "")
            if self._cancel is not None and self._cancel.cancelled:
                self.stopped = "cancelled"
                return
            try:
                result = next(self._steps)
            except StopIteration:
                self.stopped = "lost" if tracks and lost >= tracks else "end"
                return
            except Cancelled:
                self.stopped = "cancelled"
                return
            tracks.update(result.masks)
            tracks.update(result.lost)
            lost.update(result.lost)
            self.results.append(result)
            if self.sink is not None:
                self.sink(result)
            yield result

    def wait(self) -> PropagationRun:
        """Run to the end (or the cancel); returns itself."""
        for _ in self:
            pass
        return self


class PropagationSession(Protocol):
    """Prompts and propagation on one sequence (one worker thread owns it)."""

    @property
    def length(self) -> int: ...

    def anchors(self) -> dict[int, set[int]]:
        """Track id -> the frames the person gave it a prompt or a mask on."""
        ...

    def add_prompt(self, frame: int, track: int, prompt: Prompt) -> np.ndarray:
        """Clicks and/or a box for ``track`` on ``frame`` (the whole prompt of that frame,
        replacing an earlier one): the frame becomes an anchor; returns its bool mask."""
        ...

    def add_mask(self, frame: int, track: int, mask: np.ndarray) -> np.ndarray:
        """A mask the person drew or corrected: the frame becomes an anchor; returns the mask
        the backend keeps (SAM2: as its decoder sees it)."""
        ...

    def remove_track(self, track: int) -> None: ...

    def propagate(self, request: PropagationRequest, *, progress: Progress | None = None,
                  cancel: CancelToken | None = None,
                  sink: Callable[[FrameResult], object] | None = None) -> PropagationRun:
        """The run of ``request``: nothing is computed until it is iterated."""
        ...

    def close(self) -> None: ...


class Propagator(Protocol):
    """A backend that follows objects through a sequence (``capabilities.video``)."""

    @property
    def capabilities(self) -> Capabilities: ...

    def open(self, frames: FrameSource,
             frame_hash: Callable[[int], str] | None = None) -> PropagationSession:
        """A session on ``frames``; ``frame_hash(i)`` names frame i's content for the
        embedding cache (default: a hash of its pixels)."""
        ...


def anchor_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """``mask`` as the bool (H, W) anchor a session keeps; PredictorError when it is not
    the frames' size."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != hw:
        raise PredictorError(f"mask is {mask.shape[1::-1]}, the frames are {hw[1]} x {hw[0]}")
    return mask


# The propagator of each kind of backend, by module and class: looked up when asked for, so
# that importing this module (the UI does, to run propagation on the worker) never imports a
# backend's model code (SAM2's is torch).
PROPAGATORS: dict[SourceKind, tuple[str, str]] = {
    SourceKind.SAM2: ("app.predict.sam2.video", "SAM2Propagator"),
    SourceKind.CLASSICAL: ("app.predict.classical.propagate", "ClassicalPropagator"),
    SourceKind.REMOTE: ("app.predict.remote.propagation", "RemotePropagator"),
}


def propagator_for(predictor: Predictor) -> Propagator:
    """The propagator of ``predictor``'s backend (it shares the model, the cache and the
    worker thread); PredictorError when the backend cannot propagate."""
    caps = predictor.capabilities
    if not caps.video:
        raise PredictorError(f"{predictor.description} cannot propagate through a sequence")
    if caps.kind not in PROPAGATORS:
        raise PredictorError(f"no propagation for {caps.kind} backends yet")
    module, name = PROPAGATORS[caps.kind]
    propagator: Propagator = getattr(importlib.import_module(module), name)(predictor)
    return propagator


# -- the masks of a sequence, anchors kept --------------------------------------------------

class MaskOrigin(StrEnum):
    """Where a frame's mask of a track came from."""

    ANCHOR = "anchor"  # the person's: a prompt, a drawn mask, a correction
    PROPAGATED = "propagated"  # the machine's, not yet reviewed


@dataclass(frozen=True)
class TrackMask:
    mask: np.ndarray
    origin: MaskOrigin
    score: float = math.nan


class TrackMasks:
    """One mask per (frame, track) and where it came from. ``apply`` writes a run's results
    but never over an anchor: what a person gave or corrected stays."""

    def __init__(self) -> None:
        self._masks: dict[tuple[int, int], TrackMask] = {}

    def __len__(self) -> int:
        return len(self._masks)

    def get(self, frame: int, track: int) -> TrackMask | None:
        return self._masks.get((frame, track))

    def set_anchor(self, frame: int, track: int, mask: np.ndarray) -> None:
        self._masks[(frame, track)] = TrackMask(np.asarray(mask, bool), MaskOrigin.ANCHOR)

    def apply(self, result: FrameResult) -> list[int]:
        """Store ``result``'s masks except over anchors; the tracks written."""
        written = []
        for track, mask in result.masks.items():
            old = self._masks.get((result.frame, track))
            if old is not None and old.origin == MaskOrigin.ANCHOR:
                continue
            score = result.scores.get(track, math.nan)
            self._masks[(result.frame, track)] = TrackMask(mask, MaskOrigin.PROPAGATED, score)
            written.append(track)
        return written

    def frames(self, track: int, origin: MaskOrigin | None = None) -> list[int]:
        return sorted(f for (f, t), m in self._masks.items()
                      if t == track and (origin is None or m.origin == origin))

    def tracks(self) -> list[int]:
        return sorted({t for _f, t in self._masks})


def record(store: TrackMasks, results: Iterable[FrameResult]) -> int:
    """Apply every result to ``store``; the number of masks written."""
    return sum(len(store.apply(r)) for r in results)


def repropagate(session: PropagationSession, store: TrackMasks, frame: int, track: int, *,
                mask: np.ndarray | None = None, prompt: Prompt | None = None,
                direction: int = 1, count: int | None = None,
                progress: Progress | None = None,
                cancel: CancelToken | None = None) -> PropagationRun:
    """A correction of ``track`` on ``frame`` (a ``mask`` or a ``prompt``) becomes an anchor,
    then the track is propagated again from it in ``direction`` up to its next anchor:
    iterating the run replaces, as frames come, only the propagated masks after it."""
    if (mask is None) == (prompt is None):
        raise ValueError("give the correction as a mask or as a prompt")
    kept = (session.add_mask(frame, track, mask) if mask is not None
            else session.add_prompt(frame, track, prompt))  # type: ignore[arg-type]
    store.set_anchor(frame, track, kept)
    request = PropagationRequest(start=frame, direction=direction, count=count,
                                 tracks=(track,), stop_at_anchors=True)
    return session.propagate(request, progress=progress, cancel=cancel, sink=store.apply)
