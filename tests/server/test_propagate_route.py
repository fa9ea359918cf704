"""``POST /v1/propagate`` on a real server on 127.0.0.1: the classical backend (GrabCut is
deterministic: GRABCUT_SEED) gives exactly the local session's masks; frames stream as they
finish; a client that goes away stops the run; missing files are listed; a click from
another client is answered while a run is under way. SAM2 tiny with random weights checks
the plumbing on a few frames."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.core import rle
from app.core.sequences import ArraySequence
from app.predict.classical.propagate import ClassicalPropagator
from app.predict.hosted.common import encode_image
from app.predict.propagation import FrameResult, PropagationRequest
from app.server.app import RunningServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "predict" / "classical"))
from test_propagate import disc_sequence, two_disc_sequence  # noqa: E402


def _png(frame: np.ndarray) -> bytes:
    return encode_image(np.ascontiguousarray(frame), "png")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _upload(url: str, seq: ArraySequence) -> list[str]:
    """PUT every frame; their hashes."""
    hashes = []
    for i in range(len(seq)):
        data = _png(seq.frame(i))
        digest = _sha(data)
        r = httpx.put(f"{url}/v1/images/{digest}", content=data, timeout=60)
        assert r.status_code == 200, r.text
        hashes.append(digest)
    return hashes


def _body(hashes: list[str], masks: dict[int, np.ndarray], announced: int | None = None,
          **over: Any) -> dict[str, Any]:
    n = len(hashes) if announced is None else announced
    return {"run_id": uuid.uuid4().hex, "length": len(hashes),
            "frames": {str(i): h for i, h in enumerate(hashes[:n])},
            "anchors": [{"frame": 0, "track": t, "mask": rle.encode_json(m)}
                        for t, m in masks.items()],
            "start": 0, **over}


def _frame(line: dict[str, Any]) -> FrameResult:
    h, w = line["size"]
    return FrameResult(line["frame"], {int(t): rle.decode({"size": [h, w], "counts": c})
                                       for t, c in line["masks"].items()},
                       {int(t): s for t, s in line["scores"].items()}, tuple(line["lost"]))


def _stats(srv: RunningServer) -> Any:
    return srv.server.config.app.state.maskloop.runs.stats


def _wait_until(what: Callable[[], bool], limit: float = 30.0) -> None:
    """Wait for the server's side of an event (not a timing assertion: the limit only
    keeps a broken server from hanging the test)."""
    deadline = time.monotonic() + limit
    while not what():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.01)


@pytest.fixture
def classical(serve, classical_predictor) -> RunningServer:
    return serve(classical_predictor)


def test_streamed_masks_equal_the_local_session(classical: RunningServer) -> None:
    seq, a, b = two_disc_sequence()
    hashes = _upload(classical.url, seq)
    r = httpx.post(f"{classical.url}/v1/propagate", json=_body(hashes, {1: a[0], 2: b[0]}),
                   timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[-1] == {"done": True, "stopped": "end", "frames": 8}
    remote = [_frame(x) for x in lines[:-1]]
    local = ClassicalPropagator().open(seq)
    local.add_mask(0, 1, a[0])
    local.add_mask(0, 2, b[0])
    expected = local.propagate(PropagationRequest(0)).wait().results
    assert [x.frame for x in remote] == [x.frame for x in expected] == list(range(8))
    for got, want in zip(remote, expected, strict=True):
        assert got.masks.keys() == want.masks.keys() == {1, 2}
        for t in want.masks:
            assert np.array_equal(got.masks[t], want.masks[t]), (got.frame, t)
        assert got.scores == want.scores


def test_missing_files_are_listed_with_409(classical: RunningServer) -> None:
    seq, a = disc_sequence(4)
    hashes = [_sha(_png(seq.frame(i))) for i in range(4)]
    r = httpx.post(f"{classical.url}/v1/propagate", json=_body(hashes, {1: a[0]}, start=2),
                   timeout=60)
    assert r.status_code == 409
    body = r.json()
    assert "upload them" in body["message"]
    assert body["missing"] == [hashes[0], hashes[2]]  # frame 0 (the anchor) and the start
    # frames 1 and 3 are needed later, as the run reaches them


def _lines(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line:
            yield json.loads(line)


def test_frames_stream_as_they_finish_and_later_frames_are_awaited(
        classical: RunningServer) -> None:
    seq, a = disc_sequence(6)
    hashes = _upload(classical.url, seq)
    body = _body(hashes, {1: a[0]}, announced=2)  # frames 2.. are not announced yet
    stats = _stats(classical)
    with httpx.stream("POST", f"{classical.url}/v1/propagate", json=body,
                      timeout=60) as response:
        lines = _lines(response)
        first, second = next(lines), next(lines)
        assert (first["frame"], second["frame"]) == (0, 1)
        assert stats.running == 1  # seen before the run ended: it waits for frame 2
        r = httpx.post(f"{classical.url}/v1/propagate/{body['run_id']}/frames",
                       json={"frames": {str(i): hashes[i] for i in range(2, 6)}}, timeout=30)
        assert r.status_code == 200 and r.json() == {"missing": []}
        rest = list(lines)
    assert [x["frame"] for x in rest[:-1]] == [2, 3, 4, 5]
    assert rest[-1]["stopped"] == "end"


def test_a_client_going_away_stops_the_run(classical: RunningServer) -> None:
    seq, a = disc_sequence(20)
    hashes = _upload(classical.url, seq)
    body = _body(hashes, {1: a[0]}, announced=5)
    stats = _stats(classical)
    with httpx.stream("POST", f"{classical.url}/v1/propagate", json=body,
                      timeout=60) as response:
        lines = _lines(response)
        assert [next(lines)["frame"] for _ in range(3)] == [0, 1, 2]
    # the client left after 3 frames: the run, waiting for frame 5, ends as cancelled
    # (left alone it would wait --frame-wait seconds and end with an error line)
    _wait_until(lambda: stats.running == 0)
    assert stats.cancelled == 1 and stats.last_run_frames <= 5
    assert stats.frames <= 5
    r = httpx.post(f"{classical.url}/v1/propagate/{body['run_id']}/frames",
                   json={"frames": {"5": hashes[5]}}, timeout=30)
    assert r.status_code == 404 and "no run" in r.json()["message"]


def test_a_click_is_answered_while_a_run_is_under_way(classical: RunningServer,
                                                      image_png: bytes) -> None:
    seq, a = disc_sequence(40)
    hashes = _upload(classical.url, seq)
    body = _body(hashes, {1: a[0]}, announced=30)  # the run cannot end: frames 30.. wait
    stats = _stats(classical)
    digest = _sha(image_png)
    assert httpx.put(f"{classical.url}/v1/images/{digest}", content=image_png,
                     timeout=60).status_code == 200
    with httpx.stream("POST", f"{classical.url}/v1/propagate", json=body,
                      timeout=60) as response:
        lines = _lines(response)
        assert next(lines)["frame"] == 0
        click = httpx.post(f"{classical.url}/v1/images/{digest}/predict",
                           json={"points": [[30, 20, 1]]}, timeout=60)
        assert click.status_code == 200
        assert stats.running == 1  # answered during the run, not after it
        assert [x["frame"] for x in islice(lines, 29)] == list(range(1, 30))


def test_info_tells_the_limits(serve, classical_predictor) -> None:
    srv = serve(classical_predictor, max_propagate_frames=100, max_tracks=3)
    info = httpx.get(f"{srv.url}/v1/info", timeout=30).json()
    assert (info["propagate"], info["max_propagate_frames"], info["max_tracks"]) == (
        True, 100, 3)


@pytest.mark.slow
def test_sam2_tiny_streams_the_local_sessions_masks(serve, sam2_predictor) -> None:
    """Random weights: the plumbing (frames by hash, features from the cache the upload
    filled, memories, lines), not the masks' quality."""
    from app.predict.sam2.video import SAM2Propagator

    seq, a = disc_sequence(3)
    srv = serve(sam2_predictor)
    hashes = _upload(srv.url, seq)
    r = httpx.post(f"{srv.url}/v1/propagate", json=_body(hashes, {1: a[0]}), timeout=300)
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[-1] == {"done": True, "stopped": "end", "frames": 3}
    remote = [_frame(x) for x in lines[:-1]]
    srv.stop()  # the model thread ends: the predictor is this thread's again
    session = SAM2Propagator(sam2_predictor).open(seq, lambda i: hashes[i])
    session.add_mask(0, 1, a[0])
    local = session.propagate(PropagationRequest(0)).wait().results
    for got, want in zip(remote, local, strict=True):
        assert got.frame == want.frame
        assert np.array_equal(got.masks[1], want.masks[1])
        assert got.scores[1] == pytest.approx(want.scores[1], abs=1e-5)


def test_the_openapi_document_describes_the_stream_and_its_errors(
        classical: RunningServer) -> None:
    doc = httpx.get(f"{classical.url}/openapi.json", timeout=30).json()
    answers = doc["paths"]["/v1/propagate"]["post"]["responses"]
    lines = answers["200"]["content"]["application/x-ndjson"]["schema"]["oneOf"]
    assert [x["title"] for x in lines] == ["FrameLine", "DoneLine"]
    assert {"400", "401", "409", "422", "500", "501"} <= set(answers)
    missing = answers["409"]["content"]["application/json"]["schema"]["$ref"]
    assert missing.endswith("/MissingFrames")
    request = doc["components"]["schemas"]["PropagateRequest"]
    assert request["properties"]["run_id"]["pattern"] == "^[0-9a-f]{32}$"
