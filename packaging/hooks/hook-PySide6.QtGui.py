"""PySide6.QtGui with only the Qt plugins a QtWidgets app needs on a desktop.

PyInstaller's own hook collects every plugin type of QtGui, and with them their libraries
(GTK 3 for the gtk3 theme; Wayland, EGL and OpenGL for the device integrations). Dropping
them here, before dependency analysis, also keeps those libraries out of the bundle. Kept:
the xcb (X11, XWayland), offscreen and minimal platforms, image formats, the SVG icon engine,
input methods and the xdg-desktop-portal theme (native file dialogs)."""

from __future__ import annotations

from pathlib import PurePath

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

DROPPED_PLUGIN_DIRS = {
    "egldeviceintegrations", "generic", "xcbglintegrations", "wayland-decoration-client",
    "wayland-graphics-integration-client", "wayland-shell-integration",
}
DROPPED_PLUGINS = (
    "libqgtk3", "qgtk3", "libqwayland", "qwayland", "libqeglfs", "qeglfs", "libqlinuxfb",
    "libqvnc", "qvnc", "libqvkkhrdisplay", "libqminimalegl", "libqtvirtualkeyboard",
    "qtvirtualkeyboard",
)


def _keep(entry: tuple[str, str]) -> bool:
    src, dest = entry
    dest_dir = PurePath(dest.replace("\\", "/")).name
    return dest_dir not in DROPPED_PLUGIN_DIRS and not PurePath(src).name.startswith(
        DROPPED_PLUGINS)


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [b for b in binaries if _keep(b)]
