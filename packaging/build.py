"""Build the one-folder MaskLoop app (``make package``) and smoke-test it.

    python packaging/build.py [--dist DIR] [--work DIR] [--no-smoke] [--clean]

Runs PyInstaller on packaging/maskloop.spec (bundle: DIST/maskloop), then the frozen app's
``--self-test`` and ``--startup-time`` (see packaging/smoke.py), prints the figures and
writes them to DIST/maskloop-build.json. Exit code 0 only if the build and the smoke test
passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from smoke import smoke_test  # noqa: E402  (packaging/ is not a package)


def build(dist: Path, work: Path, clean: bool = False) -> float:
    """Run PyInstaller on the spec; returns the build time in seconds."""
    cmd = [sys.executable, "-m", "PyInstaller", str(HERE / "maskloop.spec"), "--noconfirm",
           "--log-level", "WARN", "--distpath", str(dist), "--workpath", str(work)]
    if clean:
        cmd.append("--clean")
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller",
                        help="PyInstaller's work folder")
    parser.add_argument("--no-smoke", action="store_true", help="build only")
    parser.add_argument("--clean", action="store_true", help="empty PyInstaller's cache first")
    args = parser.parse_args(argv)
    try:
        seconds = build(args.dist.resolve(), args.work.resolve(), args.clean)
    except subprocess.CalledProcessError as exc:
        print(f"build.py: PyInstaller failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    bundle = args.dist.resolve() / "maskloop"
    print(f"built {bundle} in {seconds:.0f} s")
    if args.no_smoke:
        return 0
    report = smoke_test(bundle)
    report["build_seconds"] = round(seconds, 1)
    (args.dist / "maskloop-build.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "self_test_output"}, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
