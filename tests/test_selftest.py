"""``maskloop --self-test`` from the source tree (the frozen one: tests/test_package.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from app import selftest
from app.cli import main as cli_main


@pytest.mark.slow
def test_self_test_passes_from_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--self-test"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert len(lines) == len(selftest.CHECKS)
    assert all(line.startswith("ok   ") for line in lines), out
    assert "(source," in out and out.rstrip().endswith("all checks passed")


def test_failures_are_reported_and_later_checks_still_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: selftest.Context) -> str:
        raise ValueError("bad pixels\nsecond line")

    def needs_image(ctx: selftest.Context) -> str:
        ctx.need_image()
        return ""

    monkeypatch.setattr(selftest, "CHECKS", [("broken", broken), ("later", needs_image),
                                             ("fine", lambda ctx: "done")])
    lines: list[str] = []
    assert selftest.run_checks(out=lines.append) is False
    assert lines[1:] == ["FAIL broken: ValueError: bad pixels",
                         "FAIL later: skipped: no sample image",
                         lines[3], "SOME CHECKS FAILED"]
    assert lines[3].startswith("ok   fine (") and lines[3].endswith("ms): done")


def test_resources_are_found_in_a_bundle(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    assert (selftest.resources_dir() / "samples" / selftest.SAMPLE_NAME).is_file()
    (tmp_path / "resources" / "samples").mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert selftest.resources_dir() == tmp_path / "resources"
