"""Small real videos for the window's video tests: a bright rectangle moving right over a
dark noisy background, written with PyAV (the frame index is in the top-left bits, so a
decoded frame can be told from its neighbours)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

W, H = 160, 120
SPEED = 2  # pixels per frame


def moving_scene(i: int) -> np.ndarray:
    """Frame ``i``: the object at x 40+2i .. 100+2i, y 30..80, RGB uint8."""
    rng = np.random.default_rng(7)
    frame = (rng.integers(0, 40, (H, W, 3))).astype(np.uint8)
    x0 = 40 + SPEED * i
    frame[30:80, x0:x0 + 60] = (230, 220, 40)
    for b in range(6):
        frame[:6, b * 8:(b + 1) * 8] = 255 if (i >> b) & 1 else 0
    return frame


def write_video(path: Path, frames: int = 16, fps: int = 12) -> Path:
    """An MP4 (H.264, no B-frames) of ``frames`` frames of ``moving_scene``."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "12", "bf": "0"}
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(moving_scene(i),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def qimage_rgb(image: QImage) -> np.ndarray:
    """A QImage's pixels as RGB uint8 (H, W, 3)."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    data = np.frombuffer(img.constBits(), np.uint8, img.bytesPerLine() * h)
    return data.reshape(h, img.bytesPerLine())[:, :w * 3].reshape(h, w, 3).copy()
