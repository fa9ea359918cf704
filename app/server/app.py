"""The MaskLoop server: a FastAPI app over ONE local Predictor, run by uvicorn.

``create_app(predictor, settings)`` builds it: the Roboflow-compatible ``/sam2/*`` routes
(``roboflow_routes``), MaskLoop's own ``/v1/*`` routes (``own_routes``), ``GET /info`` and
``GET /healthz``. Errors are ``{"message": ...}`` with 400 (undecodable image, refused URL),
401 (API key), 404, 409 (forgotten result), 413 (request or image too large), 422
(validation), 504 (the model did not answer in time). ``start_in_thread`` runs an app on a
loopback port for tests and benchmarks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app import __version__
from app.core.wire import WireError
from app.predict.base import Predictor
from app.server import own_routes, roboflow_routes
from app.server.errors import HTTPProblem
from app.server.settings import ServerSettings
from app.server.state import ServerState
from app.server.worker import ModelWorker, ResultStore

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def create_app(predictor: Predictor, settings: ServerSettings | None = None) -> FastAPI:
    """The app serving ``predictor`` (not closed by the app: its owner closes it)."""
    settings = settings or ServerSettings()
    worker = ModelWorker(predictor, timeout_s=settings.request_timeout_s)
    state = ServerState(settings, worker, ResultStore(settings.logits_bytes))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown()

    app = FastAPI(title="MaskLoop Server", version=__version__, lifespan=lifespan)
    app.state.maskloop = state
    app.include_router(roboflow_routes.router)
    app.include_router(own_routes.router)

    @app.get("/info")
    def server_info() -> dict[str, Any]:
        return {"name": "MaskLoop Server", "version": __version__, "uuid": state.server_id,
                "model_id": worker.model_id, "sam2_version_id": state.sam2_version,
                "description": predictor.description}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "healthy"}

    @app.exception_handler(HTTPProblem)
    async def on_problem(_: Request, exc: HTTPProblem) -> JSONResponse:
        return JSONResponse({"message": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(WireError)
    async def on_wire(_: Request, exc: WireError) -> JSONResponse:
        return JSONResponse({"message": str(exc)}, 422)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'invalid')}"
        return JSONResponse({"message": message, "detail": _jsonable(errors)}, 422)

    @app.exception_handler(Exception)
    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse({"message": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)  # type: ignore[arg-type]
    return app


def _jsonable(errors: Any) -> Any:
    out = []
    for e in errors:
        e = dict(e)
        e.pop("ctx", None)
        e.pop("input", None)
        out.append(e)
    return out


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes (declared or streamed).

    The body is read before the app runs (the routes read it whole anyway), so the limit
    holds for every route; an over-long body is drained (up to 16x the limit) so the client
    sees the 413 rather than a broken connection."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > self.limit
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            total += len(body)
            more = bool(message.get("more_body", False))
            if total > self.limit:
                too_big = True
                chunks.clear()
                if total > 16 * self.limit:
                    break
            elif not too_big:
                chunks.append(body)
        if too_big:
            size = int(declared) if declared and declared.isdigit() else total
            response = JSONResponse(
                {"message": f"request body is {size:,} bytes; this server's limit is "
                            f"{self.limit:,} (--max-request-bytes)"}, 413)
            await response(scope, receive, send)
            return
        data = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


@dataclass
class RunningServer:
    """A server started by ``start_in_thread``: its base URL and a way to stop it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def start_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 30.0) -> RunningServer:
    """Run ``app`` with uvicorn on a background thread (port 0: a free one); returns once
    it accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="maskloop-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    bound_host, bound_port = sock.getsockname()[:2]
    return RunningServer(f"http://{bound_host}:{bound_port}", server, thread)
