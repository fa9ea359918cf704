"""One HTTP session for every remote backend: retries, timeouts, clear errors, byte counts.

Retries with exponential backoff on connection errors, 5xx and 429 (honouring Retry-After in
seconds or as an HTTP date); every error becomes a ``PredictorError`` that says which service
failed and how. API keys are redacted from every message and log line. httpx is imported
here, and this module is only imported by the remote backends.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from app.predict.base import PredictorError

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
STREAMED = "maskloop.streamed"  # request extension: a streamed answer (read line by line)
MAX_RETRY_AFTER = 60.0  # seconds: a server asking for a longer pause gets a clear error instead


@dataclass
class WireStats:
    """Bytes on the wire (request line, headers and bodies) and request counts."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def total(self) -> int:
        return self.bytes_sent + self.bytes_received

    def snapshot(self) -> WireStats:
        return WireStats(self.requests, self.bytes_sent, self.bytes_received)

    def since(self, before: WireStats) -> WireStats:
        return WireStats(self.requests - before.requests, self.bytes_sent - before.bytes_sent,
                         self.bytes_received - before.bytes_received)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret replaced by "***"."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max(0.0, (when - current).total_seconds())


def error_detail(response: httpx.Response, limit: int = 300) -> str:
    """The human part of an error reply: JSON "detail"/"message"/"error", else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for name in ("detail", "message", "error"):
            if body.get(name):
                text = body[name]
                return (text if isinstance(text, str) else str(text))[:limit]
    text = response.text.strip() if response.content else ""
    return text[:limit] or response.reason_phrase


def _headers_size(headers: httpx.Headers) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.raw) + 2


class HttpSession:
    """An httpx client bound to one service (``name`` goes into every error message).

    ``secrets`` are redacted from messages and logs. ``transport`` lets tests inject one.
    Not thread-safe beyond what httpx.Client offers; one predictor owns one session.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: Iterable[str | None] = (),
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stats = WireStats()
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._params = dict(params or {})
        self._client = httpx.Client(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            event_hooks={"request": [self._count_request], "response": [self._count_response]},
            follow_redirects=True,
        )

    def __repr__(self) -> str:
        return f"HttpSession({self.redact(self.base_url)!r}, name={self.name!r})"

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def url(self, path: str) -> str:
        """An absolute URL stays as it is; a path is joined to the base URL."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    # -- byte counting (event hooks) ----------------------------------------------------

    def _count_request(self, request: httpx.Request) -> None:
        line = len(request.method) + len(str(request.url.raw_path)) + 12
        try:
            body = len(request.content)
        except httpx.RequestNotRead:
            body = 0
        self.stats.requests += 1
        self.stats.bytes_sent += line + _headers_size(request.headers) + body

    def _count_response(self, response: httpx.Response) -> None:
        if response.request.extensions.get(STREAMED):  # its lines count as they are read
            self.stats.bytes_received += 15 + _headers_size(response.headers)
            return
        response.read()
        self.stats.bytes_received += 15 + _headers_size(response.headers) + len(response.content)

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        ok: Iterable[int] = (200,),
        what: str | None = None,
        retries: int | None = None,
    ) -> httpx.Response:
        """Send a request, retrying on connection errors, 5xx and 429; returns the response
        whose status is in ``ok``, else raises PredictorError naming ``what`` was asked."""
        url = self.url(path)
        what = what or f"{method} {path.split('?')[0]}"
        ok = frozenset(ok)
        merged = {**self._params, **(params or {})} if not path.startswith("http") else params
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        retries = self.retries if retries is None else max(0, retries)
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, url, json=json, content=content, headers=headers,
                    params=merged or None, **extra,
                )
            except httpx.TimeoutException as exc:
                if attempt < retries:
                    attempt += 1
                    self._pause(attempt, None, f"timeout ({type(exc).__name__})")
                    continue
                raise PredictorError(
                    f"{self.name}: {what} timed out after {attempt + 1} attempt(s)"
                ) from None
            except httpx.TransportError as exc:
                if attempt < retries and not isinstance(exc, httpx.UnsupportedProtocol):
                    attempt += 1
                    self._pause(attempt, None, f"connection error ({exc})")
                    continue
                raise PredictorError(
                    f"cannot reach {self.name} at {self.redact(self.base_url)}: "
                    f"{self.redact(str(exc)) or type(exc).__name__}"
                ) from None
            if response.status_code in ok:
                return response
            if response.status_code in RETRY_STATUS and attempt < retries:
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is not None and wait > MAX_RETRY_AFTER:
                    raise PredictorError(
                        f"{self.name} is rate limiting requests (HTTP {response.status_code}): "
                        f"it asks to wait {wait:.0f} s; try again later"
                    )
                attempt += 1
                self._pause(attempt, wait, f"HTTP {response.status_code}")
                continue
            raise self.status_error(response, what, attempt + 1)

    def status_error(self, response: httpx.Response, what: str, attempts: int) -> PredictorError:
        """The PredictorError for an unexpected HTTP status."""
        code = response.status_code
        detail = self.redact(error_detail(response))
        if code in (401, 403):
            return PredictorError(f"{self.name} rejected the API key (HTTP {code}): {detail}")
        if code == 429:
            return PredictorError(
                f"{self.name} is rate limiting requests (HTTP 429) after {attempts} attempt(s): "
                f"{detail}"
            )
        if code >= 500:
            return PredictorError(
                f"{self.name} failed on {what} (HTTP {code}) after {attempts} attempt(s): "
                f"{detail}"
            )
        return PredictorError(f"{self.name} refused {what} (HTTP {code}): {detail}")

    def _pause(self, attempt: int, retry_after: float | None, why: str) -> None:
        delay = retry_after if retry_after is not None else min(
            self.max_backoff, self.backoff * 2 ** (attempt - 1)
        )
        log.info("%s: %s, retry %d/%d in %.2f s", self.name, self.redact(why), attempt,
                 self.retries, delay)
        self._sleep(delay)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``request`` and parse its JSON body (PredictorError if it is not JSON)."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            what = kwargs.get("what") or f"{method} {path.split('?')[0]}"
            raise PredictorError(
                f"{self.name} sent a reply to {what} that is not JSON: "
                f"{self.redact(response.text[:120])!r}"
            ) from None

    @contextmanager
    def stream(self, method: str, path: str, *, json: Any = None,
               timeout: float | None = None) -> Iterator[httpx.Response]:
        """An answer read as it arrives (no retry: the caller decides; its bytes are counted
        by ``lines``). PredictorError when the server cannot be reached."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            with self._client.stream(method, self.url(path), json=json,
                                     params=self._params or None,
                                     extensions={STREAMED: True}, **extra) as response:
                yield response
        except httpx.TimeoutException:
            raise PredictorError(f"{self.name}: {method} {path} timed out") from None
        except httpx.TransportError as exc:
            raise PredictorError(
                f"{self.name}: the connection for {method} {path} failed: "
                f"{self.redact(str(exc)) or type(exc).__name__}") from None

    def lines(self, response: httpx.Response) -> Iterator[str]:
        """The lines of a streamed answer as they arrive (bytes counted)."""
        for line in response.iter_lines():
            self.stats.bytes_received += len(line) + 1
            if line:
                yield line

    def close(self) -> None:
        self._client.close()
