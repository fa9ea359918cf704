"""The check for the system libraries of Qt's X11 platform, on real shared libraries built
here with the C compiler (one of them deleted after linking, as on a machine without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import main
from app.ui import system_libs

needs_cc = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("ldd") is None,
                              reason="builds a real shared library (cc) and reads its "
                              "dependencies (ldd): this machine lacks cc or ldd")


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-cursor.so.0", "libxcb-cursor0"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-render-util.so.0", "libxcb-render-util0"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-xinerama.so.0", "libxcb-xinerama0"),
    ("libEGL.so.1", "libegl1"),
])
def test_debian_package_names(soname: str, package: str) -> None:
    assert system_libs.debian_package(soname) == package


def _plugin_needing_a_deleted_library(tmp_path: Path) -> Path:
    (tmp_path / "ghost.c").write_text("int ghost(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int ghost(void);\nint plugin(void) { return ghost(); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,-soname,libxcb-ghost.so.7", "-o",
                    str(tmp_path / "libxcb-ghost.so.7"), str(tmp_path / "ghost.c")], check=True)
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(plugin), str(tmp_path / "plugin.c"),
                    str(tmp_path / "libxcb-ghost.so.7")], check=True)
    (tmp_path / "libxcb-ghost.so.7").unlink()
    return plugin


@needs_cc
def test_a_missing_library_is_found_and_named(tmp_path: Path) -> None:
    plugin = _plugin_needing_a_deleted_library(tmp_path)
    missing = system_libs.missing_libraries([plugin])
    assert "libxcb-ghost.so.7" in missing
    text = system_libs.advice(missing)
    assert "libxcb-ghost.so.7" in text
    assert "sudo apt-get install" in text and "libxcb-ghost7" in text


def test_the_installed_qt_plugin_is_found() -> None:
    files = system_libs.qt_xcb_files()
    assert files and files[0].name == "libqxcb.so"


def test_nothing_to_say_when_nothing_is_missing() -> None:
    assert system_libs.advice([]) == ""


def test_platforms_that_need_no_x11(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert not system_libs.will_use_xcb()
    assert system_libs.main() == 0
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert system_libs.will_use_xcb()
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert not system_libs.will_use_xcb()


@needs_cc
def test_the_app_refuses_to_start_and_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    plugin = _plugin_needing_a_deleted_library(tmp_path)
    monkeypatch.setattr(system_libs, "qt_xcb_files", lambda: [plugin])
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install" in err and "libxcb-ghost7" in err
