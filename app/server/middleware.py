"""The ASGI middleware in front of every route: authenticate, then read the body whole,
within a byte limit and a total deadline.

Order of checks, cheapest first: a key in the query or the ``Authorization`` header is
checked before a byte of the body is read; a route that also takes ``"api_key"`` in its JSON
body (Roboflow's ``/sam2/*``) has its body read (within the limit) and searched for the key,
parsed only when it names one, so an unauthenticated request is never parsed or validated.
A body over ``limit`` bytes is 413 (drained up to 16x the limit, so the client sees the
answer rather than a broken connection); one that has not arrived within ``body_timeout_s``
is 408 and the connection is closed. Authenticated requests are marked in the scope
(``SCOPE_AUTHENTICATED``), which the routes' dependencies check.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi.responses import JSONResponse

from app.server.security import bearer_token, key_matches, unauthorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_AUTHENTICATED = "maskloop.authenticated"
KEY_ROUTES = ("/sam2/", "/v1/")  # need the key
BODY_KEY_ROUTES = ("/sam2/",)  # also take it in the JSON body


def given_key(scope: Scope) -> str | None:
    """The key of ``?api_key=`` or ``Authorization: Bearer``, if any."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("api_key") and query["api_key"][0]:
        return query["api_key"][0]
    headers = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization")
    return bearer_token(auth.decode("latin-1")) if auth else None


def body_key(data: bytes) -> str | None:
    """``"api_key"`` of a JSON body, parsed only if the bytes contain that name."""
    if b'"api_key"' not in data:
        return None
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    key = body.get("api_key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


class _Disconnected(Exception):
    pass


class RequestGate:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, api_key: str | None, limit: int,
                 body_timeout_s: float) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = limit
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        needs_key = self.api_key is not None and path.startswith(KEY_ROUTES)
        header_key = given_key(scope) if needs_key else None
        authed = not needs_key or key_matches(self.api_key, header_key)
        keep = authed or (header_key is None and path.startswith(BODY_KEY_ROUTES))
        try:
            data, size = await asyncio.wait_for(self._read(receive, keep),
                                                self.body_timeout_s)
        except _Disconnected:
            return  # the client went away
        except TimeoutError:
            await _answer(scope, receive, send, 408, "the request body did not arrive within "
                          f"{self.body_timeout_s:g} s (--body-timeout)", close=True)
            return
        if not authed and size <= self.limit and keep:
            authed = key_matches(self.api_key, body_key(data))
        if not authed and not (keep and size > self.limit):
            problem = unauthorized()
            await _answer(scope, receive, send, 401, problem.message, headers=problem.headers)
            return
        if size > self.limit:
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            size = max(size, int(declared) if declared.isdigit() else 0)
            await _answer(scope, receive, send, 413, f"request body is {size:,} bytes; this "
                          f"server's limit is {self.limit:,} (--max-request-bytes)")
            return
        scope[SCOPE_AUTHENTICATED] = True
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, keep: bool) -> tuple[bytes, int]:
        """The body (empty unless ``keep`` and within the limit) and its size (the declared
        size when that is over the limit); reading stops at 16x the limit."""
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            body = message.get("body", b"")
            total += len(body)
            more = bool(message.get("more_body", False))
            if total > self.limit:
                chunks.clear()
                keep = False
                if total > 16 * self.limit:
                    break
            elif keep:
                chunks.append(body)
        return b"".join(chunks), total


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, message: str,
                  headers: dict[str, str] | None = None, close: bool = False) -> None:
    headers = dict(headers or {})
    if close:
        headers["Connection"] = "close"
    await JSONResponse({"message": message}, status, headers=headers)(scope, receive, send)
