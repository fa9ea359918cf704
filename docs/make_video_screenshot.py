"""docs/video.jpg from a real window (X11, e.g. Xvfb), not offscreen:

    Xvfb :99 -screen 0 1366x768x24 &
    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python docs/make_video_screenshot.py

A scratch folder (three bundled sample photos) opens with the classical backend; a short generated
video (two objects moving across a textured background, written with PyAV) is added, each
object is clicked and accepted on frame 0 (two tracks), both are propagated forward and the
window is grabbed on a later frame: the Video panel with its tracks and counts, the frame bar
with its anchor and propagated marks. The screen is grabbed by Qt (``QScreen.grabWindow``)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

SCRATCH = Path(tempfile.mkdtemp(prefix="maskloop-video-shot-"))
os.environ["XDG_CONFIG_HOME"] = str(SCRATCH / "config")
os.environ["XDG_DATA_HOME"] = str(SCRATCH / "data")
DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

import numpy as np  # noqa: E402
from PySide6.QtCore import QPointF, Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from screenshot_runner import Step, run  # noqa: E402

from app.predict.classical.predictor import ClassicalPredictor  # noqa: E402
from app.ui.app import Launcher  # noqa: E402
from app.ui.main_window import MainWindow  # noqa: E402
from app.ui.opening import samples_dir  # noqa: E402
from app.ui.settings import GuiSettings  # noqa: E402
from app.ui.workers import PredictorBridge  # noqa: E402

W, H, FRAMES, FPS = 640, 360, 40, 20
FOLDER = SCRATCH / "footage"  # a few sample photos and the video, in a scratch project


def frame(i: int) -> np.ndarray:
    """Frame ``i``: a yellow box moving right and a red disc moving left over a textured
    green-grey ground (smooth noise, so the flow has something to follow)."""
    rng = np.random.default_rng(3)
    ground = rng.integers(60, 120, (H // 8, W // 8, 3)).astype(np.uint8)
    import cv2

    img = cv2.resize(ground, (W, H), interpolation=cv2.INTER_CUBIC)
    img[..., 1] = np.clip(img[..., 1].astype(int) + 25, 0, 255).astype(np.uint8)
    x = 60 + 6 * i
    img[140:230, x:x + 120] = (235, 205, 40)
    cv2.circle(img, (560 - 5 * i, 120 + i), 48, (210, 40, 50), -1)
    return img


def write_video(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "16"}
        for i in range(FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def click_accept(w: MainWindow, x: float, y: float) -> Step:
    """Click (x, y) on the shown frame with the SAM tool, wait for the mask, Enter."""
    port = w.canvas.viewport()
    QTest.mouseClick(port, Qt.MouseButton.LeftButton, pos=w.canvas.mapFromScene(QPointF(x, y)))
    yield lambda: w.sam_tool.state.result is not None
    yield 300
    QTest.keyClick(w.canvas, Qt.Key.Key_Return)
    yield 300


def script(w: MainWindow, app: QApplication) -> Step:
    yield lambda: w.canvas.image_size is not None
    w.video.add_sequence(FOLDER / "two-objects.mp4")
    yield lambda: w.video.sequence is not None and w.canvas.image_size == (W, H)
    yield 500
    w.session.add_label("box")
    w.session.add_label("ball")
    w.app_state.set_label("box")
    yield from click_accept(w, 120, 185)
    w.app_state.set_label("ball")
    yield from click_accept(w, 560, 120)
    done: list[object] = []
    w.video.propagation_finished.connect(lambda *a: done.append(a))
    w.video.propagate(1)
    yield lambda: bool(done)
    w.video.go_to(24)
    yield lambda: w.video.frame == 24 and w.canvas.image_size is not None
    yield 1000
    shot = app.primaryScreen().grabWindow(0)
    geo = w.frameGeometry()
    shot.copy(max(0, geo.x()), max(0, geo.y()), geo.width(), geo.height()).save(
        str(DOCS / "video.jpg"), "JPEG", 85)
    print(f"docs/video.jpg  {(DOCS / 'video.jpg').stat().st_size // 1024} KB  {done[0]}",
          flush=True)
    app.quit()


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    bridge = PredictorBridge(ClassicalPredictor())
    launcher = Launcher(bridge, GuiSettings(guide_done=True, label_popup=False),
                        interactive=False)
    FOLDER.mkdir()
    for sample in sorted(samples_dir().glob("*.jpg"))[:3]:
        shutil.copy(sample, FOLDER / sample.name)
    write_video(FOLDER / "two-objects.mp4")
    launcher.open(FOLDER)
    return run(app, launcher, bridge, script, SCRATCH, (1366, 740))


if __name__ == "__main__":
    raise SystemExit(main())
