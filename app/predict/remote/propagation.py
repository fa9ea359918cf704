"""Propagation on a MaskLoop server (``POST /v1/propagate``), behind the ``Propagator``
interface: a workstation without a GPU propagates on the team's GPU box.

The session keeps the anchors here and sends them with the run. Frames go up as PNG
(lossless: the server propagates the very pixels the local backend would) through the
``/v1/images`` routes, keyed by the sha256 of the PNG, only when the server lacks them and
only as the run reaches them: before the request, frame 0, the start and the anchors' frames
(a 409 lists what the server lacks; those are uploaded and the request sent again); while
it streams, a feeder thread uploads and announces the next frames, at most ``lookahead``
ahead of the last result. Each NDJSON line becomes a ``FrameResult`` as it arrives; a
cancel closes the stream, which stops the run on the server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from app.core import rle
from app.core.jobs import CancelToken, Progress
from app.core.types import Prompt
from app.predict.base import Capabilities, PredictorError
from app.predict.hosted.common import encode_image
from app.predict.propagation import (
    FrameResult,
    FrameSource,
    PropagationRequest,
    PropagationRun,
    anchor_mask,
)
from app.predict.remote.predictor import RemotePredictor

LOOKAHEAD = 4  # frames uploaded ahead of the last result: the upload of the next frame
# overlaps the server's work on this one, and a cancel wastes at most this many uploads


class RemotePropagator:
    """Propagation on ``predictor``'s server (its ``/v1/info`` says ``"propagate": true``)."""

    def __init__(self, predictor: RemotePredictor, *, lookahead: int = LOOKAHEAD) -> None:
        if not predictor.info.get("propagate"):
            raise PredictorError(f"the server at {predictor.url} cannot propagate (its model "
                                 "has no video path, or it is older than this client)")
        self.predictor = predictor
        self.lookahead = max(1, lookahead)

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.predictor.capabilities, video=True)

    def open(self, frames: FrameSource,
             frame_hash: Callable[[int], str] | None = None) -> RemoteSession:
        """A session on ``frames`` (``frame_hash`` is unused: frames are named by the sha256
        of the file uploaded)."""
        del frame_hash
        return RemoteSession(self, frames)


