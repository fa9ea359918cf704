"""``maskloop --self-test``: checks that this installation (or frozen bundle) works end to end.

Offscreen, in a temporary folder, touching no user file: loads a bundled sample image, runs
the classical backend, builds a random-weight SAM2 tiny checkpoint and loads it back, creates
a project with one instance, exports COCO and YOLO (the COCO file is read back with
pycocotools) and opens and closes the main window. Prints one line per check
("ok   name (12 ms)" / "FAIL name: reason") and returns 0 only if every check passed.

``maskloop --startup-time [GUI OPTIONS]`` opens the app as usual, quits as soon as the first
main window is shown and prints how long that took (for measuring start-up).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STARTED = time.perf_counter()  # app.cli imports this module first thing on these flags
SAMPLE_NAME = "astronaut.jpg"
IMAGE_TIMEOUT_S = 20.0
FLAGS = ("--self-test", "--startup-time")


def say(line: str) -> None:
    """Print a line at once (the output may be a pipe read by a test or a timer)."""
    print(line, flush=True)


def is_frozen() -> bool:
    """True inside a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False))


def resources_dir() -> Path:
    """The ``resources`` folder: in the bundle (``sys._MEIPASS``) or in the source tree."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None and (Path(bundle) / "resources").is_dir():
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def use_offscreen() -> None:
    """Qt's offscreen platform unless QT_QPA_PLATFORM names one (the checks need no display)."""
    if not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


class CheckFailed(Exception):
    """A check's result was wrong (as opposed to crashing)."""


@dataclass
class Context:
    """What the checks share: the temporary folder and what earlier checks produced."""

    workdir: Path
    sample: Path | None = None
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    project: Any = None  # app.core.project.Project
    notes: dict[str, str] = field(default_factory=dict)

    def need_image(self) -> np.ndarray:
        if self.image is None:
            raise CheckFailed("skipped: no sample image")
        return self.image


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def check_sample(ctx: Context) -> str:
    from app.core.images import load_image

    folder = resources_dir() / "samples"
    path = folder / SAMPLE_NAME
    if not path.is_file():
        found = sorted(p for p in folder.glob("*.jpg")) if folder.is_dir() else []
        _require(bool(found), f"no sample image in {folder}")
        path = found[0]
    image = load_image(path)
    _require(image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8,
             f"{path.name}: expected an RGB uint8 image, got {image.shape} {image.dtype}")
    ctx.sample, ctx.image = path, image
    return f"{path.name} {image.shape[1]}x{image.shape[0]}"


def _centre_box(image: np.ndarray) -> Any:
    from app.core.types import Box

    h, w = image.shape[:2]
    return Box(w * 0.25, h * 0.15, w * 0.75, h * 0.95)


def check_classical(ctx: Context) -> str:
    from app.core.types import Prompt
    from app.predict.classical.predictor import ClassicalPredictor

    image = ctx.need_image()
    predictor = ClassicalPredictor()
    key = predictor.embed(image)
    box = _centre_box(image)
    result = predictor.predict(key, Prompt(box=box, multimask=False))
    mask = result.mask(result.best)
    area = int(mask.sum())
    _require(mask.shape == image.shape[:2], f"mask shape {mask.shape} != image")
    _require(area > 0, "empty mask")
    inside = mask[int(box.y0):int(box.y1), int(box.x0):int(box.x1)].sum()
    _require(inside >= 0.9 * area, "mask leaks outside the box")
    ctx.mask = mask
    return f"{area} px"


def check_sam2(ctx: Context) -> str:
    from app.core.types import Point, Prompt
    from app.predict.cache.store import EmbeddingCache
    from app.predict.sam2.model import save_random_checkpoint
    from app.predict.sam2.predictor import SAM2Predictor

    image = ctx.need_image()
    checkpoint = save_random_checkpoint(ctx.workdir / "sam2.1_hiera_tiny_random.pt", "tiny")
    predictor = SAM2Predictor(checkpoint, cache=EmbeddingCache(disk_dir=None))
    try:
        key = predictor.embed(image)
        h, w = image.shape[:2]
        result = predictor.predict(key, Prompt(points=(Point(w / 2 + 0.5, h / 2 + 0.5),)))
    finally:
        predictor.close()
    _require(result.masks.shape == (3, h, w), f"masks shape {result.masks.shape}")
    _require(bool(np.isfinite(result.scores).all()), "scores are not finite")
    _require(result.low_res_logits.shape == (3, 256, 256), "low-res logits shape")
    return f"{predictor.config}, {predictor.device.type}"


