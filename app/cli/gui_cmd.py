"""``maskloop [FOLDER|PROJECT] [--model NAME | --checkpoint PATH [--config NAME]] [--device ...]
[--server URL [--remote-mode server|hybrid] | --hosted roboflow|fal|segmind [--hosted-url URL]]
[--api-key KEY]``: the desktop app. Builds the predictor here (the UI never imports torch)
and hands it to app.ui."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.backend import add_model_args, predictor_from_args
from app.cli.remote_backend import HOSTED, add_remote_args, remote_predictor_from_args
from app.core.errors import MaskLoopError
from app.predict.base import Predictor
from app.predict.models import installed_checkpoint

if TYPE_CHECKING:
    from app.predict.cache import EmbeddingCache
    from app.ui.settings import GuiSettings

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskloop",
        description="Open the MaskLoop app on a folder of images or a .maskloop project "
        "(no argument: the bundled sample images). Subcommands: maskloop --help.",
    )
    parser.add_argument("target", nargs="?", type=Path, metavar="FOLDER|PROJECT",
                        help="a folder of images (its project is FOLDER/<name>.maskloop) or a "
                        "project file")
    add_model_args(parser)
    add_remote_args(parser)
    parser.add_argument("--backend", choices=("sam2", "classical"),
                        help="force a backend (default: SAM2 when a model is installed)")
    return parser


def make_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor the options (or, without options, the saved settings) ask for."""
    if args.server or args.hosted:
        return _remote(args)
    from app.ui.settings import GuiSettings

    saved = GuiSettings.load()
    if args.model or args.checkpoint or args.backend:
        return predictor_from_args(args, backend=args.backend, cache=_cache(saved))
    try:
        return predictor_for_settings(saved, args.device)
    except MaskLoopError as exc:  # a saved choice that no longer works: say so, go on
        print(f"maskloop: {exc}; using the classical backend", file=sys.stderr)
        return predictor_from_args(argparse.Namespace(), backend="classical")


def predictor_for_settings(settings: GuiSettings, device: str = "auto") -> Predictor:
    """The predictor the settings dialog chose (also used to switch backend while running)."""
    if settings.backend == "server":
        if not settings.server_url:
            raise MaskLoopError("the server backend needs a server URL (Settings)")
        return _remote(argparse.Namespace(
            server=settings.server_url, api_key=settings.server_key or None,
            remote_mode=settings.remote_mode,
            checkpoint=Path(settings.checkpoint) if settings.checkpoint else None))
    if settings.backend in HOSTED:
        key = getattr(settings, f"{settings.backend}_key", "")
        return _remote(argparse.Namespace(hosted=settings.backend, api_key=key or None,
                                          hosted_url=settings.hosted_url or None))
    args = argparse.Namespace(model=None, checkpoint=None, config=None,
                              device=settings.device if device == "auto" else device)
    if settings.backend == "classical":
        return predictor_from_args(args, backend="classical")
    if settings.checkpoint:
        args.checkpoint = Path(settings.checkpoint)
    elif settings.backend == "sam2" or installed_checkpoint(settings.model) is not None:
        args.model = settings.model
    return predictor_from_args(args, backend="sam2" if settings.backend == "sam2" else None,
                               cache=_cache(settings))


def _cache(settings: GuiSettings) -> EmbeddingCache:
    """The embedding cache with the memory budget chosen in the settings."""
    from app.predict.cache import EmbeddingCache

    return EmbeddingCache(memory_bytes=max(64, settings.cache_mb) * 2**20)


def _remote(args: argparse.Namespace) -> Predictor:
    """The MaskLoop-server or hosted-API predictor of ``args`` (see remote_backend.py)."""
    try:
        predictor = remote_predictor_from_args(args)
    except ImportError as exc:
        raise MaskLoopError("remote backends are not available in this build") from exc
    if predictor is None:
        raise MaskLoopError("no remote backend was asked for")
    return predictor


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, build the predictor, run the app; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        predictor = make_predictor(args)
    except MaskLoopError as exc:
        print(f"maskloop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from app.ui.app import run

    return run(args.target, predictor, predictor_factory=predictor_for_settings)
