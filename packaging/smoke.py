"""Smoke test of a built bundle: size, the frozen ``--self-test`` and start-up time.

    python packaging/smoke.py [DIST/maskloop]

Runs the frozen app with private user folders (nothing of the real user's is read or
written) and Qt's offscreen platform. Used by build.py and tests/test_package.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SELF_TEST_TIMEOUT = 300
STARTUP_TIMEOUT = 120


def executable(bundle: Path) -> Path:
    """The console launcher inside a one-folder bundle."""
    return bundle / ("maskloop.exe" if sys.platform == "win32" else "maskloop")


def folder_bytes(folder: Path) -> int:
    """Total size of the files under ``folder`` (what ``du`` counts, without block rounding)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def private_env(home: Path) -> dict[str, str]:
    """The environment for running the app with its user folders under ``home``."""
    env = dict(os.environ)
    env.update({
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "MASKLOOP_CACHE_DIR": str(home / "cache" / "embeddings"),
        "MASKLOOP_MODELS_DIR": str(home / "models"),
    })
    env.pop("PYTHONPATH", None)  # the bundle must not need the source tree
    return env


def run_self_test(exe: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """(exit code, output, wall seconds) of ``exe --self-test``."""
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "--self-test"], env=env, capture_output=True, text=True,
                          timeout=SELF_TEST_TIMEOUT, cwd=tempfile.gettempdir())
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


@dataclass
class Startup:
    """One ``--startup-time`` run, in seconds from launching the process."""

    window: float  # the first main window shown (seen on the app's stdout)
    image: float | None  # its first image on the canvas
    exit: float  # the process ended (after closing the window)
    in_app_window: float  # the window, as the app measured it (from app.cli's start)


def run_startup(exe: Path, env: dict[str, str], *args: str) -> Startup:
    """Launch ``exe --startup-time ARGS`` (it quits once its first window shows an image) and
    time it from the outside."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(exe), "--startup-time", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=1,
                            cwd=tempfile.gettempdir())
    seen: dict[str, float] = {}
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        for what in ("window", "image"):
            if line.startswith(f"first {what} shown"):
                seen[what] = time.perf_counter() - start
    try:
        _, err = proc.communicate(timeout=STARTUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    ended = time.perf_counter() - start
    found = re.search(r"first window shown ([\d.]+) s", "".join(lines))
    if proc.returncode != 0 or not found or "window" not in seen:
        raise RuntimeError(f"--startup-time failed (exit {proc.returncode}):\n"
                           f"{''.join(lines)}{err}")
    return Startup(seen["window"], seen.get("image"), ended, float(found.group(1)))


def smoke_test(bundle: Path, startup_runs: int = 3) -> dict[str, Any]:
    """Run the checks on ``bundle``; a dict of figures with ``passed`` and the output."""
    bundle = bundle.resolve()
    exe = executable(bundle)
    report: dict[str, Any] = {"bundle": str(bundle), "passed": False}
    if not exe.is_file():
        report["error"] = f"{exe} does not exist"
        return report
    report["bundle_mb"] = round(folder_bytes(bundle) / 2**20, 1)
    with tempfile.TemporaryDirectory(prefix="maskloop-smoke-") as tmp:
        env = private_env(Path(tmp))
        rc, output, seconds = run_self_test(exe, env)
        report.update(self_test_rc=rc, self_test_seconds=round(seconds, 1),
                      self_test_output=output)
        print(output, end="")
        try:
            runs = [run_startup(exe, env) for _ in range(startup_runs)]
            report["startup_classical"] = _summary(runs)
            checkpoint = _random_checkpoint(Path(tmp))
            if checkpoint is not None:
                runs = [run_startup(exe, env, "--checkpoint", str(checkpoint))
                        for _ in range(startup_runs)]
                report["startup_sam2_tiny"] = _summary(runs)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            report["error"] = str(exc)
            return report
    report["passed"] = rc == 0
    return report


def _summary(runs: list[Startup]) -> dict[str, Any]:
    """Each run's figures (the first run is the coldest) and the best of them."""
    rows = [{k: (round(v, 2) if v is not None else None) for k, v in asdict(r).items()}
            for r in runs]
    return {"runs": rows, "best_window_s": min(r["window"] for r in rows)}


def _random_checkpoint(folder: Path) -> Path | None:
    """A random-weight SAM2 tiny checkpoint made with the source tree (None without torch)."""
    try:
        sys.path.insert(0, str(ROOT))
        from app.predict.sam2.model import save_random_checkpoint
    except ImportError:
        return None
    return save_random_checkpoint(folder / "sam2.1_hiera_tiny_random.pt", "tiny")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    bundle = Path(args[0]) if args else ROOT / "dist" / "maskloop"
    report = smoke_test(bundle)
    print(json.dumps({k: v for k, v in report.items() if k != "self_test_output"}, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
