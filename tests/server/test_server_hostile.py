"""Inputs that hurt a server, against a real one on 127.0.0.1 over a random-weight SAM2 tiny:
one table of hostile requests, each with its status and a fragment of its message (every
error in the one shape ``{"message": ...}``, no internals), slow clients on raw sockets, a
model timeout that stops the work it started, and, after everything, a click that works."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from server_helpers import b64_image, make_image, png_bytes

from app.core import rle
from app.core.images import load_image
from app.server.app import RunningServer, create_app, start_in_thread
from app.server.encoding import pixels_hash
from app.server.settings import ServerSettings

pytestmark = pytest.mark.slow  # the first request encodes the test image with SAM2 on a CPU

KEY = "hostile-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLICK = {"x": 30, "y": 20, "positive": True}
LIMITS = {"api_key": KEY, "allow_private_urls": True, "max_request_bytes": 8 << 20,
          "header_timeout_s": 1.0, "body_timeout_s": 1.0, "url_timeout_s": 1.5}


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _tga() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(make_image()).save(buf, format="TGA")
    return buf.getvalue()


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
       b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n")
IMAGE = b64_image(png_bytes(make_image()))


def _seg(prompts: Any, **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, "prompts": {"prompts": prompts}, **extra}


def _literal(number: str, box: bool = False) -> bytes:
    """A segment request with a JSON number that Python's json.dumps would not write."""
    prompt = (f'{{"box": {{"x": {number}, "y": 20, "width": 10, "height": 10}}}}' if box else
              f'{{"points": [{{"x": {number}, "y": 20, "positive": true}}]}}')
    return f'{{"image": {json.dumps(IMAGE)}, "prompts": {{"prompts": [{prompt}]}}}}'.encode()


def _logits(codec: str, data: bytes) -> dict[str, Any]:
    return {"points": [[30, 20, 1]],
            "mask_input": {"codec": codec, "data": base64.b64encode(data).decode()}}


@dataclass
class Case:
    """One hostile request: ``path`` may hold "{digest}", the test image's sha256."""

    name: str
    path: str
    status: int
    fragment: str
    method: str = "POST"
    kwargs: dict[str, Any] = field(default_factory=dict)
    auth: bool = True


def _propagate(**over: Any) -> dict[str, Any]:
    """A /v1/propagate request over the test image as its one frame (48 x 64), changed by
    ``over``."""
    digest = hashlib.sha256(png_bytes(make_image())).hexdigest()
    square = np.zeros((48, 64), bool)
    square[10:30, 20:40] = True
    mask = rle.encode_json(square)
    body = {"run_id": "0" * 32, "length": 1, "frames": {"0": digest}, "start": 0,
            "anchors": [{"frame": 0, "track": 1, "mask": mask}]}
    return {**body, **over}


def _propagate_nan() -> bytes:
    body = json.dumps(_propagate(lost_score=0.25))
    return body.replace("0.25", "NaN").encode()


