"""``maskloop [FOLDER|PROJECT] [--model NAME | --checkpoint PATH [--config NAME]] [--device ...]
[--server URL [--remote-mode server|hybrid]
| --hosted roboflow|roboflow-sam3|fal|segmind [--hosted-url URL]] [--api-key KEY] [--tiled]``:
the desktop app. Chooses the predictor here (the UI never
imports torch) and hands it to app.ui: built at once when that is cheap (classical, remote),
or, for a SAM2 model (importing torch and loading the checkpoint take seconds), as a
``StartupBuild`` that the app runs after its window is shown. Options that cannot work and
are cheap to detect (a model that is not installed, a missing checkpoint file, a dead
server) still exit 2 before any window. ``--tiled`` (or the setting "Full-resolution tiles
on large images") wraps a local backend in ``TiledPredictor``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.backend import add_model_args, add_tiled_arg, check_tiled, predictor_from_args
from app.cli.remote_backend import HOSTED, add_remote_args, remote_predictor_from_args
from app.core.errors import MaskLoopError
from app.predict.base import Predictor
from app.predict.models.registry import REGISTRY, installed_checkpoint

if TYPE_CHECKING:
    from app.predict.cache.store import EmbeddingCache
    from app.ui.settings import GuiSettings
    from app.ui.startup import StartupBuild

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
    add_tiled_arg(parser)
    parser.add_argument("--backend", choices=("sam2", "classical"),
                        help="force a backend (default: SAM2 when a model is installed)")
    return parser


def make_predictor(args: argparse.Namespace) -> Predictor:
    """The predictor the options (or, without options, the saved settings) ask for."""
    if args.server or args.hosted:
        check_tiled(args)
        return _remote(args)
    from app.ui.settings import GuiSettings

    saved = GuiSettings.load()
    if args.model or args.checkpoint or args.backend:
        return predictor_from_args(_with_tiled(args, saved), backend=args.backend,
                                   cache=_cache(saved))
    try:
        return predictor_for_settings(saved, args.device, tiled=_wants_tiled(args, saved))
    except MaskLoopError as exc:  # a saved choice that no longer works: say so, go on
        print(f"maskloop: {exc}; using the classical backend", file=sys.stderr)
        return predictor_from_args(argparse.Namespace(), backend="classical")


def sam2_to_load(args: argparse.Namespace, saved: GuiSettings) -> str | None:
    """The name of the SAM2 model ``make_predictor`` would load (e.g. "SAM2 tiny"), when
    its checkpoint file is there; None when the predictor is cheap to build (classical,
    remote) or the choice cannot work (building it then reports why, at once)."""
    if args.server or args.hosted:
        return None
    if args.model or args.checkpoint or args.backend:
        if args.backend == "classical" or (args.config and not args.checkpoint):
            return None
        return _installed_sam2(args.model, args.checkpoint)
    if saved.backend not in ("auto", "sam2"):
        return None
    if saved.checkpoint:
        return _installed_sam2(None, Path(saved.checkpoint))
    if installed_checkpoint(saved.model) is not None:
        return _installed_sam2(saved.model, None)
    return _installed_sam2(None, None) if saved.backend == "auto" else None


def _installed_sam2(model: str | None, checkpoint: Path | None) -> str | None:
    """"SAM2 NAME" of the checkpoint file, the registry model, or (neither) the first
    installed registry model; None when that file is not there."""
    if checkpoint is not None:
        return f"SAM2 {checkpoint.name}" if checkpoint.is_file() else None
    names = [model] if model else list(REGISTRY)
    return next((f"SAM2 {n}" for n in names if installed_checkpoint(n) is not None), None)


def startup_predictor(args: argparse.Namespace) -> Predictor | StartupBuild:
    """What the app starts with: the predictor itself when it is cheap to build (errors
    raise MaskLoopError here, before any window), else the SAM2 model to load after the
    window is shown, with the classical backend as its fallback."""
    from app.ui.settings import GuiSettings

    saved = GuiSettings.load()
    name = sam2_to_load(args, saved)
    if name is None:
        return make_predictor(args)
    from app.ui.startup import StartupBuild

    def build() -> Predictor:
        if args.model or args.checkpoint or args.backend:
            return predictor_from_args(_with_tiled(args, saved), backend=args.backend,
                                       cache=_cache(saved))
        return predictor_for_settings(saved, args.device, tiled=_wants_tiled(args, saved))

    return StartupBuild(name, build, lambda: predictor_from_args(argparse.Namespace(),
                                                                  backend="classical"))


def _wants_tiled(args: argparse.Namespace, saved: GuiSettings) -> bool:
    """Tiles on large images: ``--tiled`` for this run, or the saved setting."""
    return bool(getattr(args, "tiled", False) or saved.tiled)


def _with_tiled(args: argparse.Namespace, saved: GuiSettings) -> argparse.Namespace:
    """``args`` with ``tiled`` set as ``_wants_tiled`` says (the options' own copy)."""
    return argparse.Namespace(**{**vars(args), "tiled": _wants_tiled(args, saved)})


def predictor_for_settings(settings: GuiSettings, device: str = "auto",
                           tiled: bool | None = None) -> Predictor:
    """The predictor the settings dialog chose (also used to switch backend while running).
    A local backend is wrapped in ``TiledPredictor`` when ``tiled`` (None: the setting)."""
    if settings.backend == "server":
        if not settings.server_url:
            raise MaskLoopError("the server backend needs a server URL (Settings)")
        return _remote(argparse.Namespace(
            server=settings.server_url, api_key=settings.server_key or None,
            remote_mode=settings.remote_mode,
            checkpoint=Path(settings.checkpoint) if settings.checkpoint else None))
    if settings.backend in HOSTED:
        from app.ui.secrets import key_field  # both Roboflow backends share one key

        field = key_field(settings.backend)
        key = getattr(settings, field) if field else ""
        return _remote(argparse.Namespace(hosted=settings.backend, api_key=key or None,
                                          hosted_url=settings.hosted_url or None))
    args = argparse.Namespace(model=None, checkpoint=None, config=None,
                              device=settings.device if device == "auto" else device,
                              tiled=settings.tiled if tiled is None else tiled)
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
    from app.predict.cache.store import EmbeddingCache

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
    """Parse the options, choose the predictor, run the app; returns the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from app.ui import system_libs

    if system_libs.will_use_xcb():  # else Qt aborts, naming only one of them
        missing = system_libs.missing_libraries()
        if missing:
            print(f"maskloop: error: {system_libs.advice(missing)}", file=sys.stderr)
            return EXIT_USAGE
    try:
        predictor = startup_predictor(args)
    except MaskLoopError as exc:
        print(f"maskloop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from app.ui.app import run

    return run(args.target, predictor, predictor_factory=predictor_for_settings)
