"""Large images (issue 16): ``python -m app.bench.big_image [--side 20000] [--jpeg PATH]``.

Prints JSON: the time to the first picture and to the built pyramid, the process's RSS growth
(peak and after the pyramid) opening a side x side JPEG (written with cv2, quality 90, a
synthetic texture, unless ``--jpeg``), the frame times of 20 pan/zoom steps while the tiles
load, and the per-accept cost with 10 against 200 instances on one image (then the cost of
deleting one instance from the middle, as many times, with 10 against 200). Runs offscreen;
uses the window's own path (``TiledOpening``, ``TiledImageItem``; the app's decoder
``load_image`` for the full image, as the image store does: OpenCV's low-peak path for a
plain 8-bit image this large, or Pillow's with ``--pillow-decode``, to compare).

``clicks`` (skip with ``--skip-clicks``): click -> mask on a side x side image through the
tiled predictor (``app/predict/tiles``) with the tiles it needs cached, as a ratio to a click
on a 1024 x 768 image, both with a random-weight SAM2 tiny (noise masks, real timing), the
clicks of the two images interleaved so that a busy neighbour slows both alike. Two figures:
the click decoded in its one tile (an object inside a tile), and the click whose mask runs
over tile edges (random weights: noise reaching every edge, so 4 tiles: ``max_tiles`` 4).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.bench.timing import summary_ms

FIRST_PICTURE_GOAL_S = 2.0
RSS_GOAL_BYTES = 1.5e9


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples the RSS every few ms on a thread; ``peak`` is the largest seen."""

    def __init__(self, every_s: float = 0.02) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._every = every_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_bytes())


