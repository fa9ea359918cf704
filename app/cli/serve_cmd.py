"""``maskloop serve``: the inference server (FastAPI + uvicorn) over one local model.

Roboflow-compatible ``/sam2/embed_image`` and ``/sam2/segment_image``, MaskLoop's own ``/v1``
routes for the desktop app (see ``app.wire.messages``), ``/info`` and ``/healthz``.
``--ray [ADDRESS] --replicas N`` deploys the same app as a Ray Serve application
(``app.cluster.serve_app``); without it nothing here imports Ray.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from app.cli.backend import add_model_args, predictor_from_args
from app.server.settings import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_CACHE_BYTES,
    DEFAULT_DISK_CACHE_BYTES,
    DEFAULT_FRAME_BYTES,
    DEFAULT_FRAME_WAIT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_PROMPTS,
    DEFAULT_MAX_PROPAGATE_FRAMES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_TRACKS,
    DEFAULT_URL_TIMEOUT_S,
    ServerSettings,
    default_server_cache_dir,
)

API_KEY_ENV = "MASKLOOP_API_KEY"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a SAM2 model over HTTP (Roboflow-compatible and MaskLoop routes)",
        description="Run the MaskLoop inference server over one local model. Other machines' "
        "apps label through it (maskloop --server URL); Roboflow inference-sdk clients work "
        "unchanged against its /sam2/* routes.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for everyone)")
    parser.add_argument("--port", type=int, default=9001, help="port (default 9001)")
    add_model_args(parser)
    parser.add_argument(
        "--api-key", metavar="KEY", default=os.environ.get(API_KEY_ENV) or None,
        help=f"require this key (?api_key=, 'Authorization: Bearer' or \"api_key\" in the "
        f"body); default ${API_KEY_ENV}, else no key",
    )
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="let image URLs point at private/loopback addresses (SSRF risk)")
    parser.add_argument("--max-image-pixels", metavar="N", type=int,
                        default=DEFAULT_MAX_IMAGE_PIXELS,
                        help=f"largest image in pixels (default {DEFAULT_MAX_IMAGE_PIXELS:,})")
    parser.add_argument("--max-request-bytes", metavar="N", type=int,
                        default=DEFAULT_MAX_REQUEST_BYTES,
                        help=f"largest request body (default {DEFAULT_MAX_REQUEST_BYTES:,})")
    parser.add_argument("--cache-bytes", metavar="N", type=int, default=DEFAULT_CACHE_BYTES,
                        help=f"memory for embeddings (default {DEFAULT_CACHE_BYTES:,})")
    parser.add_argument("--cache-dir", metavar="DIR", type=Path, default=None,
                        help="where embeddings (the app's file format) and image ids are kept "
                        "across restarts (default: $MASKLOOP_CACHE_DIR/server, else the user "
                        "cache folder's server/)")
    parser.add_argument("--disk-cache-bytes", metavar="N", type=int,
                        default=DEFAULT_DISK_CACHE_BYTES,
                        help=f"disk for embeddings (default {DEFAULT_DISK_CACHE_BYTES:,}); 0 "
                        "keeps them in memory only, forgotten on a restart")
    parser.add_argument("--max-prompts", metavar="N", type=int, default=DEFAULT_MAX_PROMPTS,
                        help=f"most prompts in one /sam2/segment_image request (default "
                        f"{DEFAULT_MAX_PROMPTS})")
    parser.add_argument("--max-points", metavar="N", type=int, default=DEFAULT_MAX_POINTS,
                        help=f"most points in one prompt (default {DEFAULT_MAX_POINTS})")
    parser.add_argument("--max-propagate-frames", metavar="N", type=int,
                        default=DEFAULT_MAX_PROPAGATE_FRAMES,
                        help="most frames in one /v1/propagate request (default "
                        f"{DEFAULT_MAX_PROPAGATE_FRAMES:,})")
    parser.add_argument("--max-tracks", metavar="N", type=int, default=DEFAULT_MAX_TRACKS,
                        help=f"most tracks in one /v1/propagate request (default "
                        f"{DEFAULT_MAX_TRACKS})")
    parser.add_argument("--frame-bytes", metavar="N", type=int, default=DEFAULT_FRAME_BYTES,
                        help="memory for uploaded files kept as propagation frames (default "
                        f"{DEFAULT_FRAME_BYTES:,})")
    parser.add_argument("--frame-wait", metavar="S", type=float, default=DEFAULT_FRAME_WAIT_S,
                        help="seconds a propagation waits for its next frame's upload "
                        f"(default {DEFAULT_FRAME_WAIT_S:g})")
    parser.add_argument("--timeout", metavar="S", type=float, default=120.0,
                        help="seconds a request may wait for the model; then 504 and its "
                        "work is stopped (default 120)")
    parser.add_argument("--header-timeout", metavar="S", type=float,
                        default=DEFAULT_HEADER_TIMEOUT_S,
                        help="seconds for a request's line and headers, in all (default "
                        f"{DEFAULT_HEADER_TIMEOUT_S:g})")
    parser.add_argument("--body-timeout", metavar="S", type=float,
                        default=DEFAULT_BODY_TIMEOUT_S,
                        help=f"seconds for a request's body, in all; then 408 (default "
                        f"{DEFAULT_BODY_TIMEOUT_S:g})")
    parser.add_argument("--url-timeout", metavar="S", type=float, default=DEFAULT_URL_TIMEOUT_S,
                        help=f"seconds to fetch an image URL, in all (default "
                        f"{DEFAULT_URL_TIMEOUT_S:g})")
    parser.add_argument("--ray", metavar="ADDRESS", nargs="?", const="", default=None,
                        help="serve on Ray Serve (needs maskloop[cluster]): on the cluster at "
                        "ADDRESS, or without ADDRESS on a local Ray; --cache-dir must then be "
                        "a folder every replica reaches")
    parser.add_argument("--replicas", metavar="N", type=int, default=0,
                        help="with --ray: model replicas (default: one per GPU, else 1)")
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The server settings the options ask for."""
    for name in ("max_image_pixels", "max_request_bytes", "cache_bytes", "max_prompts",
                 "max_points", "timeout", "header_timeout", "body_timeout", "url_timeout",
                 "max_propagate_frames", "max_tracks", "frame_bytes", "frame_wait"):
        if getattr(args, name) <= 0:
            from app.core.errors import MaskLoopError

            raise MaskLoopError(f"--{name.replace('_', '-')} must be positive")
    if args.disk_cache_bytes < 0:
        from app.core.errors import MaskLoopError

        raise MaskLoopError("--disk-cache-bytes must be 0 or more")
    on_disk = args.disk_cache_bytes > 0
    return ServerSettings(
        api_key=args.api_key or None,
        allow_private_urls=bool(args.allow_private_urls),
        max_image_pixels=args.max_image_pixels,
        max_request_bytes=args.max_request_bytes,
        cache_bytes=args.cache_bytes,
        max_prompts=args.max_prompts,
        max_points=args.max_points,
        request_timeout_s=args.timeout,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        url_timeout_s=args.url_timeout,
        cache_dir=(args.cache_dir or default_server_cache_dir()) if on_disk else None,
        disk_cache_bytes=args.disk_cache_bytes,
        max_propagate_frames=args.max_propagate_frames,
        max_tracks=args.max_tracks,
        frame_bytes=args.frame_bytes,
        frame_wait_s=args.frame_wait,
    )


