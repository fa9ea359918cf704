"""The PyInstaller bundle: build it, run the frozen ``--self-test`` and check its contents.

Run with ``make test-package`` (``make test`` leaves it out: it takes minutes). Set
MASKLOOP_BUNDLE=dist/maskloop to test an existing bundle instead of building one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.package, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packaging"))

from smoke import executable, private_env, run_self_test, run_startup  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    existing = os.environ.get("MASKLOOP_BUNDLE")
    if existing:
        yield Path(existing).resolve()
        return
    pytest.importorskip("PyInstaller", reason="pip install -e '.[package]'")
    tmp = tmp_path_factory.mktemp("package")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build.py"), "--no-smoke",
         "--dist", str(tmp / "dist"), "--work", str(tmp / "work")],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    yield tmp / "dist" / "maskloop"


def test_frozen_self_test_passes(bundle: Path, tmp_path: Path) -> None:
    rc, output, _ = run_self_test(executable(bundle), private_env(tmp_path))
    lines = [line for line in output.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert rc == 0, output
    assert "(frozen," in output
    names = {line[5:].split(" (")[0] for line in lines}
    assert {"sample image", "classical backend", "sam2 tiny", "project", "export coco",
            "export yolo", "main window"} <= names, output
    assert not [line for line in lines if line.startswith("FAIL")]


def test_frozen_app_opens_its_window(bundle: Path, tmp_path: Path) -> None:
    startup = run_startup(executable(bundle), private_env(tmp_path))
    assert 0 < startup.in_app_window < startup.window < startup.exit
    assert startup.image is not None, "the first sample image never reached the canvas"
    assert (tmp_path / "data" / "maskloop" / "projects" / "samples.maskloop").is_file()


def test_frozen_cli_has_every_subcommand(bundle: Path, tmp_path: Path) -> None:
    from app.cli import build_parser

    expected = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    proc = subprocess.run([str(executable(bundle)), "--help"], capture_output=True,
                          text=True, env=private_env(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr
    missing = [name for name in expected if name not in proc.stdout]
    assert not missing, f"subcommands missing from the bundle: {missing}"


def test_bundle_holds_what_is_needed_and_nothing_more(bundle: Path) -> None:
    files = [p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()]
    names = "\n".join(files)
    assert any(f.endswith("sam2/configs/sam2.1/sam2.1_hiera_t.yaml") for f in files)
    assert any(f.endswith("resources/samples/astronaut.jpg") for f in files)
    assert any("/platforms/" in f and "offscreen" in f for f in files)
    assert any("/platforms/" in f and "xcb" in f for f in files) or sys.platform != "linux"
    assert "torchvision" not in names
    assert not [f for f in files if f.endswith((".pt", ".pth", ".ckpt"))], "no checkpoint"
    for unused in ("torch/test/", "torch/include/", "torch/_inductor/", "torch/_dynamo/",
                   "QtWebEngine", "QtQuick", "Qt3D", "tkinter", "libqgtk3"):
        assert unused not in names, unused
    packages = {part for f in files for part in f.split("/")[:-1]}
    assert not packages & {"sympy", "torchvision", "triton", "jinja2", "networkx"}
    programs = {f.rsplit("/", 1)[1] for f in files if "torch/bin/" in f}
    assert programs <= {"torch_shm_manager"}, programs
    import torch

    if torch.version.cuda is None:  # a CPU build carries no CUDA libraries
        assert not [f for f in files if "libcudart" in f or "libcublas" in f or "nvidia/" in f]