JSON = {"Content-Type": "application/json"}
CASES = [
    # 1. images whose sides, not pixels, would exhaust memory (1 x 1,000,000: 2 KB of PNG)
    Case("tall 1 x 1,000,000", "/sam2/embed_image", 413, "longest side",
         kwargs={"json": {"image": b64_image(_png(np.zeros((1_000_000, 1), np.uint8)))}}),
    Case("thin 1 x 60,000", "/v1/images", 413, "100 times",
         kwargs={"content": _png(np.zeros((1, 60_000), np.uint8))}),
    # 2. formats outside the allow-list (EPS would run Ghostscript)
    Case("EPS (Roboflow)", "/sam2/embed_image", 400, "accepted: JPEG",
         kwargs={"json": {"image": b64_image(EPS)}}),
    Case("EPS (/v1)", "/v1/images", 400, "accepted: JPEG", kwargs={"content": EPS}),
    Case("TGA (/v1)", "/v1/images", 400, "accepted: JPEG", kwargs={"content": _tga()}),
    # 4. non-finite numbers
    Case("point x NaN", "/sam2/segment_image", 422, "finite",
         kwargs={"content": _literal("NaN"), "headers": JSON}),
    Case("point x Infinity", "/sam2/segment_image", 422, "finite",
         kwargs={"content": _literal("Infinity"), "headers": JSON}),
    Case("point x 1e400", "/sam2/segment_image", 422, "finite",
         kwargs={"content": _literal("1e400"), "headers": JSON}),
    Case("box x NaN", "/sam2/segment_image", 422, "finite",
         kwargs={"content": _literal("NaN", box=True), "headers": JSON}),
    Case("/v1 box NaN", "/v1/images/{digest}/predict", 422, "finite",
         kwargs={"content": b'{"points": [], "box": [NaN, 1, 20, 20]}'}),
    Case("/v1 point 1e400", "/v1/images/{digest}/predict", 422, "finite",
         kwargs={"content": b'{"points": [[1e400, 1, 1]]}'}),
    Case("/v1 mask_input inf", "/v1/images/{digest}/predict", 422, "finite",
         kwargs={"json": _logits("f16", np.full(256 * 256, np.inf, np.float16).tobytes())}),
    Case("/v1 mask_input zlib bomb", "/v1/images/{digest}/predict", 422, "inflate",
         kwargs={"json": _logits("q8z", zlib.compress(b"\0" * (64 << 20), 9))}),
    # 5. unbounded work per request
    Case("10,000 points", "/sam2/segment_image", 422, "--max-points",
         kwargs={"json": _seg([{"points": [CLICK] * 10_000}])}),
    Case("100 prompts", "/sam2/segment_image", 422, "--max-prompts",
         kwargs={"json": _seg([{"points": [CLICK]}] * 100)}),
    Case("/v1 10,000 points", "/v1/images/{digest}/predict", 422, "--max-points",
         kwargs={"json": {"points": [[30, 20, 1]] * 10_000}}),
    Case("/v1/propagate 20,000 frames", "/v1/propagate", 422, "at most 10,000",
         kwargs={"json": _propagate(length=20_000)}),
    Case("/v1/propagate 65 tracks", "/v1/propagate", 422, "at most 64",
         kwargs={"json": _propagate(length=2, anchors=[
             {"frame": 0, "track": t, "points": [[1, 1, 1]]} for t in range(65)])}),
    Case("/v1/propagate lost_score NaN", "/v1/propagate", 422, "finite",
         kwargs={"content": _propagate_nan(), "headers": JSON}),
    Case("/v1/propagate point 1e400", "/v1/propagate", 422, "finite",
         kwargs={"content": json.dumps(_propagate(anchors=[
             {"frame": 0, "track": 1, "points": [[5, 5, 1]]}])).replace("[5, 5, 1]",
             "[1e400, 5, 1]").encode(), "headers": JSON}),
    Case("/v1/propagate bad RLE", "/v1/propagate", 422, "bad RLE mask",
         kwargs={"json": _propagate(anchors=[{"frame": 0, "track": 1, "mask": {
             "size": [48, 64], "counts": "PPPP"}}])}),
    Case("/v1/propagate RLE over the frame", "/v1/propagate", 422, "not the frame's",
         kwargs={"json": _propagate(anchors=[{"frame": 0, "track": 1, "mask": {
             "size": [48, 64], "counts": "0"}}])}),
    Case("/v1/propagate unknown track", "/v1/propagate", 422, "track 9 has no anchor",
         kwargs={"json": _propagate(tracks=[9])}),
    Case("/v1/propagate frame out of range", "/v1/propagate", 422, "outside the 1 frames",
         kwargs={"json": _propagate(start=3)}),
    # 6. ids bounded by length
    Case("image_id of 1 MB", "/sam2/embed_image", 422, "at most 256 characters",
         kwargs={"json": {"image": IMAGE, "image_id": "x" * 1_000_000}}),
    # 8. the key before anything else
    Case("no key, 6 MB body", "/sam2/segment_image", 401, "API key", auth=False,
         kwargs={"content": b'{"image": {"type": "base64", "value": "' + b"A" * (6 << 20)
                 + b'"}}', "headers": JSON}),
    Case("no key, malformed JSON", "/sam2/segment_image", 401, "API key", auth=False,
         kwargs={"content": b"{", "headers": JSON}),
    Case("wrong key in body", "/sam2/segment_image", 401, "API key", auth=False,
         kwargs={"json": {**_seg([{"points": [CLICK]}]), "api_key": "guess"}}),
    Case("no key, /v1 upload", "/v1/images", 401, "API key", auth=False,
         kwargs={"content": b"x" * (1 << 20)}),
    # 9. one error shape, also for routes that do not exist
    Case("unknown route", "/nope", 404, "not found", method="GET"),
    Case("wrong method", "/sam2/segment_image", 405, "method not allowed", method="GET"),
    Case("body over the limit", "/v1/images", 413, "--max-request-bytes",
         kwargs={"content": b"x" * (9 << 20)}),
]


