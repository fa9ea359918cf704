"""Remote backends from command-line options: ``--server URL [--api-key KEY]
[--remote-mode server|hybrid]`` (MaskLoop's own server) and ``--hosted
roboflow|roboflow-sam3|fal|segmind [--hosted-url URL] [--api-key KEY]`` (hosted SAM APIs).
``predictor_from_args`` in backend.py calls ``remote_predictor_from_args`` first; commands
opt in with ``add_remote_args``."""

from __future__ import annotations

import argparse
import os

from app.predict.base import Predictor, PredictorError
from app.predict.hosted.factory import PROVIDERS as HOSTED  # no httpx until one is built

SERVER_KEY_ENV = "MASKLOOP_API_KEY"


def add_remote_args(parser: argparse.ArgumentParser, *, api_key: bool = True) -> None:
    """Add --server, --remote-mode, --hosted, --hosted-url (and --api-key unless the
    command already has one)."""
    group = parser.add_argument_group("remote inference")
    which = group.add_mutually_exclusive_group()
    which.add_argument("--server", metavar="URL",
                       help="use a MaskLoop server (maskloop serve) for predictions")
    which.add_argument("--hosted", choices=HOSTED,
                       help="use a hosted SAM API (roboflow: SAM2 clicks, SAM3 find all; "
                       "roboflow-sam3: SAM3 for both; keys: $API_KEY for Roboflow, $FAL_KEY, "
                       "$SEGMIND_API_KEY)")
    group.add_argument("--remote-mode", choices=("server", "hybrid"), default="server",
                       help="server: the server decodes clicks; hybrid: fetch each embedding "
                       "once and decode clicks here (needs the same model installed here)")
    group.add_argument("--hosted-url", metavar="URL",
                       help="base URL of the hosted API (e.g. a self-hosted Roboflow "
                       "inference server)")
    if api_key:
        group.add_argument("--api-key", metavar="KEY",
                           help=f"API key of the server (default ${SERVER_KEY_ENV}) or of the "
                           "hosted API")


def remote_predictor_from_args(args: argparse.Namespace) -> Predictor | None:
    """The remote predictor the options ask for, or None when they ask for none."""
    server = getattr(args, "server", None)
    hosted = getattr(args, "hosted", None)
    key = getattr(args, "api_key", None)
    if server and hosted:
        raise PredictorError("--server and --hosted exclude each other")
    if server:
        from app.predict.remote.predictor import RemotePredictor

        mode = getattr(args, "remote_mode", None) or "server"
        decoder = getattr(args, "checkpoint", None) if mode == "hybrid" else None
        return RemotePredictor(server, key or os.environ.get(SERVER_KEY_ENV) or None, mode,
                               decoder=decoder)
    if hosted:
        from app.predict.hosted.factory import hosted_predictor

        return hosted_predictor(hosted, api_key=key, url=getattr(args, "hosted_url", None))
    return None
