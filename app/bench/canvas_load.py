"""How long the canvas takes to show a SAM answer as instances pile up on an image (issue 16):
N overlapping instances on a small image filling a large window, the busy ring spinning at
the click while the worker "computes", then the answer shown; timed from the answer to the
end of the paint that shows it, and the cost of one ring frame. Prints JSON.

``python -m app.bench.canvas_load [--counts 0,50,100,200] [--answers 10]``
(runs offscreen when no display is set)."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

from app.bench.timing import summary_ms

WINDOW = (1280, 800)  # the viewport, in screen pixels
IMAGE = (160, 120)  # the soak test's image: each image pixel is ~6.7 screen pixels
WORKER_MS = 120  # what the prediction worker takes (0.10-0.15 s measured)


def overlapping_instances(n: int, seed: int = 0) -> list[Any]:
    """``n`` irregular blobs (unions of 3 discs) over the image: most overlap many others,
    as after hundreds of accepted clicks on one small image."""
    from shapely.geometry import Point
    from shapely.ops import unary_union

    rng = np.random.default_rng(seed)
    w, h = IMAGE
    shapes = []
    for _ in range(n):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        discs = [Point(cx + rng.uniform(-12, 12), cy + rng.uniform(-12, 12))
                 .buffer(float(rng.uniform(6, 22)), quad_segs=12) for _ in range(3)]
        shapes.append(unary_union(discs).simplify(0.3))
    return shapes


def live_mask(seed: int) -> np.ndarray:
    """A SAM-like answer: one filled disc of the image's size."""
    w, h = IMAGE
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy, r = rng.uniform(30, w - 30), rng.uniform(30, h - 30), rng.uniform(15, 35)
    return np.asarray((xx - cx) ** 2 + (yy - cy) ** 2 < r * r)


def measure(count: int, answers: int, cached: bool) -> dict[str, Any]:
    """Answer-to-shown times and ring-frame times with ``count`` instances; ``cached``:
    the instance layer as it is now (one cached picture), else one item per instance."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QRect, QTimer
    from PySide6.QtGui import QColor, QPaintEvent, QPixmap
    from PySide6.QtWidgets import QApplication

    from app.ui.canvas.feedback import BusyRing
    from app.ui.canvas.layers import InstanceLayer, MaskLayer
    from app.ui.canvas.shades import shade
    from app.ui.canvas.view import CanvasView

    painted: list[float] = []

    class TimedView(CanvasView):
        def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
            super().paintEvent(event)
            painted.append(time.perf_counter())

    app = QApplication.instance()
    assert app is not None
    view = TimedView()
    view.resize(*WINDOW)
    pixmap = QPixmap(*IMAGE)
    pixmap.fill(QColor(120, 140, 110))
    view.set_image(pixmap)
    view.show()
    layer = InstanceLayer(view.scene(), cached=cached)
    layer.set_instances((i, g, shade("#ff3b30", i), True)
                        for i, g in enumerate(overlapping_instances(count)))
    mask = MaskLayer(view.scene())
    ring = BusyRing()
    view.scene().addItem(ring)
    app.processEvents()
    view.viewport().repaint()
    loop = QEventLoop()
    shown: list[float] = []
    frames = 0

    def answer(seed: int) -> None:
        t0 = time.perf_counter()
        ring.stop()
        mask.set_mask(live_mask(seed), QColor("#ff3b30"))
        done = len(painted)

        def wait_paint() -> None:
            if len(painted) > done:
                shown.append(painted[-1] - t0)
                loop.quit()
            else:
                QTimer.singleShot(0, wait_paint)

        wait_paint()

    for k in range(answers):
        w, h = IMAGE
        ring.start(w / 2 + k, h / 2)
        before = len(painted)
        QTimer.singleShot(WORKER_MS, lambda k=k: answer(k))
        loop.exec()
        frames += len(painted) - before - 1
    # an accept: one more instance on the image, timed to the paint that shows it
    accepts: list[float] = []
    rows = [(i, g, shade("#ff3b30", i), True) for i, g in enumerate(overlapping_instances(count))]
    extra = overlapping_instances(answers, seed=1)
    for k in range(answers):
        rows.append((count + k, extra[k], shade("#007aff", k), True))
        done = len(painted)
        t0 = time.perf_counter()
        layer.set_instances(rows)
        while len(painted) == done:
            app.processEvents()
        accepts.append(painted[-1] - t0)
    # one ring frame: the small rectangle the spinner dirties, painted synchronously
    ring.start(IMAGE[0] / 2, IMAGE[1] / 2)
    spot = view.mapFromScene(ring.pos())
    rect = QRect(spot.x() - 20, spot.y() - 20, 40, 40)
    ring_frames = []
    timer = QElapsedTimer()
    for _ in range(20):
        timer.start()
        view.viewport().repaint(rect)
        ring_frames.append(timer.nsecsElapsed() / 1e9)
    ring.stop()
    view.close()
    view.deleteLater()
    app.processEvents()
    return {"instances": count, "answer_to_shown_ms": summary_ms(shown),
            "accept_to_shown_ms": summary_ms(accepts),
            "ring_frame_ms": summary_ms(ring_frames),
            "frames_while_waiting": frames / max(answers, 1)}


def _ratio(before: dict[str, Any], after: dict[str, Any], key: str) -> float | None:
    b, a = before[key]["p50"], after[key]["p50"]
    return round(b / a, 2) if a else None


def main(argv: list[str] | None = None) -> None:
    """Both layers, interleaved by instance count; the ratio is per-item over cached."""
    parser = argparse.ArgumentParser(prog="python -m app.bench.canvas_load",
                                     description=__doc__)
    parser.add_argument("--counts", default="0,50,100,200",
                        help="instance counts, comma separated (default 0,50,100,200)")
    parser.add_argument("--answers", type=int, default=10, help="answers per count")
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    _app = QApplication.instance() or QApplication([])  # kept alive while measuring
    rows = []
    for count in (int(c) for c in args.counts.split(",")):
        before = measure(count, args.answers, cached=False)
        after = measure(count, args.answers, cached=True)
        rows.append({"instances": count, "per_item": before, "cached": after,
                     "answer_ratio_p50": _ratio(before, after, "answer_to_shown_ms"),
                     "accept_ratio_p50": _ratio(before, after, "accept_to_shown_ms"),
                     "ring_frame_ratio_p50": _ratio(before, after, "ring_frame_ms")})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"window": WINDOW, "image": IMAGE, "worker_ms": WORKER_MS,
                      "platform": QGuiApplication.platformName(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