@pytest.fixture(scope="module")
def server(sam2_predictor) -> Iterator[RunningServer]:
    srv = start_in_thread(create_app(sam2_predictor, ServerSettings(**LIMITS)))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def digest(server: RunningServer) -> str:
    data = png_bytes(make_image())
    image_hash = hashlib.sha256(data).hexdigest()
    r = httpx.put(f"{server.url}/v1/images/{image_hash}", content=data, headers=AUTH,
                  timeout=120)
    assert r.status_code == 200, r.text
    return image_hash


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_request(server: RunningServer, digest: str, case: Case) -> None:
    headers = {**(AUTH if case.auth else {}), **case.kwargs.get("headers", {})}
    kwargs = {**case.kwargs, "headers": headers}
    t0 = time.perf_counter()
    r = httpx.request(case.method, server.url + case.path.format(digest=digest),
                      timeout=60, **kwargs)
    assert r.status_code == case.status, r.text[:500]
    body = r.json()
    assert set(body) <= {"message", "detail"} and isinstance(body["message"], str), body
    assert case.fragment in body["message"], body["message"]
    assert "Ghostscript" not in r.text and "Traceback" not in r.text
    assert time.perf_counter() - t0 < 10  # none of them costs the server much


@pytest.mark.parametrize("body", [{"image": IMAGE}, {"image": IMAGE, "prompts": None},
                                  {"image": IMAGE, "prompts": {}}])
