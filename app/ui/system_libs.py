"""Does this machine have the system libraries that Qt's X11 (xcb) platform needs?

Without them Qt aborts at start-up with a message that names only one of them
(``xcb-cursor0``). This module finds every missing one before Qt is started and says the
exact ``apt-get install`` line. It asks the dynamic linker (``ldd`` on Qt's xcb plugin and
its libraries) rather than keeping a list of its own, so it stays right across Qt releases;
``libxcb-cursor`` is checked by name because Qt loads it at run time, where ``ldd`` cannot
see it. No Qt module is imported: this must work where Qt cannot start.

``python -m app.ui.system_libs`` (run by ``make run``) prints the advice and exits 2 when
something is missing on a machine that will open an X11 window, else exits 0 silently.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

EXIT_MISSING = 2
# Loaded with dlopen by Qt >= 6.5 (so ldd does not list it), and required.
DLOPENED = ("libxcb-cursor.so.0",)
# soname -> Debian/Ubuntu package, where the usual rule (below) does not give the name.
PACKAGES = {
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def debian_package(soname: str) -> str:
    """The Debian package that ships a library: ``libxcb-icccm.so.4`` -> ``libxcb-icccm4``
    (a name that ends in a digit gets a dash: ``libfoo2.so.1`` -> ``libfoo2-1``)."""
    if soname in PACKAGES:
        return PACKAGES[soname]
    match = re.fullmatch(r"(lib[\w+.-]+?)\.so\.(\d+)", soname)
    if not match:
        return soname
    name, major = match.groups()
    return f"{name.lower()}{'-' if name[-1].isdigit() else ''}{major}"


def will_use_xcb() -> bool:
    """True where Qt would open an X11 window: Linux, and QT_QPA_PLATFORM unset or xcb, and
    no Wayland session (where Qt 6 picks its Wayland platform first)."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if platform:
        return platform == "xcb"
    return not os.environ.get("WAYLAND_DISPLAY")


def qt_xcb_files() -> list[Path]:
    """Qt's xcb platform plugin and the library it is built on, from the installed PySide6
    (or the frozen bundle), without importing PySide6."""
    roots: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.origin:
        roots.append(Path(spec.origin).parent)
    for root in roots:
        plugin = root / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            found = [plugin]
            found += sorted((root / "Qt" / "lib").glob("libQt6XcbQpa.so*"))[:1]
            return found
    return []


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_libraries(files: list[Path] | None = None) -> list[str]:
    """Sonames the xcb platform needs that the dynamic linker cannot find, sorted."""
    missing: set[str] = set()
    for path in qt_xcb_files() if files is None else files:
        try:
            out = subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                                 timeout=20, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            continue  # no ldd: nothing to say rather than a wrong claim
        missing.update(_NOT_FOUND.findall(out))
    missing.update(name for name in DLOPENED if not _loadable(name))
    return sorted(missing)


def advice(missing: list[str]) -> str:
    """What to tell the user about these missing libraries ('' when none)."""
    if not missing:
        return ""
    packages = sorted(dict.fromkeys(debian_package(name) for name in missing))
    return (f"Qt needs system libraries that are missing: {', '.join(missing)}.\n"
            f"On Debian/Ubuntu install them with:\n"
            f"    sudo apt-get install {' '.join(packages)}")


def main() -> int:
    if not will_use_xcb():
        return 0
    text = advice(missing_libraries())
    if text:
        print(f"maskloop: {text}", file=sys.stderr)
        return EXIT_MISSING
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
