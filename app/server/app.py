"""The MaskLoop server: a FastAPI app over ONE local Predictor, run by uvicorn.

``create_app(predictor, settings)`` builds it: the Roboflow-compatible ``/sam2/*`` routes
(``roboflow_routes``), MaskLoop's own ``/v1/*`` routes (``own_routes``), ``GET /info`` and
``GET /healthz``, behind ``RequestGate`` (API key first, then the body within its byte limit
and deadline). Every error is ``{"message": ...}`` (``app.server.errors``): 400 (undecodable
image, refused URL), 401 (API key), 404, 405, 408 (body too slow), 409 (forgotten result),
413 (request or image too large), 422 (validation; with FastAPI's ``"detail"`` list), 500
(no internals: an id to find in the log), 504 (the model did not answer in time).
``start_in_thread`` runs an app on a loopback port for tests and benchmarks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.core.errors import WireError
from app.predict.base import Predictor
from app.server import own_routes, propagate_routes, roboflow_routes
from app.server.errors import HTTPProblem
from app.server.middleware import RequestGate
from app.server.protocol import uvicorn_config
from app.server.results import ResultStore
from app.server.settings import ServerSettings
from app.server.state import ServerState
from app.server.worker import ModelWorker

log = logging.getLogger(__name__)


def create_app(predictor: Predictor, settings: ServerSettings | None = None) -> FastAPI:
    """The app serving ``predictor`` (not closed by the app: its owner closes it)."""
    settings = settings or ServerSettings()
    worker = ModelWorker(predictor, timeout_s=settings.request_timeout_s)
    state = ServerState(settings, worker, ResultStore(settings.logits_bytes))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown()
        state.rf_images.close()

    app = FastAPI(title="MaskLoop Server", version=__version__, lifespan=lifespan,
                  description=_DESCRIPTION)
    app.state.maskloop = state
    app.include_router(roboflow_routes.router)
    app.include_router(own_routes.router)
    app.include_router(propagate_routes.router)

    # /info and /healthz run on the event loop and touch nothing the model holds: they
    # answer at once however many requests wait for the model
    @app.get("/info")
    async def server_info() -> dict[str, Any]:
        return {"name": "MaskLoop Server", "version": __version__, "uuid": state.server_id,
                "model_id": worker.model_id, "sam2_version_id": state.sam2_version,
                "description": predictor.description}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
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

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        what = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # every method of the path, not only its first route's
            headers = {**(headers or {}), "Allow": _allowed(app, request.url.path)}
        return JSONResponse({"message": f"{what}: {request.method} {request.url.path}"},
                            exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def on_error(_: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("request failed (error id %s)", error_id, exc_info=exc)
        return JSONResponse({"message": f"internal error (id {error_id}): the server's log "
                                        "has the details"}, 500)

    app.add_middleware(RequestGate, api_key=settings.api_key,  # type: ignore[arg-type]
                       limit=settings.max_request_bytes,
                       body_timeout_s=settings.body_timeout_s)
    return app


_DESCRIPTION = (
    "Roboflow-compatible SAM2 routes (`/sam2/*`) and MaskLoop's own (`/v1/*`). Every error "
    "answer is `{\"message\": str}` (422 from validation adds FastAPI's `\"detail\"` list); "
    "a 500 names an id to find in the server's log and nothing else. Limits (see `GET "
    "/v1/info` and `maskloop serve --help`): request bytes, image pixels, 65,535 pixels a "
    "side and at most 100:1, prompts per request and points per prompt, finite numbers only, "
    "image_id up to 256 characters, deadlines for headers, body and image URLs."
)


def _allowed(app: FastAPI, path: str) -> str:
    """The methods of every route of ``path`` (a path can have a route per method)."""
    methods: set[str] = set()
    for route in app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _jsonable(errors: Any) -> Any:
    out = []
    for e in errors:
        e = dict(e)
        e.pop("ctx", None)
        e.pop("input", None)
        e.pop("url", None)
        out.append(e)
    return out


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
    settings = getattr(getattr(app.state, "maskloop", None), "settings", ServerSettings())
    config = uvicorn_config(app, settings, log_level="warning", timeout_keep_alive=30)
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
