"""The ``maskloop`` command line: the composition root.

``maskloop [FOLDER|PROJECT] [--model NAME | --checkpoint PATH | --server URL]`` opens the app;
``maskloop SUBCOMMAND ...`` runs one job. Each subcommand lives in its own module with a
``register(subparsers)`` function that sets ``func`` (returns an exit code). Heavy modules are
imported inside the commands so that ``maskloop --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from app import __version__
from app.core.errors import MaskLoopError
from app.core.threads import passive_wait

# before anything imports torch (OpenMP reads it once, when it starts): see app/core/threads.py
passive_wait()

# subcommand name -> module that registers it
SUBCOMMANDS: dict[str, str] = {
    "new": "app.cli.project_cmds",
    "info": "app.cli.project_cmds",
    "export": "app.cli.project_cmds",
    "import": "app.cli.project_cmds",
    "embed": "app.cli.embed_cmd",
    "autolabel": "app.cli.autolabel_cmd",
    "eval": "app.cli.eval_cmd",
    "eval-video": "app.cli.eval_video_cmd",
    "eval-findall": "app.cli.eval_findall_cmd",
    "bench": "app.cli.bench_cmd",
    "models": "app.cli.models_cmd",
    "serve": "app.cli.serve_cmd",
    "video": "app.cli.video_cmds",
    "propagate": "app.cli.video_cmds",
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskloop",
        description="Label image segmentation datasets with SAM2 in the loop.",
        epilog="Run 'maskloop SUBCOMMAND --help' for a subcommand's options. "
        "Without a subcommand, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"maskloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for module_name in dict.fromkeys(SUBCOMMANDS.values()):
        # a missing or broken subcommand module is a broken install: fail loudly
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    passive_wait()  # a no-op when the import above set it, or the user chose a policy
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] in (["--self-test"], ["--startup-time"]):
        from app import selftest  # works frozen too; see app/selftest.py

        return selftest.main(args_list)
    top_flags = ("-h", "--help", "--version")
    if not args_list or (args_list[0] not in SUBCOMMANDS and args_list[0] not in top_flags):
        from app.cli import gui_cmd

        return gui_cmd.main(args_list)
    parser = build_parser()
    args = parser.parse_args(args_list)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except MaskLoopError as exc:
        print(f"maskloop {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
