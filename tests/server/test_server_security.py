"""Auth, limits, validation and SSRF, against a real server on 127.0.0.1 over the GrabCut
predictor (the plumbing is the same for every backend, and GrabCut embeds in milliseconds)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from server_helpers import b64_image, make_image, png_bytes

from app.core.types import Point, Prompt
from app.server.security import bearer_token, is_public_address, key_matches
from app.wire import messages as wire

KEY = "s3cret-key"
POINT_PROMPT = {"prompts": [{"points": [{"x": 30, "y": 20, "positive": True}]}]}


@pytest.fixture
def keyed(serve, classical_predictor):
    return serve(classical_predictor, api_key=KEY)


@pytest.fixture
def image_server(image_png: bytes) -> Iterator[str]:
    """A plain http.server on 127.0.0.1 serving the test PNG at /img.png, a redirect to it at
    /redirect, and 404 elsewhere."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/img.png":
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(image_png)))
                self.end_headers()
                self.wfile.write(image_png)
            elif self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", "/img.png")
                self.end_headers()
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def segment_body(image_png: bytes, **extra: object) -> dict:
    return {"image": b64_image(image_png), "prompts": POINT_PROMPT, **extra}


# -- API key ------------------------------------------------------------------------------


def test_key_helpers() -> None:
    assert key_matches(None, None) and key_matches(None, "x")
    assert key_matches("k", "k") and not key_matches("k", "K") and not key_matches("k", None)
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None


def test_roboflow_routes_need_the_key_each_way_works(keyed, image_png: bytes) -> None:
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        r = c.post("/sam2/segment_image", json=segment_body(image_png))
        assert r.status_code == 401, r.text
        assert "API key" in r.json()["message"]
        assert c.post("/sam2/segment_image", json=segment_body(image_png),
                      params={"api_key": "wrong"}).status_code == 401
        # 1. query string (inference-sdk's v0 mode)
        r = c.post("/sam2/segment_image", json=segment_body(image_png), params={"api_key": KEY})
        assert r.status_code == 200, r.text
        # 2. in the body (inference-sdk's v1 mode)
        r = c.post("/sam2/segment_image", json=segment_body(image_png, api_key=KEY))
        assert r.status_code == 200, r.text
        # 3. Authorization: Bearer
        r = c.post("/sam2/embed_image", json={"image": b64_image(image_png)},
                   headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200, r.text
        # an unauthenticated bad body is still 401, not 422
        assert c.post("/sam2/segment_image", json={"nonsense": 1}).status_code == 401
        # /healthz and /info are open, like Roboflow's
        assert c.get("/healthz").json() == {"status": "healthy"}
        assert c.get("/info").status_code == 200


def test_own_routes_need_the_key(keyed, image_png: bytes) -> None:
    digest = hashlib.sha256(image_png).hexdigest()
    with httpx.Client(base_url=keyed.url, timeout=60) as c:
        assert c.get("/v1/info").status_code == 401
        assert c.put(f"/v1/images/{digest}", content=image_png).status_code == 401
        assert c.get("/v1/info", params={"api_key": KEY}).status_code == 200
        auth = {"Authorization": f"Bearer {KEY}"}
        assert c.put(f"/v1/images/{digest}", content=image_png, headers=auth).status_code == 200
        body = wire.prompt_to_wire(wire.PredictRequest(Prompt(points=(Point(30.5, 20.5),))))
        assert c.post(f"/v1/images/{digest}/predict", json=body).status_code == 401
        r = c.post(f"/v1/images/{digest}/predict", json=body, headers=auth)
        assert r.status_code == 200, r.text
        assert wire.decode_prediction(r.content).masks.shape == (3, 48, 64)


# -- limits and validation ----------------------------------------------------------------


def test_request_and_pixel_limits_are_413(serve, classical_predictor) -> None:
    srv = serve(classical_predictor, max_request_bytes=50_000, max_image_pixels=5_000)
    big = png_bytes(make_image(100, 80))  # 8,000 pixels
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    huge = png_bytes(noise)  # > 50 kB
    assert len(huge) > 50_000
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/sam2/segment_image", json=segment_body(huge))
        assert r.status_code == 413 and "--max-request-bytes" in r.json()["message"]
        r = c.put(f"/v1/images/{hashlib.sha256(huge).hexdigest()}", content=huge)
        assert r.status_code == 413
        r = c.post("/sam2/segment_image", json=segment_body(big))
        assert r.status_code == 413 and "--max-image-pixels" in r.json()["message"]
        r = c.post("/v1/images", content=big)
        assert r.status_code == 413
        # the server still works afterwards
        assert c.post("/sam2/segment_image", json=segment_body(png_bytes(make_image(40, 30)))
                      ).status_code == 200


def test_undecodable_images_are_400(serve, classical_predictor) -> None:
    srv = serve(classical_predictor)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/sam2/segment_image",
                   json={"image": {"type": "base64", "value": "aGVsbG8gd29ybGQ="},
                         "prompts": POINT_PROMPT})
        assert r.status_code == 400 and "decoded" in r.json()["message"]
        r = c.post("/sam2/segment_image",
                   json={"image": {"type": "base64", "value": "***"}, "prompts": POINT_PROMPT})
        assert r.status_code == 400 and "base64" in r.json()["message"]
        r = c.post("/sam2/embed_image", json={"image": {"type": "numpy", "value": "x"}})
        assert r.status_code == 400 and "not supported" in r.json()["message"]
        assert c.post("/v1/images", content=b"not an image").status_code == 400
        r = c.post("/sam2/segment_image", json={"image_id": "never-seen", "prompts": POINT_PROMPT})
        assert r.status_code == 400 and "never-seen" in r.json()["message"]