class RemoteSession:
    """Anchors kept here; each ``propagate`` is one streamed request. Not thread-safe."""

    def __init__(self, owner: RemotePropagator, frames: FrameSource) -> None:
        self.predictor = owner.predictor
        self.lookahead = owner.lookahead
        self.frames = frames
        self.length = len(frames)
        if self.length < 1:
            raise PredictorError("the sequence has no frames")
        first = frames.frame(0)
        self.hw: tuple[int, int] = (int(first.shape[0]), int(first.shape[1]))
        self._anchors: dict[int, dict[int, np.ndarray | Prompt]] = {}
        self._hashes: dict[int, str] = {}  # frame -> sha256 of its PNG
        self._files: dict[int, bytes] = {}  # frames whose upload may still be needed
        self._runs: list[_Stream] = []
        # track -> (frame, mask) the last run left it with: a run starting there goes on
        # from it, as a local session does (each request opens a new session on the server)
        self._left: dict[int, tuple[int, np.ndarray]] = {}
        self.uploaded = 0  # frames uploaded by this session (tests and benchmarks read it)

    # -- anchors --------------------------------------------------------------------------

    def anchors(self) -> dict[int, set[int]]:
        return {t: set(f) for t, f in self._anchors.items() if f}

    def add_mask(self, frame: int, track: int, mask: np.ndarray) -> np.ndarray:
        frame = self._check_frame(frame)
        mask = anchor_mask(mask, self.hw)
        self._anchors.setdefault(track, {})[frame] = mask
        return mask

    def add_prompt(self, frame: int, track: int, prompt: Prompt) -> np.ndarray:
        """The prompt goes with the run; its mask now is the server's image prediction of
        it (what the first frame of a run decodes too)."""
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        frame = self._check_frame(frame)
        if prompt.mask_input is not None:
            raise PredictorError("a remote propagation anchor takes clicks or a box, not "
                                 "mask_input logits: give the mask instead")
        key = self.predictor.embed(self.frames.frame(frame))
        result = self.predictor.predict(key, prompt)
        self._anchors.setdefault(track, {})[frame] = prompt
        return np.asarray(result.masks[result.best], bool)

    def remove_track(self, track: int) -> None:
        self._anchors.pop(track, None)
        self._left.pop(track, None)

    # -- propagation ----------------------------------------------------------------------

    def propagate(self, request: PropagationRequest, *, progress: Progress | None = None,
                  cancel: CancelToken | None = None,
                  sink: Callable[[FrameResult], object] | None = None) -> PropagationRun:
        visits = request.frames(self.length)
        unknown = [t for t in request.tracks or () if not self._anchors.get(t)]
        if unknown:
            raise PredictorError(f"track {unknown[0]} has no anchor: give it a prompt first")
        stream = _Stream(self, request, visits, cancel or CancelToken())
        self._runs.append(stream)
        return PropagationRun(stream.results(), len(visits), progress=progress,
                              cancel=cancel, sink=sink)

    def close(self) -> None:
        for stream in self._runs:
            stream.stop()
        self._runs.clear()
        self._anchors.clear()
        self._left.clear()
        self._files.clear()

    # -- frames ---------------------------------------------------------------------------

    def _check_frame(self, frame: int) -> int:
        frame = int(frame)
        if not 0 <= frame < self.length:
            raise IndexError(f"frame {frame} out of range (0..{self.length - 1})")
        return frame

    def hash_of(self, index: int) -> str:
        """The sha256 of frame ``index``'s PNG (encoded once; kept until uploaded)."""
        digest = self._hashes.get(index)
        if digest is None:
            data = encode_image(np.ascontiguousarray(self.frames.frame(index)), "png")
            digest = hashlib.sha256(data).hexdigest()
            self._hashes[index] = digest
            self._files[index] = data
        return digest

    def upload(self, digests: list[str]) -> None:
        """PUT the files of ``digests`` (frames hashed by this session)."""
        by_hash = {self._hashes[i]: i for i in self._files}
        for digest in digests:
            index = by_hash.get(digest)
            data = self._files.get(index) if index is not None else None
            if data is None:  # hashed, then let go: encode it again
                index = next((i for i, h in self._hashes.items() if h == digest), None)
                if index is None:
                    raise PredictorError(f"the server asks for {digest[:16]}, which is no "
                                         "frame of this sequence")
                self._hashes.pop(index)
                self.hash_of(index)
                data = self._files[index]
            self.predictor.session.json(
                "PUT", f"/v1/images/{digest}", content=data,
                headers={"Content-Type": "image/png"}, timeout=self.predictor.embed_timeout,
                what=f"uploading frame {index}")
            self.uploaded += 1

    def settled(self, index: int) -> None:
        """Frame ``index`` is on the server for this run: its file bytes can go."""
        self._files.pop(index, None)

    def anchor_body(self, request: PropagationRequest) -> list[dict[str, Any]]:
        """The anchors as the request sends them, with the mask an earlier run left a track
        on the start frame (when it has no anchor there)."""
        out: list[dict[str, Any]] = []
        for track, mine in self._anchors.items():
            frames = dict(mine)
            left = self._left.get(track)
            chosen = request.tracks is None or track in request.tracks
            if chosen and request.start not in frames and left and left[0] == request.start:
                frames[request.start] = left[1]
            for frame, what in sorted(frames.items()):
                item: dict[str, Any] = {"frame": frame, "track": track}
                if isinstance(what, Prompt):
                    item["points"] = [[p.x, p.y, 1 if p.positive else 0] for p in what.points]
                    if what.box is not None:
                        b = what.box
                        item["box"] = [b.x0, b.y0, b.x1, b.y1]
                else:
                    item["mask"] = rle.encode_json(what)
                out.append(item)
        return out


