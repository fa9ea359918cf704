"""Refresh the README's screenshots from a real window (X11, e.g. Xvfb), not offscreen:

    Xvfb :99 -screen 0 1366x768x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python docs/make_screenshots.py

The bundled samples open with the classical backend in a scratch project (settings and
project in a temporary folder); a few objects are labelled through the label popup, and the
screen is grabbed with ``xwd`` (ImageMagick's ``convert`` writes the JPEGs into docs/) at each
step: the main window, the label popup, the export dialog with its summary, the F1 key table
and a 1024 x 700 window with its panels collapsed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRATCH = Path(tempfile.mkdtemp(prefix="maskloop-shots-"))
os.environ["XDG_CONFIG_HOME"] = str(SCRATCH / "config")
os.environ["XDG_DATA_HOME"] = str(SCRATCH / "data")
DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from PySide6.QtCore import QPoint, QPointF, QRect, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402
from screenshot_runner import Step, run  # noqa: E402

from app.predict.classical.predictor import ClassicalPredictor  # noqa: E402
from app.ui.app import Launcher  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.settings import GuiSettings  # noqa: E402
from app.ui.workers import PredictorBridge  # noqa: E402


def grab(name: str, rect: QRect, *over: QWidget) -> None:
    """The screen's ``rect`` as docs/NAME.jpg: ``xwd`` of the root window, with the windows
    ``over`` it (a popup, a dialog) grabbed by their own ``xwd -id`` and laid on top (Xvfb's
    root image leaves second windows black), then ``convert``."""
    xwd = subprocess.run(["xwd", "-root", "-silent"], check=True, capture_output=True).stdout
    layers: list[str] = []
    for i, widget in enumerate(over):
        part = SCRATCH / f"window{i}.png"
        win = subprocess.run(["xwd", "-id", str(int(widget.winId())), "-silent"], check=True,
                             capture_output=True).stdout
        subprocess.run(["convert", "xwd:-", str(part)], input=win, check=True)
        pos = widget.mapToGlobal(QPoint(0, 0))
        layers += [str(part), "-geometry", f"+{pos.x()}+{pos.y()}", "-composite"]
    geometry = f"{rect.width()}x{rect.height()}+{rect.x()}+{rect.y()}"
    subprocess.run(["convert", "xwd:-", *layers, "-crop", geometry, "+repage",
                    "-quality", "85", str(DOCS / f"{name}.jpg")], input=xwd, check=True)
    print(f"docs/{name}.jpg  {(DOCS / f'{name}.jpg').stat().st_size // 1024} KB", flush=True)


def screen_rect(widget: QWidget) -> QRect:
    geo = widget.frameGeometry()
    return QRect(max(0, geo.x()), max(0, geo.y()), geo.width(), geo.height())


def vp(w: MainWindow, x: float, y: float) -> QPoint:
    return w.canvas.mapFromScene(QPointF(x, y))


def box(w: MainWindow, x0: float, y0: float, x1: float, y1: float) -> None:
    port = w.canvas.viewport()
    QTest.mousePress(port, Qt.MouseButton.LeftButton, pos=vp(w, x0, y0))
    for i in range(1, 6):
        QTest.mouseMove(port, vp(w, x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5))
    QTest.mouseRelease(port, Qt.MouseButton.LeftButton, pos=vp(w, x1, y1))


def keys(widget: QWidget, text: str) -> None:
    QTest.keyClicks(widget, text)


def enter(widget: QWidget) -> None:
    QTest.keyClick(widget, Qt.Key.Key_Return)


def label_box(w: MainWindow, rect: tuple[float, float, float, float], label: str,
              shot: str | None = None) -> Step:
    """Drag ``rect``, wait for the mask, Enter, type the label in the popup, Enter."""
    box(w, *rect)
    yield lambda: w.sam_tool.state.result is not None
    yield 300
    enter(w.canvas)
    yield lambda: w.labelling.popup is not None and w.labelling.popup.isVisible()
    popup = w.labelling.popup
    assert popup is not None
    keys(popup.edit, label[:2])
    yield 400
    popup.repaint()
    yield 1200
    if shot:
        grab(shot, screen_rect(w), popup)
    if label not in popup.names()[:1]:
        popup.edit.setText(label)
    enter(popup.edit)
    yield lambda: w.labelling.popup is None
    yield 300


def script(w: MainWindow, app: QApplication) -> Step:
    yield lambda: w.canvas.image_size is not None
    yield 800
    for rect, label in [((0, 0, 100, 258), "flag"), ((345, 55, 462, 262), "rocket"),
                        ((278, 340, 511, 511), "helmet")]:
        yield from label_box(w, rect, label)
    yield from label_box(w, (126, 350, 214, 444), "patch")
    yield from label_box(w, (272, 338, 332, 382), "patch", shot="popup")
    w.set_tool("edit")
    QTest.mouseClick(w.canvas.viewport(), Qt.MouseButton.LeftButton, pos=vp(w, 400, 180))
    yield 400
    QTest.mouseMove(w.canvas.viewport(), vp(w, 230, 150))
    yield 300
    grab("screenshot", screen_rect(w))
    # the export dialog, after an export with the readers' check
    from app.ui.dialogs.export_dialog import ExportDialog

    dlg = ExportDialog(w.project, w.tasks, w,
                       shown_ids=[int(r.id or 0) for r in w.images_panel.visible_records()])
    dlg.folder.setText(str(SCRATCH / "export"))
    dlg.val_fraction.setValue(0.2)
    dlg.with_overlays.setChecked(True)
    dlg.show()
    dlg.move(w.geometry().center() - dlg.rect().center())
    yield 300
    dlg.export_button.click()
    yield lambda: dlg.task is None and dlg.report is not None
    yield 500
    grab("export-dialog", screen_rect(w), dlg)
    dlg.close()
    # F1
    QTest.keyClick(w.canvas, Qt.Key.Key_F1)
    yield lambda: getattr(w, "help_dialog", None) is not None and w.help_dialog.isVisible()
    help_dialog = w.help_dialog
    help_dialog.move(w.geometry().center() - help_dialog.rect().center())
    yield 500
    grab("keys", screen_rect(w), help_dialog)
    help_dialog.close()
    # a small window: the panels collapse to icons, the image is refitted
    w.resize(1024, 700)
    yield 800
    grab("small-window", screen_rect(w))
    app.quit()


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    bridge = PredictorBridge(ClassicalPredictor())
    settings = GuiSettings(guide_done=True)
    launcher = Launcher(bridge, settings, interactive=False)
    launcher.open(None)
    return run(app, launcher, bridge, script, SCRATCH)


if __name__ == "__main__":
    raise SystemExit(main())