def run(args: argparse.Namespace) -> int:
    if args.ray is not None:
        return run_on_ray(args)
    if args.replicas:
        from app.core.errors import MaskLoopError

        raise MaskLoopError("--replicas goes with --ray")
    import uvicorn

    from app.predict.cache.store import EmbeddingCache
    from app.server.app import create_app
    from app.server.protocol import uvicorn_config
    from app.server.security import RedactKeys

    settings = settings_from_args(args)
    cache = EmbeddingCache(memory_bytes=settings.cache_bytes, disk_dir=settings.cache_dir,
                           disk_bytes=settings.disk_cache_bytes)
    predictor = predictor_from_args(args, cache=cache)
    try:
        app = create_app(predictor, settings)
        auth = "API key required" if settings.api_key else "no API key"
        kept = f"cache {settings.cache_dir}" if settings.cache_dir else "no disk cache"
        print(f"maskloop serve: {predictor.description} at http://{args.host}:{args.port} "
              f"({auth}, {kept})", file=sys.stderr, flush=True)
        config = uvicorn_config(app, settings, host=args.host, port=args.port,
                                log_level="info")
        logging.getLogger("uvicorn.access").addFilter(RedactKeys())  # after uvicorn's setup
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass
    finally:
        predictor.close()
    return 0


def run_on_ray(args: argparse.Namespace) -> int:
    """``serve --ray``: the app on Ray Serve until Ctrl-C or SIGTERM, then the application
    is deleted (and a Ray started here is shut down)."""
    import contextlib
    import signal
    import threading

    from app.cluster import ray_env, serve_app, worker_model
    from app.core.errors import MaskLoopError
    from app.core.threads import available_cores

    if getattr(args, "server", None) or getattr(args, "hosted", None):
        raise MaskLoopError("--ray serves a local SAM2 model: drop --server/--hosted")
    if args.replicas < 0:
        raise MaskLoopError("--replicas must be positive")
    settings = settings_from_args(args)
    ray = ray_env.require_ray()
    started = ray_env.connect(args.ray or None)
    try:
        from ray import serve

        gpus = ray_env.cluster_gpus() > 0 and args.device in ("auto", "cuda")
        replicas = args.replicas or (ray_env.cluster_gpus() if gpus else 1)
        threads = 1 if gpus else max(1, available_cores() // replicas)
        model = worker_model.worker_model(args.model, args.checkpoint, args.config,
                                          args.device, args.runtime, threads)
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(serve_app.serve_application(model, settings, replicas, gpus=gpus),
                  name=serve_app.APP_NAME, route_prefix="/", blocking=False)
        kept = f"cache {settings.cache_dir}" if settings.cache_dir else "no disk cache"
        print(f"maskloop serve --ray: {model.description} x {replicas} replicas at "
              f"http://{args.host}:{args.port} ({kept})", file=sys.stderr, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        serve.delete(serve_app.APP_NAME)
        if started:
            serve.shutdown()
    except (ray.exceptions.RayError, RuntimeError) as exc:
        raise MaskLoopError(f"Ray Serve could not run the server: {exc}") from None
    finally:
        ray_env.disconnect(started)
    return 0