def write_jpeg(path: Path, side: int) -> None:
    """A synthetic textured RGB image: smooth colour fields plus block noise."""
    import cv2

    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (max(2, side // 50), max(2, side // 50), 3), np.uint8)
    img = cv2.resize(small, (side, side), interpolation=cv2.INTER_LINEAR)
    noise = rng.integers(0, 40, (max(1, side // 4), max(1, side // 4), 3), np.uint8)
    img = cv2.add(img, cv2.resize(noise, (side, side), interpolation=cv2.INTER_NEAREST))
    cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def _wait(app: Any, until: Any, timeout_s: float) -> bool:
    end = time.perf_counter() + timeout_s
    while not until():
        if time.perf_counter() > end:
            return False
        app.processEvents()
        time.sleep(0.002)
    return True


def bench_open(path: Path, steps: int = 20) -> dict[str, Any]:
    """Open ``path`` as the window does and pan/zoom while its tiles load."""
    from PySide6.QtWidgets import QApplication

    from app.core.images import image_size, load_image
    from app.ui.canvas.tiled_image import TiledImageItem, TiledOpening
    from app.ui.canvas.view import CanvasView
    from app.ui.tasks import TaskRunner

    app = QApplication.instance() or QApplication([])
    view = CanvasView()
    view.resize(1280, 800)
    view.show()
    app.processEvents()
    width, height = image_size(path)
    runner = TaskRunner(2)
    base = rss_bytes()
    peak = PeakRss()
    t0 = time.perf_counter()
    item = TiledImageItem(width, height, runner)
    marks: dict[str, float] = {}

    def first() -> None:
        view.set_tiled(item, width, height)
        view.viewport().repaint()
        marks["first"] = time.perf_counter() - t0

    errors: list[BaseException] = []
    opening = TiledOpening(runner, item, path, lambda: load_image(path), first, errors.append)
    _wait(app, lambda: "first" in marks or bool(errors), 120)
    if errors:
        raise errors[0]
    # pan and zoom while the full image decodes, the levels build and the tiles come
    frames: list[float] = []
    levels_seen: list[int] = []
    while_loading = 0
    cx, cy = width * 0.4, height * 0.45
    for i in range(steps):
        if i % 4 == 0:
            view.zoom_by(1.6)
        elif i % 4 == 2:
            view.zoom_by(1 / 1.25)
        else:
            view.centerOn(cx + (i % 3) * 300.0, cy + (i % 5) * 200.0)
        app.processEvents()
        loading = item.pyramid is None or bool(item.missing)
        f0 = time.perf_counter()
        view.viewport().repaint()
        frames.append(time.perf_counter() - f0)
        while_loading += loading
        levels_seen.append(item.level)
        time.sleep(0.05)  # a person's pace: about 20 steps a second
    _wait(app, lambda: item.pyramid is not None, 300)
    marks["pyramid"] = time.perf_counter() - t0
    view.fit()
    _wait(app, lambda: view.viewport().repaint() or (not item.missing and bool(item.drawn)),
          60)
    marks["fitted_tiles"] = time.perf_counter() - t0
    # then zoom in from the whole image to 1:1 and pan, each step's new tiles still coming
    tiled_frames: list[float] = []
    tiled_levels: list[int] = []
    with_missing = 0
    for i in range(steps):
        if i < 12:
            view.zoom_by(1.5, None)
        else:
            view.centerOn(cx + i * 400.0, cy + (i % 3) * 250.0)
        app.processEvents()
        f0 = time.perf_counter()
        view.viewport().repaint()
        tiled_frames.append(time.perf_counter() - f0)
        tiled_levels.append(item.level)
        with_missing += bool(item.missing)
        time.sleep(0.05)
    settled = rss_bytes()
    peak_rss = peak.stop()
    pyr = item.pyramid
    out = {
        "image": f"{width}x{height}", "jpeg_mb": round(path.stat().st_size / 1e6, 1),
        "first_picture_s": round(marks["first"], 3),
        "pyramid_built_s": round(marks["pyramid"], 3),
        "fitted_view_tiles_s": round(marks["fitted_tiles"], 3),
        "frames_ms": summary_ms(frames), "frames_while_loading": while_loading,
        "levels_drawn": levels_seen,
        "tiled_frames_ms": summary_ms(tiled_frames),
        "tiled_frames_with_tiles_missing": with_missing, "tiled_levels_drawn": tiled_levels,
        "rss_growth_peak_gb": round((peak_rss - base) / 1e9, 3),
        "rss_growth_settled_gb": round((settled - base) / 1e9, 3),
        "pyramid_budget_mb": round((pyr.budget if pyr else 0) / 2**20, 1),
        "pyramid_held_mb": round((pyr.nbytes if pyr else 0) / 2**20, 1),
        "decoded_image_gb": round(width * height * 3 / 1e9, 3),
    }
    opening.cancel()
    runner.wait()
    view.close()
    return out


def bench_accepts(counts: tuple[int, ...] = (10, 200), accepts: int = 10) -> dict[str, Any]:
    """Per-accept cost (``session.add_instance`` through the window's refresh) with ``n``
    instances already on the image, and the instance layer's share of it."""
    import cv2
    from PySide6.QtWidgets import QApplication
    from shapely.geometry import box

    from app.core.types import Source
    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.app import Launcher
    from app.ui.settings import GuiSettings
    from app.ui.workers import PredictorBridge

    app = QApplication.instance() or QApplication([])
    out: dict[str, Any] = {}
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "images"
            folder.mkdir()
            cv2.imwrite(str(folder / "a.png"), np.full((1000, 1500, 3), 90, np.uint8))
            bridge = PredictorBridge(ClassicalPredictor())
            launcher = Launcher(bridge, GuiSettings(), interactive=False)
            launcher.open(folder)
            _wait(app, lambda launcher=launcher: launcher.window is not None, 60)
            w = launcher.window
            assert w is not None
            w.resize(1200, 800)
            _wait(app, lambda w=w: w.canvas.image_size is not None, 60)
            side = int(np.ceil(np.sqrt(n + accepts)))
            cells = [(30 + 1400 * (k % side) / side, 30 + 900 * (k // side) / side)
                     for k in range(n + accepts)]
            for x, y in cells[:n]:
                w.session.add_instance(box(x, y, x + 20, y + 20), Source.MANUAL)
            layer = w.instance_layer
            layer_s: list[float] = []
            original = layer.set_instances

            def timed(rows: Any, original: Any = original, into: list[float] = layer_s
                      ) -> None:
                t = time.perf_counter()
                original(rows)
                into.append(time.perf_counter() - t)

            layer.set_instances = timed  # type: ignore[method-assign]
            created = layer.created
            total_s: list[float] = []
            for x, y in cells[n:]:
                app.processEvents()
                t = time.perf_counter()
                w.session.add_instance(box(x, y, x + 20, y + 20), Source.MANUAL)
                app.processEvents()  # the window's update: the new instance's area only
                total_s.append(time.perf_counter() - t)
            frame_s = []
            for _ in range(5):  # for scale: a whole frame with all n instances drawn
                t = time.perf_counter()
                w.canvas.viewport().repaint()
                frame_s.append(time.perf_counter() - t)
            accept_layer_s, delete_s = list(layer_s), []
            full = w.instance_sync.full
            for _ in range(accepts):  # then delete one from the middle, as many times
                app.processEvents()
                ids = [int(i.id or 0) for i in w.session.instances()]
                t = time.perf_counter()
                w.session.delete([ids[len(ids) // 2]])
                app.processEvents()
                delete_s.append(time.perf_counter() - t)
            out[str(n)] = {"accept_ms": summary_ms(total_s),
                           "instance_layer_ms": summary_ms(accept_layer_s),
                           "items_created_per_accept": (layer.created - created) / accepts,
                           "delete_middle_ms": summary_ms(delete_s),
                           "delete_instance_layer_ms": summary_ms(
                               layer_s[len(accept_layer_s):]),
                           "full_refreshes_per_delete": (w.instance_sync.full - full) / accepts,
                           "full_frame_ms": summary_ms(frame_s)}
            w.close()
            bridge.close()
    a, b = (out[str(c)] for c in counts[:2])
    out["accept_ratio"] = round(b["accept_ms"]["p50"] / a["accept_ms"]["p50"], 2)
    out["instance_layer_ratio"] = round(
        b["instance_layer_ms"]["p50"] / a["instance_layer_ms"]["p50"], 2)
    out["delete_middle_ratio"] = round(
        b["delete_middle_ms"]["p50"] / a["delete_middle_ms"]["p50"], 2)
    return out


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour field (RGB uint8), made at 1/50 and enlarged."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, h // 50), max(2, w // 50), 3), np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def bench_clicks(side: int = 20000, clicks: int = 10, runtime: str | None = None,
                 seed: int = 0) -> dict[str, Any]:
    """The click ratio of the module doc. The tiles a click needs are encoded by an untimed
    first click at the same place (on demand, as in the app), then its clicks are timed."""
    from app.core.types import Point, Prompt
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.model import save_random_checkpoint
    from app.predict.sam2.predictor import SAM2Predictor
    from app.predict.tiles.predictor import TiledPredictor

    tiny = "configs/sam2.1/sam2.1_hiera_t.yaml"
    out: dict[str, Any] = {"side": side, "clicks": clicks}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_random_checkpoint(Path(tmp) / "tiny.pt", tiny, seed=seed)
        cache = EmbeddingCache(disk_dir=Path(tmp) / "embeddings")
        sam = SAM2Predictor(ckpt, tiny, model_id="bench-big-tiny", cache=cache,
                            runtime=runtime)
        out["runtime"] = sam.runtime.name
        small = _textured(768, 1024, seed)
        small_key = sam.embed(small)
        big = _textured(side, side, seed + 1)
        rng = np.random.default_rng(seed)
        places = [(float(x), float(y)) for x, y in rng.uniform(0.1, 0.9, (3, 2)) * side]
        for name, max_tiles, where in (("one_tile", 1, places), ("over_edges", 4, places[:1])):
            tiled = TiledPredictor(sam, max_tiles=max_tiles)
            key = tiled.embed(big, "bench-big")
            t = time.perf_counter()
            for x, y in where:  # encodes the tiles these clicks need (cached after)
                tiled.predict(key, Prompt(points=(Point(x, y),)))
            out[f"{name}_encode_s"] = round(time.perf_counter() - t, 1)
            small_s, big_s, tiles = [], [], []
            for k in range(clicks):
                x, y = where[k % len(where)]
                t = time.perf_counter()
                result = sam.predict(small_key, Prompt(points=(Point(500.0 + k, 380.0),)))
                result.mask(result.best)
                small_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                tiled_result = tiled.predict(key, Prompt(points=(Point(x, y),)))
                tiled_result.crop(tiled_result.best)  # type: ignore[attr-defined]
                big_s.append(time.perf_counter() - t)
                tiles.append(len(tiled_result.tiles))  # type: ignore[attr-defined]
            small_ms, big_ms = summary_ms(small_s), summary_ms(big_s)
            out[name] = {"click_1024x768_ms": small_ms, f"click_{side}_ms": big_ms,
                         "tiles_decoded_mean": float(np.mean(tiles)),
                         "ratio_p50": round(big_ms["p50"] / small_ms["p50"], 2)}
        out["goal_one_tile_ratio_le_1_5"] = out["one_tile"]["ratio_p50"] <= 1.5
        sam.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m app.bench.big_image")
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--jpeg", type=Path, default=None, help="an existing JPEG to open")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-accepts", action="store_true")
    parser.add_argument("--skip-open", action="store_true")
    parser.add_argument("--skip-clicks", action="store_true")
    parser.add_argument("--pillow-decode", action="store_true",
                        help="decode the full image with Pillow, as before the low-peak "
                             "path (app/core/image_decode.py): the figures to compare")
    parser.add_argument("--clicks", type=int, default=10, help="timed clicks per figure")
    parser.add_argument("--runtime", default=None,
                        help="SAM2's CPU runtime for the clicks (default: the app's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    result: dict[str, Any] = {}
    if args.pillow_decode:
        from app.core import image_decode

        image_decode.LOW_PEAK_PIXELS = 2**62  # no image is that large: Pillow decodes all
    result["decoder"] = "pillow" if args.pillow_decode else "low-peak"
    if not args.skip_open:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.jpeg
            if path is None:
                path = Path(tmp) / f"big{args.side}.jpg"
                t = time.perf_counter()
                write_jpeg(path, args.side)
                result["write_jpeg_s"] = round(time.perf_counter() - t, 1)
            opened = result["open"] = bench_open(path, args.steps)
        result["goals"] = {
            "first_picture_le_2s": opened["first_picture_s"] <= FIRST_PICTURE_GOAL_S,
            "rss_growth_peak_le_1_5gb": opened["rss_growth_peak_gb"] * 1e9 <= RSS_GOAL_BYTES,
            "rss_growth_settled_le_1_5gb":
                opened["rss_growth_settled_gb"] * 1e9 <= RSS_GOAL_BYTES,
        }
    if not args.skip_accepts:
        result["accepts"] = bench_accepts()
    if not args.skip_clicks:
        result["clicks"] = bench_clicks(args.side, args.clicks, args.runtime)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
