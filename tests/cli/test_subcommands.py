"""Every subcommand of the CLI is registered; a missing subcommand module is an error, not a
silently shorter ``--help``."""

from __future__ import annotations

import pytest

import app.cli as cli


def test_every_subcommand_is_registered() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.SUBCOMMANDS)


def test_a_missing_subcommand_module_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.SUBCOMMANDS, "ghost", "app.cli.ghost_cmd")
    with pytest.raises(ModuleNotFoundError, match="app.cli.ghost_cmd"):
        cli.build_parser()