def test_no_prompts_get_one_unprompted_mask_as_from_roboflow(server, body) -> None:
    """inference-sdk's ``sam2_segment_image(prompts=None)`` leaves "prompts" out: Roboflow's
    server decodes no prompt at all and answers one prediction; so does this one."""
    r = httpx.post(f"{server.url}/sam2/segment_image", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert 0.0 <= pred["confidence"] <= 1.5 and pred["format"] == "polygon"


def test_16_bit_png_is_decoded_like_the_app(server, tmp_path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    app_pixels = load_image(path)
    assert app_pixels.mean() == pytest.approx(127.5)
    r = httpx.post(f"{server.url}/sam2/embed_image",
                   json={"image": b64_image(path.read_bytes())}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    # the Roboflow image id is the md5 of the decoded pixels: the server saw the app's pixels
    assert r.json()["image_id"] == hashlib.md5(app_pixels.tobytes()).hexdigest()[:12]


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed ``sock`` within ``seconds``, and what it sent first."""
    sock.settimeout(0.2)
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


def _connect(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_stalled_headers_and_bodies_are_cut_at_their_deadlines(server, digest) -> None:
    heads = [_connect(server) for _ in range(3)]
    for i, s in enumerate(heads):  # half a request line, half the headers, nothing at all
        s.sendall([b"POST /sam2/segm", b"POST /v1/images HTTP/1.1\r\nHost: x\r\n", b""][i])
    body = b'{"image": {"type": "base64", "value": "'
    bodies = [_connect(server) for _ in range(3)]
    for s in bodies:
        s.sendall(b"POST /sam2/segment_image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + KEY.encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(10_000).encode() + b"\r\n\r\n" + body)
    t0 = time.monotonic()
    for s in heads:  # header deadline 1 s
        closed, _ = _closed_within(s, 5.0)
        assert closed, "a connection stalled in its headers is still open"
    for s in bodies:  # body deadline 1 s: 408, then closed
        closed, got = _closed_within(s, 5.0)
        assert closed and got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"--body-timeout" in got
    assert time.monotonic() - t0 < 6
    for s in heads + bodies:
        s.close()


def test_a_dripping_image_url_is_cut_at_the_deadline(server) -> None:
    class Drip(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):  # one byte every 0.25 s: each read is quick, the whole is not
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.25)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/drip.png"
        t0 = time.perf_counter()
        r = httpx.post(f"{server.url}/sam2/embed_image", headers=AUTH, timeout=60,
                       json={"image": {"type": "url", "value": url}})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 400 and "--url-timeout" in r.json()["message"], r.text
        assert elapsed < 1.5 + 1.5, elapsed  # the 1.5 s deadline, not 250 s of drip
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_timed_out_embedding_stops_the_model(serve, sam2_predictor) -> None:
    srv = serve(sam2_predictor, request_timeout_s=0.3)
    worker = srv.server.config.app.state.maskloop.worker
    pixels = make_image(seed=1234)  # never embedded: the encoder must run (seconds on a CPU)
    r = httpx.post(f"{srv.url}/sam2/embed_image", json={"image": b64_image(png_bytes(pixels))},
                   timeout=60)
    assert r.status_code == 504 and "did not answer" in r.json()["message"]
    t0 = time.perf_counter()
    worker.run(lambda: None, timeout=60)  # waits for whatever the model thread still does
    assert time.perf_counter() - t0 < 2.0  # stopped within an encoder block, not the whole
    # the encoder stopped before its end, so nothing was cached (it would be, had it finished)
    assert not worker.has_embedding(worker.key_for(pixels_hash(pixels)))


def test_a_500_shows_no_internals(serve, classical_predictor, image_png, monkeypatch) -> None:
    srv = serve(classical_predictor)
    worker = srv.server.config.app.state.maskloop.worker

    def explode(*_: object) -> None:
        raise RuntimeError("gs -dSAFER -sDEVICE=ppmraw: tried to allocate 491 GB")

    monkeypatch.setattr(worker, "embed", explode)
    r = httpx.post(f"{srv.url}/sam2/embed_image", json={"image": b64_image(image_png)},
                   timeout=60)
    assert r.status_code == 500 and set(r.json()) == {"message"}
    assert "internal error (id " in r.json()["message"]
    assert "gs" not in r.text and "491" not in r.text and "RuntimeError" not in r.text


def test_openapi_lists_every_error_and_constraint(server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    for path, methods in doc["paths"].items():
        if not path.startswith(("/sam2/", "/v1/")):
            continue
        for op in methods.values():
            for status in ("401", "408", "422", "500"):
                content = op["responses"][status]["content"]["application/json"]
                assert content["schema"] == error, (path, status)
    segment = doc["paths"]["/sam2/segment_image"]["post"]["responses"]
    assert {"400", "413", "504"} <= set(segment)
    schemas = doc["components"]["schemas"]
    image_id = schemas["Sam2SegmentationRequest"]["properties"]["image_id"]["anyOf"][0]
    assert image_id["maxLength"] == 256
    assert "--max-points" in schemas["Sam2SegmentationRequest"]["properties"]["prompts"][
        "description"]


def test_caches_are_bounded_by_bytes(server) -> None:
    # BoundedCache itself is tested in tests/core/test_lru.py
    state = server.server.config.app.state.maskloop
    assert state.rf_images.memory.by_bytes and state.rf_logits.by_bytes
    assert state.rf_images.max_bytes == state.settings.id_bytes
    assert state.rf_logits.maxsize == state.settings.logits_bytes


def test_the_encoder_resize_of_a_tall_image_needs_little_memory() -> None:
    """1 x 200,000 pixels: torch's antialiased resize alone would take 2.4 GB."""
    code = (
        "import resource, numpy as np, torch\n"
        "from app.predict.sam2.reference import resize_square\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "x = resize_square(np.zeros((200_000, 1, 3), np.uint8), 1024, torch.device('cpu'))\n"
        "assert tuple(x.shape) == (1, 3, 1024, 1024)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert int(out.stdout.strip()) < 300, out.stdout  # MB


def test_after_all_that_the_server_still_answers_a_click(server, digest) -> None:
    r = httpx.post(f"{server.url}/sam2/segment_image", json=_seg([{"points": [CLICK]}]),
                   headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 1
    r = httpx.post(f"{server.url}/v1/images/{digest}/predict", json={"points": [[30, 20, 1]]},
                   headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
