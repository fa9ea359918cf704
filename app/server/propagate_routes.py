"""``POST /v1/propagate``: propagation on the server's model, streamed frame by frame.

The client names the frames by the sha256 of files it uploaded with ``/v1/images`` (kept by
``app.server.frames.FrameStore``; an unchanged frame is never sent twice), the anchors (an
RLE mask, or clicks and/or a box, per track and frame) and the run
(``app.predict.propagation.PropagationRequest``'s fields). The frames the run needs before
its first step (frame 0, the start, the anchors' frames) must be here: else 409 lists the
missing hashes. Later frames may be uploaded while it runs and announced with ``POST
/v1/propagate/{run_id}/frames``: the run waits up to ``frame_wait_s`` for each.

The answer is NDJSON: one ``FrameLine`` per finished frame, then a ``DoneLine``. Each frame
is one job of the model worker (``app.server.worker``), so the clicks queued meanwhile are
decoded between two frames (and between SAM2's encoder blocks inside one). A client that
goes away cancels the run: no frame is started after the one under way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.core import rle
from app.core.formats.checks import rle_string_counts
from app.core.jobs import CancelToken
from app.core.types import Box, Point, Prompt
from app.predict.base import PredictorError
from app.predict.propagation import (
    FrameResult,
    PropagationRequest,
    PropagationSession,
    propagator_for,
)
from app.server.errors import ErrorBody, HTTPProblem, error_responses
from app.server.frames import RunFrames
from app.server.propagate_schemas import (
    Anchor,
    AnnounceAnswer,
    AnnounceRequest,
    DoneLine,
    FrameLine,
    MissingFrames,
    PropagateRequest,
)
from app.server.state import ServerState, require_key, state_of
from app.server.worker import ServeClicksToken

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["maskloop"],
                   responses=error_responses(401, 404, 408, 413, 422, 500))

NDJSON = "application/x-ndjson"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body is not JSON"}}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    **_NOT_JSON,
    200: {"description": "NDJSON: one FrameLine per finished frame, then one DoneLine",
          "content": {NDJSON: {"schema": {"oneOf": [
              FrameLine.model_json_schema(), DoneLine.model_json_schema()]}}}},
    409: {"model": MissingFrames, "description": "files the run needs first are not on this "
          "server (listed in `missing`): upload them and send the request again; or the "
          "run_id is in use"},
    501: {"model": ErrorBody, "description": "this server's model cannot propagate"},
    504: {"model": ErrorBody, "description": "the model did not start the run in time"},
}


@router.post("/propagate", responses=_STREAM_DOC, response_model=None,
             response_class=StreamingResponse)
async def propagate(body: PropagateRequest, request: Request) -> StreamingResponse | JSONResponse:
    """Propagate the anchors through the frames on the server's model; the answer streams
    one JSON line per finished frame (see the module text)."""
    st = state_of(request)
    if not st.worker.predictor.capabilities.video:
        raise HTTPProblem(501, f"{st.worker.model_id} cannot propagate through a sequence")
    req = _checked(st, body)
    needed = sorted({0, body.start, *(a.frame for a in body.anchors)})
    unnamed = [i for i in needed if i not in body.frames]
    if unnamed:
        raise HTTPProblem(422, f"frames: frame {unnamed[0]} is needed to start (frame 0, the "
                               "start and the anchors' frames) but has no hash")
    missing = st.frames.missing(body.frames[i] for i in needed)
    if missing:
        return JSONResponse(MissingFrames(
            message=f"{len(missing)} frame file(s) are not on this server: upload them "
                    f"(PUT /v1/images/{{hash}}) and send the request again", missing=missing,
        ).model_dump(exclude_none=True), 409)
    frames = RunFrames(st.frames, body.length, st.settings.max_image_pixels)
    frames.announce(dict(body.frames))
    first = await run_in_threadpool(frames.frame, 0)
    hw = (int(first.shape[0]), int(first.shape[1]))
    anchors = await run_in_threadpool(_anchors, body.anchors, hw, st.settings.max_points)
    if not st.runs.add(body.run_id, frames):
        raise HTTPProblem(409, f"run {body.run_id} is under way already (or the server runs "
                               "too many): choose another run_id or wait")
    try:
        token = ServeClicksToken(st.worker)  # clicks queued go first at each poll
        future, job_token = st.worker.submit(
            lambda _t: _open(st, frames, anchors, req, token))
        try:
            session, steps = await st.worker.wait(future, job_token)
        except (PredictorError, IndexError, ValueError) as exc:
            raise HTTPProblem(422, f"cannot propagate: {exc}") from exc
    except BaseException:
        st.runs.remove(body.run_id)
        raise
    visits = req.frames(body.length)
    stream = _stream(st, body.run_id, frames, session, steps, visits, token, hw)
    # the first line (the start frame) here: once started, the stream's ``finally`` closes
    # the session however the answer ends, even when the client leaves before it is sent
    opening = await stream.__anext__()
    return StreamingResponse(_then(opening, stream), media_type=NDJSON)


async def _then(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for line in rest:
            yield line
    finally:
        await rest.aclose()


@router.post("/propagate/{run_id}/frames", response_model=AnnounceAnswer,
             responses=_NOT_JSON)
async def announce(run_id: str, body: AnnounceRequest, request: Request) -> AnnounceAnswer:
    """More frames for a run under way (index -> hash); answers the hashes whose files are
    not here yet (upload them: the run waits for them)."""
    st = state_of(request)
    frames = st.runs.get(run_id)
    if frames is None:
        raise HTTPProblem(404, f"no run {run_id[:40]!r} under way on this server")
    _check_hashes(body.frames.values())
    try:
        frames.announce(dict(body.frames))
    except ValueError as exc:
        raise HTTPProblem(422, f"frames: {exc}") from exc
    return AnnounceAnswer(missing=st.frames.missing(body.frames.values()))


def _checked(st: ServerState, body: PropagateRequest) -> PropagationRequest:
    """The PropagationRequest of ``body``; HTTPProblem 422 for anything over a limit or
    out of range."""
    s = st.settings
    if body.length > s.max_propagate_frames:
        raise HTTPProblem(422, f"length: {body.length:,} frames; this server propagates at "
                               f"most {s.max_propagate_frames:,} per request "
                               "(--max-propagate-frames)")
    if len(body.frames) > body.length or len(body.anchors) > body.length * s.max_tracks:
        raise HTTPProblem(422, "frames/anchors: more than the sequence's frames hold")
    _check_hashes(body.frames.values())
    outside = [i for i in (*body.frames, body.start, *(a.frame for a in body.anchors))
               if not 0 <= i < body.length]
    if outside:
        raise HTTPProblem(422, f"frame {outside[0]} is outside the {body.length} frames")
    tracks = {a.track for a in body.anchors}
    if len(tracks) > s.max_tracks:
        raise HTTPProblem(422, f"anchors: {len(tracks)} tracks; this server follows at most "
                               f"{s.max_tracks} per request (--max-tracks)")
    unknown = [t for t in body.tracks or () if t not in tracks]
    if unknown:
        raise HTTPProblem(422, f"tracks: track {unknown[0]} has no anchor in this request")
    return PropagationRequest(
        start=body.start, direction=body.direction, count=body.count,
        tracks=tuple(dict.fromkeys(body.tracks)) if body.tracks is not None else None,
        stop_when_lost=body.stop_when_lost, lost_score=body.lost_score,
        stop_at_anchors=body.stop_at_anchors)


def _check_hashes(hashes: Any) -> None:
    bad = next((h for h in hashes if not _HASH.match(h)), None)
    if bad is not None:
        raise HTTPProblem(422, "frames: a hash must be the sha256 of the uploaded file (64 "
                               f"lowercase hex digits), not {bad[:80]!r}")


def _anchors(anchors: list[Anchor], hw: tuple[int, int], max_points: int
             ) -> list[tuple[int, int, np.ndarray | Prompt]]:
    """(frame, track, mask or prompt) of each anchor; HTTPProblem 422 for a bad one."""
    out: list[tuple[int, int, np.ndarray | Prompt]] = []
    for n, a in enumerate(anchors):
        where = f"anchors.{n} (frame {a.frame}, track {a.track})"
        has_prompt = a.points is not None or a.box is not None
        if (a.mask is None) == (not has_prompt):
            raise HTTPProblem(422, f"{where}: give a mask or points/box, not both or none")
        if a.mask is not None:
            if tuple(a.mask.size) != hw:
                raise HTTPProblem(422, f"{where}: the mask is {a.mask.size[1]} x "
                                       f"{a.mask.size[0]}, the frames are {hw[1]} x {hw[0]}")
            try:
                _check_counts(a.mask.counts, hw[0] * hw[1])
                mask = rle.decode({"size": a.mask.size, "counts": a.mask.counts})
            except ValueError as exc:
                raise HTTPProblem(422, f"{where}: bad RLE mask: {exc}") from exc
            if mask.shape != hw:
                raise HTTPProblem(422, f"{where}: the RLE does not decode to {hw[1]} x {hw[0]}")
            out.append((a.frame, a.track, mask))
            continue
        points = a.points or []
        if len(points) > max_points:
            raise HTTPProblem(422, f"{where}: {len(points)} points; at most {max_points}")
        if any(lab not in (0, 1) for _x, _y, lab in points):
            raise HTTPProblem(422, f"{where}: a point's label is 1 (inside) or 0 (outside)")
        prompt = Prompt(points=tuple(Point(x, y, bool(lab)) for x, y, lab in points),
                        box=Box(*a.box) if a.box is not None else None)
        out.append((a.frame, a.track, prompt))
    return out


def _check_counts(counts: str, pixels: int) -> None:
    """ValueError unless ``counts`` (COCO's compressed RLE string, ``rleFrString``) holds
    non-negative runs covering exactly ``pixels``: pycocotools decodes any string without
    that check, reading past the runs it has."""
    runs = rle_string_counts(counts)  # the COCO reader's own decoding of the string
    if any(x < 0 for x in runs):
        raise ValueError("a run is negative")
    if sum(runs) != pixels:
        raise ValueError(f"its runs cover {sum(runs):,} pixels, not the frame's {pixels:,}")


def _open(st: ServerState, frames: RunFrames, anchors: list[tuple[int, int, Any]],
          req: PropagationRequest, token: CancelToken
          ) -> tuple[PropagationSession, Iterator[FrameResult]]:
    """On the model thread: the session with its anchors, and the run's iterator."""
    session = propagator_for(st.worker.predictor).open(
        frames, lambda i: frames.hash_of(i) or f"unannounced#{i}")
    try:
        for frame, track, what in anchors:
            if isinstance(what, Prompt):
                session.add_prompt(frame, track, what)
            else:
                session.add_mask(frame, track, what)
        return session, iter(session.propagate(req, cancel=token))
    except BaseException:
        session.close()
        raise


def _step(steps: Iterator[FrameResult]) -> FrameResult | None:
    return next(steps, None)


def _close(session: PropagationSession, steps: Iterator[FrameResult]) -> None:
    close = getattr(steps, "close", None)
    if callable(close):
        close()
    session.close()


def _line(result: FrameResult, hw: tuple[int, int]) -> bytes:
    line = FrameLine(
        frame=result.frame, size=list(hw),
        masks={str(t): rle.encode_json(m)["counts"] for t, m in result.masks.items()},
        scores={str(t): round(float(s), 6) for t, s in result.scores.items()},
        lost=[int(t) for t in result.lost])
    return line.model_dump_json().encode() + b"\n"


def _done(stopped: str, frames: int, message: str | None = None) -> bytes:
    done = DoneLine(stopped=stopped, frames=frames, message=message)  # type: ignore[arg-type]
    return json.dumps(done.model_dump(exclude_none=True)).encode() + b"\n"


async def _ready(frames: RunFrames, index: int, wait_s: float) -> bool:
    """Wait (on the event loop, looking every 20 ms) until frame ``index`` is announced and
    its file uploaded; False after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while not frames.ready(index):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _stream(st: ServerState, run_id: str, frames: RunFrames,
                  session: PropagationSession, steps: Iterator[FrameResult],
                  visits: list[int], token: CancelToken, hw: tuple[int, int]
                  ) -> AsyncGenerator[bytes, None]:
    """The answer's lines; a client that goes away cancels the run (``finally``)."""
    stats = st.runs.stats
    stats.add(runs=1, running=1)
    done = 0
    finished = False
    try:
        for index in visits:
            if not await _ready(frames, index, st.settings.frame_wait_s):
                yield _done("error", done, f"frame {index} was not uploaded within "
                                           f"{st.settings.frame_wait_s:g} s")
                finished = True
                return
            future, _ = st.worker.submit(lambda _t: _step(steps))
            try:
                result = await asyncio.wrap_future(future)
            except (PredictorError, IndexError, ValueError) as exc:
                yield _done("error", done, str(exc))
                finished = True
                return
            except Exception as exc:  # as app.py's 500: an id to find in the log, no more
                error_id = uuid.uuid4().hex[:12]
                log.error("propagation %s failed (error id %s)", run_id, error_id,
                          exc_info=exc)
                yield _done("error", done, f"internal error (id {error_id}): the server's "
                                           "log has the details")
                finished = True
                return
            if result is None:
                break
            done += 1
            stats.add(frames=1)
            yield await run_in_threadpool(_line, result, hw)
        # fewer frames than asked: every track ended (lost, or at its next anchor)
        yield _done("end" if done >= len(visits) else "lost", done)
        finished = True
    finally:
        token.cancel()
        if not finished:
            stats.add(cancelled=1)
            log.info("propagation %s: the client went away after %d frame(s)", run_id, done)
        st.runs.remove(run_id)
        with stats.lock:
            stats.running -= 1
            stats.last_run_frames = done
        try:
            st.worker.submit(lambda _t: _close(session, steps))
        except HTTPProblem:  # the server is stopping: the worker is gone
            session.close()
