"""Propagation into the project: a sequence's tracks followed from their anchors, every frame
written to the store as it comes.

``propagate_tracks(project, propagator, sequence_id, start=...)`` reads the chosen tracks'
ANCHOR instances (the person's) from ``project.sequences``, gives them to a
``PropagationSession`` as masks and runs it from ``start`` forward or backward. Each frame's
masks become polygons with holes (``app.core.geometry``) and are written with
``put_propagated``, one transaction per frame, so a cancel keeps every finished frame. An
anchor is never overwritten: a track's run stops before its next anchor (``stop_at_anchors``)
and a new run goes on from that anchor, and the store refuses to write over one. A track that
is lost (or whose mask comes out empty) has its propagated instances of an earlier run cleared
on the frames it no longer reaches, so no stale mask stays behind. The run streams: no frame's
mask is kept once it is written. ``iter_propagate_tracks`` is the same work one frame per step
(the prediction service interleaves clicks between steps).

Where each track starts: on ``start`` when it has an anchor there, or a stored (propagated)
instance to go on from; otherwise from its nearest anchor before ``start`` (the frames in
between are propagated again), or its first anchor after ``start``; each later anchor in the
range starts a segment of its own. Segments that start on the same frame run together (one
flow or one memory pass per frame), in the direction's order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.core.errors import ProjectError
from app.core.frame_prefetch import FramePrefetch
from app.core.geometry import geometry_to_mask, mask_to_geometry
from app.core.jobs import CancelToken, Progress
from app.core.types import Geometry, Instance, SequenceRecord, Source
from app.predict.base import SourceKind
from app.predict.propagation import (
    FrameResult,
    PropagationRequest,
    PropagationSession,
    Propagator,
)

if TYPE_CHECKING:
    from app.core.project import Project


@dataclass
class PropagationSummary:
    """What a run did. ``written``: track id -> the frames a propagated instance was written
    on; ``kept``: track id -> the frames an anchor was left as it was (the start frames
    included); ``empty``: track id -> the frames its mask came out empty on; ``lost``: track
    id -> the frame its object was lost on; ``cleared``: the stale propagated instances
    removed (on empty frames and after a loss); ``not_started``: track id -> why it could not
    start; ``cancelled``: the run was cancelled (every frame written before it is kept)."""

    sequence_id: int
    start: int
    direction: int
    written: dict[int, list[int]] = field(default_factory=dict)
    kept: dict[int, list[int]] = field(default_factory=dict)
    empty: dict[int, list[int]] = field(default_factory=dict)
    lost: dict[int, int] = field(default_factory=dict)
    cleared: int = 0
    not_started: dict[int, str] = field(default_factory=dict)
    cancelled: bool = False

    @property
    def masks_written(self) -> int:
        return sum(len(v) for v in self.written.values())

    @property
    def frames_written(self) -> list[int]:
        """The frames at least one track was written on, in order."""
        return sorted({f for frames in self.written.values() for f in frames})


@dataclass(frozen=True)
class FrameWritten:
    """One step of ``iter_propagate_tracks``: ``frame`` done, the tracks ``written`` there,
    those ``skipped`` (an anchor is there: the person's stays), those ``lost`` there;
    ``done`` of ``total`` frames (all segments together)."""

    frame: int
    written: tuple[int, ...]
    skipped: tuple[int, ...]
    lost: tuple[int, ...]
    done: int
    total: int


@dataclass(frozen=True)
class Segment:
    """One stretch of a track's run: from ``frame`` (an anchor of the track, or ``seed``: the
    stored propagated instance it goes on from) to ``end`` (the run's end, or the frame
    before the track's next anchor), both included."""

    track: int
    frame: int
    end: int
    seed: Instance | None = None


def source_of(propagator: Propagator) -> Source:
    """The instance source a backend's propagated masks are stored with."""
    kind = propagator.capabilities.kind
    if kind == SourceKind.SAM2:
        return Source.SAM2
    if kind == SourceKind.CLASSICAL:
        return Source.CLASSICAL
    return Source.REMOTE


def run_end(start: int, direction: int, count: int | None, length: int) -> int:
    """The last frame a run from ``start`` visits (``count`` frames after it, None: to the
    end of the sequence)."""
    return PropagationRequest(start, direction, count).frames(length)[-1]


def plan_track(track: int, anchor_frames: Iterable[int], stored: Instance | None, start: int,
               direction: int, end: int) -> list[Segment] | str:
    """The segments of ``track`` for a run from ``start`` to ``end`` (see the module text),
    or why it cannot start. ``stored``: the track's instance on ``start`` when that is not an
    anchor. Every frame of the range after the first segment's start is covered once, from
    the nearest anchor before it."""
    d = direction
    frames = set(anchor_frames)
    if start in frames:
        first, seed = start, None
    elif stored is not None:
        first, seed = start, stored
    else:
        before = [f for f in frames if (start - f) * d > 0]
        after = [f for f in frames if (f - start) * d > 0 and (end - f) * d >= 0]
        if before:
            first = max(before, key=lambda f: f * d)
        elif after:
            first = min(after, key=lambda f: f * d)
        elif not frames:
            return "it has no anchor"
        else:
            return f"it has no anchor to start from between frames {start} and {end}"
        seed = None
    begins = [first] + sorted((f for f in frames if (f - first) * d > 0 and (end - f) * d >= 0),
                              key=lambda f: f * d)
    ends = [b - d for b in begins[1:]] + [end]
    return [Segment(track, b, e, seed if b == first else None)
            for b, e in zip(begins, ends, strict=True)]


def _light(result: FrameResult) -> FrameResult:
    """``result`` without its masks: what the run keeps of a frame once it is written."""
    return dataclasses.replace(result, masks={}, scores={})


class _Writer:
    """Writes one run's frames into the store (one transaction per frame and track) and
    keeps the summary; ``ends`` says how far each track would have gone (for clearing)."""

    def __init__(self, project: Project, sequence_id: int, source: Source,
                 anchors: dict[int, dict[int, Instance]], ends: dict[int, int], start: int,
                 direction: int, summary: PropagationSummary) -> None:
        self.project = project
        self.sequence_id = sequence_id
        self.source = source
        self.anchors = anchors
        self.ends = ends
        self.start = start
        self.direction = direction
        self.summary = summary

    def write(self, result: FrameResult) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Store ``result``: the polygons are traced first, then the frame's tracks are
        written in one transaction (a frame is all there or not at all). Returns the tracks
        written and those skipped for an anchor."""
        seqs = self.project.sequences
        frame = result.frame
        traced: list[tuple[int, Geometry | None]] = []
        written: list[int] = []
        skipped: list[int] = []
        for track, mask in result.masks.items():
            if frame in self.anchors.get(track, {}):
                self.summary.kept.setdefault(track, []).append(frame)
                skipped.append(track)
            elif frame != self.start:  # on the start: the stored mask it went on from
                traced.append((track, mask_to_geometry(mask) if mask.any() else None))
        with self.project.transaction():
            for track, geometry in traced:
                if geometry is None:  # nothing there now: no stale instance either
                    self.summary.empty.setdefault(track, []).append(frame)
                    self.summary.cleared += seqs.clear_propagated(self.sequence_id, track,
                                                                  [frame])
                    continue
                put = seqs.put_propagated(self.sequence_id, frame, track, geometry,
                                          result.scores.get(track), source=self.source)
                if put is None:  # an anchor appeared there meanwhile: the person's stays
                    self.summary.kept.setdefault(track, []).append(frame)
                    skipped.append(track)
                else:
                    self.summary.written.setdefault(track, []).append(frame)
                    written.append(track)
            for track in result.lost:
                self.summary.lost[track] = frame
                end = self.ends.get(track, frame)
                gone = range(frame, end + self.direction, self.direction)
                self.summary.cleared += seqs.clear_propagated(self.sequence_id, track, gone)
        return tuple(written), tuple(skipped)


def propagate_tracks(project: Project, propagator: Propagator, sequence_id: int, *,
                     start: int, direction: int = 1, count: int | None = None,
                     tracks: Iterable[int] | None = None, stop_when_lost: bool = True,
                     progress: Progress | None = None,
                     cancel: CancelToken | None = None) -> PropagationSummary:
    """Propagate ``tracks`` (None: every track of the sequence) of sequence ``sequence_id``
    from frame ``start``, ``direction`` +1 or -1, for ``count`` frames after it (None: to
    the end), writing every frame into ``project`` as it is computed. ``progress(done,
    total, message)`` counts frames; ``cancel`` stops after the frame under way, keeping
    every frame written. Raises ProjectError for an unknown sequence or track, or when no
    chosen track can start."""
    summary = PropagationSummary(sequence_id, start, direction)
    for step in iter_propagate_tracks(project, propagator, sequence_id, start=start,
                                      direction=direction, count=count, tracks=tracks,
                                      stop_when_lost=stop_when_lost, cancel=cancel,
                                      summary=summary):
        if progress is not None:
            progress(step.done, step.total, f"frame {step.frame}")
    return summary


def iter_propagate_tracks(project: Project, propagator: Propagator, sequence_id: int, *,
                          start: int, direction: int = 1, count: int | None = None,
                          tracks: Iterable[int] | None = None, stop_when_lost: bool = True,
                          cancel: CancelToken | None = None,
                          summary: PropagationSummary | None = None,
                          ) -> Generator[FrameWritten, None, None]:
    """``propagate_tracks`` one frame per step, so that a worker can do other work (a
    person's click) between frames: each step computes a frame, writes it and tells what it
    wrote. Closing the generator early closes the session and keeps every frame written;
    ``summary`` (optional) is filled as it goes. Nothing happens before the first step
    (the checks, ProjectError included, run then)."""
    seqs = project.sequences
    record = seqs.get(sequence_id)
    assert record.id is not None
    if summary is None:
        summary = PropagationSummary(sequence_id, start, direction)
    anchors, segments = _plan(project, record, start, direction, count, tracks, summary)
    width, height = record.width, record.height
    frames = seqs.open(sequence_id)
    ahead = FramePrefetch(frames, step=1 if direction > 0 else -1)  # decoded while computing
    try:
        session = propagator.open(ahead, lambda i: f"{record.content_hash}#{i}")
        try:
            for track, mine in anchors.items():
                for frame, inst in sorted(mine.items()):
                    session.add_mask(frame, track,
                                     geometry_to_mask(inst.geometry, height, width))
            for seg in segments:
                if seg.seed is not None:
                    session.add_mask(seg.frame, seg.track,
                                     geometry_to_mask(seg.seed.geometry, height, width))
            yield from _run_segments(project, session, record.id, segments, anchors,
                                     direction, stop_when_lost, source_of(propagator),
                                     summary, cancel)
        finally:
            session.close()
    finally:
        ahead.close()
        frames.close()


def _plan(project: Project, record: SequenceRecord, start: int, direction: int,
          count: int | None, tracks: Iterable[int] | None, summary: PropagationSummary,
          ) -> tuple[dict[int, dict[int, Instance]], list[Segment]]:
    """The chosen tracks' anchors (track -> frame -> instance) and their segments; the
    tracks that cannot start go into ``summary.not_started``. ProjectError for a bad frame
    or track, or when none can start."""
    seqs = project.sequences
    sequence_id = int(record.id or 0)
    if direction not in (1, -1):
        raise ValueError("direction must be 1 or -1")
    if not 0 <= start < record.frame_count:
        raise ProjectError(f"{record.path}: frame {start} is out of range "
                           f"(0..{record.frame_count - 1})")
    known = {int(t.id) for t in seqs.tracks(sequence_id) if t.id is not None}
    chosen = sorted(known) if tracks is None else list(dict.fromkeys(tracks))
    unknown = [t for t in chosen if t not in known]
    if unknown:
        raise ProjectError(f"{record.path}: no track {unknown[0]} in this sequence")
    all_anchors = seqs.anchors(sequence_id)
    anchors = {t: all_anchors.get(t, {}) for t in chosen}
    end = run_end(start, direction, count, record.frame_count)
    segments: list[Segment] = []
    for track in chosen:
        stored = None
        if start not in anchors[track]:
            on_start = seqs.instances(sequence_id, track).get(start, [])
            stored = next((i for i in on_start if i.track_id == track), None)
        planned = plan_track(track, anchors[track], stored, start, direction, end)
        if isinstance(planned, str):
            summary.not_started[track] = planned
        else:
            segments.extend(planned)
    if not segments:
        reasons = "; ".join(f"track {t}: {why}" for t, why in summary.not_started.items())
        raise ProjectError(f"{record.path}: nothing to propagate ({reasons or 'no tracks'})")
    return anchors, segments


def _run_segments(project: Project, session: PropagationSession, sequence_id: int,
                  segments: list[Segment], anchors: dict[int, dict[int, Instance]],
                  direction: int, stop_when_lost: bool, source: Source,
                  summary: PropagationSummary,
                  cancel: CancelToken | None) -> Generator[FrameWritten, None, None]:
    """One run per start frame (in the direction's order) for the segments that begin
    there, each frame written into the store as it comes."""
    d = direction
    groups: dict[int, list[Segment]] = {}
    for seg in segments:
        groups.setdefault(seg.frame, []).append(seg)
    order = sorted(groups, key=lambda f: f * d)
    lengths = {b: max(abs(seg.end - b) for seg in groups[b]) for b in order}
    total = sum(n + 1 for n in lengths.values())
    offset = 0
    for begin in order:
        group = groups[begin]
        request = PropagationRequest(begin, d, lengths[begin], tuple(s.track for s in group),
                                     stop_when_lost=stop_when_lost, stop_at_anchors=True)
        writer = _Writer(project, sequence_id, source, anchors,
                         {s.track: s.end for s in group}, begin, d, summary)
        run = session.propagate(request, cancel=cancel)
        for i, result in enumerate(run):
            written, skipped = writer.write(result)
            run.results[i] = _light(result)  # written: let its masks go
            yield FrameWritten(result.frame, written, skipped, tuple(result.lost),
                               offset + i + 1, total)
        if run.stopped == "cancelled":
            summary.cancelled = True
            return
        offset += lengths[begin] + 1