@pytest.mark.parametrize("body, where", [
    ({"sam2_version_id": "hiera_huge"}, "sam2_version_id"),
    ({"format": "gif"}, "format"),
    ({"prompts": {"prompts": [{"points": [{"x": "left", "y": 1, "positive": True}]}]}},
     "prompts"),
    ({"prompts": {"prompts": [{"box": {"x": 1, "y": 2}}]}}, "prompts"),
    ({"multimask_output": "perhaps"}, "multimask_output"),
    ({"prompts": []}, "prompt"),
])
def test_validation_errors_are_422(serve, classical_predictor, image_png: bytes,
                                   body: dict, where: str) -> None:
    srv = serve(classical_predictor)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/sam2/segment_image", json={**segment_body(image_png), **body})
        assert r.status_code == 422, r.text
        assert where in r.json()["message"]


def test_own_route_validation(serve, classical_predictor) -> None:
    srv = serve(classical_predictor)
    image_png = png_bytes(make_image(seed=5))  # an image no other test has sent
    digest = hashlib.sha256(image_png).hexdigest()
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        assert c.head("/v1/images/not-a-hash").status_code == 422
        r = c.put(f"/v1/images/{'0' * 64}", content=image_png)
        assert r.status_code == 422 and digest in r.json()["message"]
        r = c.post(f"/v1/images/{digest}/predict", json={"points": [[1, 2, 1]]})
        assert r.status_code == 404 and "send the image" in r.json()["message"]
        assert c.put(f"/v1/images/{digest}", content=image_png).status_code == 200
        assert c.post(f"/v1/images/{digest}/predict", json={"points": []}).status_code == 422
        assert c.post(f"/v1/images/{digest}/predict", content=b"{").status_code == 422
        r = c.post(f"/v1/images/{digest}/predict",
                   json={"points": [[1, 2, 1]], "refine": {"result": 999, "candidate": 0}})
        assert r.status_code == 409 and "expired" in r.json()["message"]
        # GrabCut has no embedding arrays: hybrid mode is not offered
        assert c.get(f"/v1/images/{digest}/embedding").status_code == 501


# -- SSRF -----------------------------------------------------------------------------------


@pytest.mark.parametrize("address, public", [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("240.0.0.1", False), ("::1", False), ("fe80::1", False), ("fc00::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("2002:7f00:1::", False),
])
def test_public_addresses(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_private_urls_are_refused_unless_allowed(serve, classical_predictor,
                                                 image_server: str) -> None:
    strict = serve(classical_predictor)
    urls = [f"{image_server}/img.png", image_server.replace("127.0.0.1", "localhost")
            + "/img.png", f"{image_server}/redirect"]
    with httpx.Client(base_url=strict.url, timeout=60) as c:
        for url in urls:
            r = c.post("/sam2/segment_image",
                       json={"image": {"type": "url", "value": url}, "prompts": POINT_PROMPT})
            assert r.status_code == 400, (url, r.text)
            assert "refused" in r.json()["message"]
        r = c.post("/sam2/embed_image", json={"image": {"type": "url", "value": "file:///etc/passwd"}})
        assert r.status_code == 400 and "http(s)" in r.json()["message"]
    allowed = serve(classical_predictor, allow_private_urls=True)
    with httpx.Client(base_url=allowed.url, timeout=60) as c:
        for url in (f"{image_server}/img.png", f"{image_server}/redirect"):
            r = c.post("/sam2/segment_image",
                       json={"image": {"type": "url", "value": url}, "prompts": POINT_PROMPT})
            assert r.status_code == 200, (url, r.text)
        r = c.post("/sam2/embed_image",
                   json={"image": {"type": "url", "value": f"{image_server}/missing.png"}})
        assert r.status_code == 400 and "404" in r.json()["message"]


def test_a_busy_model_answers_504_not_never(serve, classical_predictor, image_png) -> None:
    srv = serve(classical_predictor, request_timeout_s=0.5)
    worker = srv.server.config.app.state.maskloop.worker
    release = threading.Event()
    blocker = threading.Thread(target=lambda: worker.run(release.wait, 30, timeout=60))
    blocker.start()  # the model thread is now busy until `release` is set
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            r = c.post("/sam2/segment_image", json=segment_body(image_png))
            assert r.status_code == 504 and "did not answer" in r.json()["message"]
            release.set()
            blocker.join(10)
            assert c.post("/sam2/segment_image", json=segment_body(image_png)).status_code == 200
    finally:
        release.set()
        blocker.join(10)
