"""What the fake hosted APIs share: a threaded HTTP server on 127.0.0.1 with an API key,
canned failures, request records, schema checks and a toy "model".

``fail_next`` queues canned failures (401, 429 with Retry-After, 500, malformed bodies)
answered before the API's own handler (fakes.py), which validates every request.

The "model" is simple geometry: a click selects a 21 x 21 square around it, a negative
click clears an 11 x 11 square, a box selects itself, a text prompt selects every bright
blob of the image (``bright_parts``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
from pycocotools import mask as coco_mask

CLICK_HALF = 10
NEG_HALF = 5


@dataclass
class Reply:
    """A canned answer; ``delay`` seconds pass before it is sent (a slow or hung server)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(obj).encode(),
                   {"Content-Type": "application/json", **(headers or {})})


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Invalid(Exception):
    """A request that breaks the schema: answered with the API's validation status."""


# -- the "model" ---------------------------------------------------------------------------


def decode_image(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise Invalid("image could not be decoded")
    return img


def image_from_b64(value: Any) -> np.ndarray:
    if not isinstance(value, str):
        raise Invalid("image value must be a string")
    if value.startswith("data:"):
        value = value.split(",", 1)[1]
    try:
        return decode_image(base64.b64decode(value, validate=True))
    except (ValueError, TypeError) as exc:
        raise Invalid(f"image is not base64: {exc}") from None


def click_mask(shape: tuple[int, int], keep: list[tuple[float, float]],
               drop: list[tuple[float, float]] = (),
               box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    h, w = shape
    mask = np.zeros((h, w), dtype=bool)
    if box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    for x, y in keep:
        c, r = int(x), int(y)
        k = CLICK_HALF
        mask[max(0, r - k):r + k + 1, max(0, c - k):c + k + 1] = True
    for x, y in drop:
        c, r = int(x), int(y)
        mask[max(0, r - NEG_HALF):r + NEG_HALF + 1, max(0, c - NEG_HALF):c + NEG_HALF + 1] = False
    return mask


def bright_parts(image_bgr: np.ndarray) -> list[np.ndarray]:
    gray = image_bgr.max(axis=2) > 128
    n, labels = cv2.connectedComponents(gray.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, n)]


def polygons(mask: np.ndarray) -> list[list[list[int]]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).tolist() for c in contours]


def rle(mask: np.ndarray) -> dict[str, Any]:
    r = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def png_bytes(mask: np.ndarray) -> bytes:
    return cv2.imencode(".png", mask.astype(np.uint8) * 255)[1].tobytes()


def jpeg_bytes(mask: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", mask.astype(np.uint8) * 255)[1].tobytes()


# -- schema checks -------------------------------------------------------------------------


def check_fields(obj: Any, where: str, required: set[str], optional: set[str]) -> dict:
    if not isinstance(obj, dict):
        raise Invalid(f"{where} must be an object")
    missing = required - obj.keys()
    unknown = obj.keys() - required - optional
    if missing:
        raise Invalid(f"{where}: missing {sorted(missing)}")
    if unknown:
        raise Invalid(f"{where}: unknown fields {sorted(unknown)}")
    return obj


def number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Invalid(f"{where} must be a number")
    return float(v)


def boolean(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise Invalid(f"{where} must be a boolean")
    return v


# -- the server ----------------------------------------------------------------------------


class FakeAPI:
    """A threaded HTTP server on 127.0.0.1 with an API key and a queue of canned failures."""

    key_header = ""  # overridden by each API
    invalid_status = 422

    def __init__(self, api_key: str = "secret-key-123") -> None:
        self.api_key = api_key
        self.seen: list[Seen] = []
        self._canned: deque[Reply] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(self.command, parts.path,
                            {k: v[0] for k, v in parse_qs(parts.query).items()},
                            {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length) if length else b"")
                reply = fake.dispatch(seen)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            do_GET = do_POST = do_PUT = do_HEAD = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, reply: Reply, times: int = 1) -> None:
        with self._lock:
            self._canned.extend([reply] * times)

    def calls(self, path_part: str = "") -> list[Seen]:
        return [s for s in self.seen if path_part in s.path]

    def dispatch(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            canned = self._canned.popleft() if self._canned else None
        if canned is not None:
            return canned
        if not self.authorized(seen):
            return self.unauthorized()
        try:
            return self.handle(seen)
        except Invalid as exc:
            return self.invalid(str(exc))

    def authorized(self, seen: Seen) -> bool:
        raise NotImplementedError

    def unauthorized(self) -> Reply:
        return Reply.json(401, {"detail": "Invalid API key"})

    def invalid(self, message: str) -> Reply:
        return Reply.json(self.invalid_status, {"detail": [{"msg": message}]})

    def handle(self, seen: Seen) -> Reply:
        raise NotImplementedError

    def body(self, seen: Seen) -> Any:
        try:
            return json.loads(seen.body)
        except ValueError:
            raise Invalid("body is not JSON") from None


