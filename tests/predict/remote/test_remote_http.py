"""The HTTP layer of the remote backends: Retry-After, redaction, retries and clear errors
(against a tiny stand-in server on 127.0.0.1; the real server is in test_remote.py)."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.predict.base import PredictorError
from app.predict.remote.http_session import HttpSession, parse_retry_after, redact
from app.predict.remote.predictor import RemotePredictor


def test_parse_retry_after_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(future, now=now) <= 31
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_redact():
    assert redact("GET /x?api_key=abc123 failed", ["abc123", None, ""]) == \
        "GET /x?api_key=*** failed"


class Script:
    """Canned answers by path: a list of (status, headers, body) consumed in order; the last
    one repeats."""

    def __init__(self, routes: dict[str, list[tuple[int, dict[str, str], bytes]]]) -> None:
        self.routes = routes
        self.hits: list[str] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                script.hits.append(self.path)
                answers = script.routes.get(self.path.split("?")[0]) or [(404, {}, b"{}")]
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()


@pytest.fixture
def script() -> Iterator[Script]:
    info = json.dumps({"model_id": "sam2.1_hiera_tiny", "description": "SAM2.1 tiny"}).encode()
    s = Script({"/healthz": [(503, {"Retry-After": "0"}, b"{}"), (200, {}, b"{}")],
                "/v1/info": [(429, {"Retry-After": "0"}, b"{}"), (200, {}, info)]})
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def test_connection_check_retries_503_and_429(script):
    rp = RemotePredictor(script.url, "k", backoff=0.01)
    assert rp.model_id == "sam2.1_hiera_tiny"
    assert script.hits.count("/healthz") == 2 and script.hits.count("/v1/info") == 2
    assert rp.stats.requests == 4 and rp.stats.bytes_received > 0
    rp.close()


def test_not_a_maskloop_server(script):
    script.routes["/v1/info"] = [(200, {"Content-Type": "text/html"}, b"<html>router</html>")]
    with pytest.raises(PredictorError, match="not JSON"):
        RemotePredictor(script.url, backoff=0.01)
    script.routes["/v1/info"] = [(200, {}, b'{"hello": 1}')]
    with pytest.raises(PredictorError, match="without a model_id"):
        RemotePredictor(script.url, backoff=0.01)


def test_long_retry_after_is_an_error_not_a_hang(script):
    script.routes["/healthz"] = [(429, {"Retry-After": "3600"}, b"{}")]
    with pytest.raises(PredictorError, match="rate limiting.*3600 s"):
        RemotePredictor(script.url, backoff=0.01)


def test_errors_never_show_the_key(script):
    script.routes["/v1/info"] = [(401, {}, b'{"message": "bad key sekrit-999"}')]
    session = HttpSession(script.url, name="server", secrets=["sekrit-999"],
                          params={"api_key": "sekrit-999"}, backoff=0.01)
    with pytest.raises(PredictorError, match="server rejected the API key") as err:
        session.json("GET", "/v1/info")
    assert "sekrit-999" not in str(err.value) and "sekrit-999" not in repr(session)
    session.close()
