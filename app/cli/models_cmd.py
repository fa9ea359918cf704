"""``maskloop models list`` and ``maskloop models download NAME [--url URL]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` subcommand and its actions."""
    parser = subparsers.add_parser(
        "models", help="list and download SAM2.1 checkpoints",
        description="List the SAM2.1 checkpoints and download them into the models folder "
        "(MASKLOOP_MODELS_DIR overrides it).",
    )
    parser.set_defaults(func=_list)
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")

    listing = actions.add_parser("list", help="show every model, its size and whether it is "
                                 "installed")
    listing.add_argument("--dir", type=Path, default=None, help="models folder to look in")
    listing.set_defaults(func=_list)

    get = actions.add_parser("download", help="download a checkpoint (resumes, checks sha256)")
    get.add_argument("name", help="tiny, small, base_plus or large")
    get.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    get.add_argument("--dir", type=Path, default=None, help="models folder to download into")
    get.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    get.set_defaults(func=_download)


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _list(args: argparse.Namespace) -> int:
    from app.predict.models.registry import list_models

    rows = list_models(getattr(args, "dir", None))
    print(f"{'NAME':<10} {'SIZE':>10}  {'STATUS':<18} PATH")
    for row in rows:
        if row.installed:
            status = "installed"
        elif row.partial_bytes:
            status = f"partial ({_human(row.partial_bytes)})"
        else:
            status = "not installed"
        print(f"{row.name:<10} {_human(row.size_bytes):>10}  {status:<18} {row.path}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.predict.models.registry import download

    bar: tqdm | None = None

    def progress(done: int, total: int, message: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=args.name, initial=done)
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    try:
        path = download(args.name, args.dir, progress=progress, url=args.url,
                        timeout=args.timeout)
    finally:
        if bar is not None:
            bar.close()
    print(f"installed {path}")
    return 0