def check_onnxruntime(ctx: Context) -> str:
    """The CPU runtime SAM2 is converted to (app/predict/sam2/runtimes) loads and runs a graph
    in this build: a one-node graph made with onnx, run by ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "selftest", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.array([1.5, -2.0], dtype=np.float32)})[0]
    _require(np.array_equal(out, [3.0, -4.0]), f"onnxruntime gave {out}")
    return f"onnxruntime {ort.__version__}, onnx {onnx.__version__}"


def check_project(ctx: Context) -> str:
    from app.core.geometry import mask_to_geometry
    from app.core.project import Project
    from app.core.types import Instance, Label, Source

    _require(ctx.sample is not None and ctx.mask is not None,
             "skipped: needs the sample image and the classical mask")
    assert ctx.sample is not None and ctx.mask is not None
    images = ctx.workdir / "images"
    images.mkdir()
    shutil.copy2(ctx.sample, images / ctx.sample.name)
    project = Project.create(ctx.workdir / "selftest.maskloop", images)
    ctx.project = project
    report = project.add_images(images)
    _require(len(report.added) == 1,
             f"added {len(report.added)} images: {report.skipped_errors}")
    record = project.images()[0]
    geometry = mask_to_geometry(ctx.mask)
    if geometry is None:
        raise CheckFailed("the mask gave no polygon")
    project.add_label(Label("person", "#e6194b"))
    inst = project.add_instance(Instance(int(record.id or 0), "person", geometry, score=1.0,
                                         source=Source.CLASSICAL))
    _require(inst.id is not None and len(project.instances(int(record.id or 0))) == 1,
             "instance not stored")
    return f"1 image, 1 instance ({geometry.area:.0f} px)"


def check_export_coco(ctx: Context) -> str:
    from pycocotools.coco import COCO

    from app.core.formats import export_project

    _require(ctx.project is not None, "skipped: no project")
    report = export_project(ctx.project, "coco", ctx.workdir / "coco")
    path = ctx.workdir / "coco" / "annotations.json"
    _require(path.is_file(), f"{path} not written")
    with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
        coco = COCO(str(path))
    anns = coco.loadAnns(coco.getAnnIds())
    _require(len(anns) == 1, f"{len(anns)} annotations in {path.name}")
    area = int(coco.annToMask(anns[0]).sum())
    expected = int(ctx.mask.sum()) if ctx.mask is not None else 0
    _require(abs(area - expected) <= 0.05 * expected + 50,
             f"reloaded mask has {area} px, expected about {expected}")
    return f"{report.instances} instance, {area} px"


def check_export_yolo(ctx: Context) -> str:
    from app.core.formats import export_project

    _require(ctx.project is not None, "skipped: no project")
    out = ctx.workdir / "yolo"
    export_project(ctx.project, "yolo", out)
    lines = [line for p in out.rglob("*.txt") for line in p.read_text().splitlines()
             if line.strip()]
    _require(len(lines) == 1, f"{len(lines)} label lines under {out}")
    values = [float(v) for v in lines[0].split()[1:]]
    _require(len(values) >= 6 and all(0.0 <= v <= 1.0 for v in values),
             "polygon not normalised to [0, 1]")
    _require((out / "data.yaml").is_file() or any(out.glob("*.yaml")), "no dataset yaml")
    return f"{len(values) // 2} vertices"


def check_main_window(ctx: Context) -> str:
    use_offscreen()
    from PySide6.QtWidgets import QApplication

    from app.predict.classical.predictor import ClassicalPredictor
    from app.ui.main_window import MainWindow
    from app.ui.settings import GuiSettings
    from app.ui.workers import PredictorBridge

    _require(ctx.project is not None, "skipped: no project")

    class UnsavedSettings(GuiSettings):
        def save(self, path: Path | None = None) -> None:  # never touch the user's settings
            pass

    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    bridge = PredictorBridge(ClassicalPredictor())
    try:
        window = MainWindow(ctx.project, bridge, settings=UnsavedSettings())
        shown: list[object] = []
        window.image_shown.connect(shown.append)
        window.show()
        deadline = time.perf_counter() + IMAGE_TIMEOUT_S
        while not shown and time.perf_counter() < deadline:
            app.processEvents()
            time.sleep(0.01)
        _require(window.isVisible(), "the window did not show")
        _require(bool(shown), f"no image on the canvas after {IMAGE_TIMEOUT_S:.0f} s")
        window.close()
        app.processEvents()
    finally:
        bridge.close()
    return f"{app.platformName()}, sample on the canvas"



def check_desktop_libraries(ctx: Context) -> str:
    """The system libraries Qt's X11 platform needs. Missing ones fail the check only where a
    window would open on X11 now (DISPLAY set, no Wayland); elsewhere they are reported."""
    from app.ui import system_libs

    missing = system_libs.missing_libraries()
    if not missing:
        return "the X11 platform's libraries are present"
    text = system_libs.advice(missing).replace("\n", " ")
    x11_now = bool(os.environ.get("DISPLAY")) and not os.environ.get("WAYLAND_DISPLAY")
    _require(not x11_now, text)
    return f"needed only for a window on X11: {text}"

CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("sample image", check_sample),
    ("classical backend", check_classical),
    ("sam2 tiny", check_sam2),
    ("onnxruntime", check_onnxruntime),
    ("project", check_project),
    ("export coco", check_export_coco),
    ("export yolo", check_export_yolo),
    ("main window", check_main_window),
    ("desktop libraries", check_desktop_libraries),
]


def run_checks(out: Callable[[str], None] = say, verbose: bool = False) -> bool:
    """Run every check in a temporary folder, printing one line each; True if all passed."""
    use_offscreen()
    from app import __version__

    kind = "frozen" if is_frozen() else "source"
    out(f"maskloop {__version__} self-test ({kind}, Python {sys.version.split()[0]}, "
        f"{sys.platform})")
    passed = True
    with tempfile.TemporaryDirectory(prefix="maskloop-selftest-") as tmp:
        ctx = Context(Path(tmp))
        try:
            for name, check in CHECKS:
                start = time.perf_counter()
                try:
                    detail = check(ctx)
                except Exception as exc:  # report every failure, go on with the next check
                    passed = False
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    out(f"FAIL {name}: {type(exc).__name__}: {reason}"
                        if not isinstance(exc, CheckFailed) else f"FAIL {name}: {reason}")
                    if verbose:
                        out(traceback.format_exc())
                    continue
                ms = (time.perf_counter() - start) * 1000
                out(f"ok   {name} ({ms:.0f} ms){': ' + detail if detail else ''}")
        finally:
            if ctx.project is not None:
                ctx.project.close()
    out("all checks passed" if passed else "SOME CHECKS FAILED")
    return passed


def exit_after_first_window(out: Callable[[str], None] = say, wait_image_s: float = 60.0) -> None:
    """Create the QApplication now with a filter that prints the time since start-up when
    the first main window is shown and when its first image is on the canvas, then closes
    the window (so the app quits)."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])

    class FirstWindow(QObject):
        def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Show and isinstance(obj, QMainWindow):
                out(f"first window shown {time.perf_counter() - STARTED:.2f} s after start")
                app.removeEventFilter(self)
                shown = getattr(obj, "image_shown", None)
                if shown is None:
                    QTimer.singleShot(0, obj.close)
                    return False

                def image_on_canvas(_record: object) -> None:
                    out(f"first image shown {time.perf_counter() - STARTED:.2f} s after start")
                    QTimer.singleShot(0, obj.close)

                shown.connect(image_on_canvas)
                QTimer.singleShot(int(wait_image_s * 1000), obj.close)
            return False

    probe = FirstWindow(app)
    app.installEventFilter(probe)


def main(argv: Sequence[str] | None = None) -> int:
    """``--self-test [--verbose]`` or ``--startup-time [GUI OPTIONS]``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    flag = args.pop(0) if args and args[0] in FLAGS else "--self-test"
    if flag == "--startup-time":
        exit_after_first_window()
        from app.cli import gui_cmd

        return gui_cmd.main(args)
    verbose = "--verbose" in args or "-v" in args
    return 0 if run_checks(verbose=verbose) else 1