class _Stream:
    """One run: the request, its streamed lines, and the feeder thread uploading frames."""

    def __init__(self, session: RemoteSession, request: PropagationRequest,
                 visits: list[int], cancel: CancelToken) -> None:
        self.session = session
        self.request = request
        self.visits = visits
        self.cancel = cancel
        self.run_id = uuid.uuid4().hex
        self._cond = threading.Condition()
        self._received = 0
        self._stopped = False
        self._response: Any = None
        self._error: BaseException | None = None

    def results(self) -> Iterator[FrameResult]:
        s = self.session
        first = sorted({0, self.request.start, *(f for fr in s._anchors.values() for f in fr)})
        body = self._body({i: s.hash_of(i) for i in first})
        http = s.predictor.session
        for attempt in range(3):
            with http.stream("POST", "/v1/propagate", json=body,
                             timeout=s.predictor.embed_timeout) as response:
                if response.status_code == 409 and attempt < 2:
                    missing = _json(response).get("missing")
                    if isinstance(missing, list) and missing:
                        s.upload([str(m) for m in missing])
                        continue
                if response.status_code != 200:
                    response.read()
                    raise http.status_error(response, "the propagation", attempt + 1)
                for i in first:
                    s.settled(i)
                yield from self._read(response)
                return

    def _read(self, response: Any) -> Iterator[FrameResult]:
        http = self.session.predictor.session
        with self._cond:
            self._response = response
        feeder = threading.Thread(target=self._feed, name="maskloop-propagate-feed",
                                  daemon=True)
        feeder.start()
        try:
            for line in http.lines(response):
                item = json.loads(line)
                if item.get("done"):
                    if item.get("stopped") == "error":
                        raise PredictorError(f"the server's propagation failed: "
                                             f"{item.get('message')}")
                    return
                result = _result(item)
                for track, mask in result.masks.items():
                    self.session._left[track] = (result.frame, mask)
                with self._cond:
                    self._received += 1
                    self._cond.notify_all()
                yield result
            raise PredictorError("the server's answer ended before the run did")
        except Exception as exc:  # a cancel closed the stream; or the feeder failed
            if self._error is not None:
                raise self._error from None
            if self.cancel.cancelled:
                return
            if isinstance(exc, PredictorError):
                raise
            raise PredictorError(f"the propagation's stream broke: {exc}") from None
        finally:
            self.stop()
            feeder.join()

    def _body(self, frames: Mapping[int, str]) -> dict[str, Any]:
        r = self.request
        return {"run_id": self.run_id, "length": self.session.length,
                "frames": {str(i): h for i, h in frames.items()},
                "anchors": self.session.anchor_body(r), "start": r.start,
                "direction": r.direction, "count": r.count,
                "tracks": list(r.tracks) if r.tracks is not None else None,
                "stop_when_lost": r.stop_when_lost, "lost_score": r.lost_score,
                "stop_at_anchors": r.stop_at_anchors}

    def _feed(self) -> None:
        """Upload and announce the run's next frames, ``lookahead`` ahead of the results; a
        cancel (polled every 50 ms) or a failed upload closes the stream."""
        s = self.session
        http = s.predictor.session
        try:
            for n, index in enumerate(self.visits[1:], start=1):
                with self._cond:
                    while (not self._stopped and not self.cancel.cancelled
                           and n > self._received + s.lookahead):
                        self._cond.wait(0.05)
                    if self._stopped or self.cancel.cancelled:
                        break
                response = http.request(
                    "POST", f"/v1/propagate/{self.run_id}/frames", ok=(200, 404),
                    json={"frames": {str(index): s.hash_of(index)}},
                    what=f"announcing frame {index}")
                if response.status_code == 404:  # the run is over (every track ended)
                    return
                missing = response.json().get("missing")
                if missing:
                    s.upload([str(m) for m in missing])
                s.settled(index)
            with self._cond:  # every frame is up: wait for the end or a cancel
                while not self._stopped and not self.cancel.cancelled:
                    self._cond.wait(0.05)
        except Exception as exc:  # the run's error: the reader raises it
            with self._cond:
                if self._stopped:
                    return
                self._error = exc if isinstance(exc, PredictorError) else PredictorError(
                    f"sending frames to the server failed: {exc}")
        self.stop()

    def stop(self) -> None:
        """Close the stream (the server stops the run) and let the feeder go."""
        with self._cond:
            self._stopped = True
            response, self._response = self._response, None
            self._cond.notify_all()
        if response is not None:
            response.close()


def _json(response: Any) -> dict[str, Any]:
    response.read()
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _result(item: Mapping[str, Any]) -> FrameResult:
    """A ``FrameLine`` of the answer as a FrameResult."""
    try:
        h, w = (int(v) for v in item["size"])
        masks = {int(t): rle.decode({"size": [h, w], "counts": c})
                 for t, c in item["masks"].items()}
        scores = {int(t): float(v) for t, v in item.get("scores", {}).items()}
        return FrameResult(int(item["frame"]), masks, scores,
                           tuple(int(t) for t in item.get("lost", ())))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise PredictorError(f"the server sent a frame line this client cannot read: {exc}"
                             ) from None
