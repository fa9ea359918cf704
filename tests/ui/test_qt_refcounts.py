"""PySide6 must not leak or drop references to None, True and False.

PySide6-Essentials 6.12.0 on CPython 3.11 drops one reference to ``None`` on every call of a
Qt method that returns nothing (``QLabel.setText``, ``QPainterPath.closeSubpath``, ...) and one
reference to ``True`` on every ``Signal.emit``; when a count reaches zero Python aborts
(``none_dealloc`` / ``bool_dealloc``), minutes into a labelling session. 6.10.3 and 6.11.3 are
sound, and pyproject.toml pins ``PySide6-Essentials<6.12`` until this file passes on a newer
release.

Each case calls one method 10,000 times and asserts that ``sys.getrefcount`` of None, True and
False did not fall (a fall under 100 is noise). The calls run in chunks of 100 and any fall is
repaired after each chunk (``Py_IncRef``), so that a defective PySide6 fails these tests with a
message instead of aborting the test process: True has only a few hundred references.

The file needs nothing but PySide6, pytest and pytest-qt (no app import), so it can be run on
its own against another PySide6 release:
    python -m pytest -p no:cacheprovider --rootdir /tmp/x /tmp/x/test_qt_refcounts.py
On CPython >= 3.12 these three objects are immortal: the counts never move and the defect
cannot hurt, so the tests pass trivially there.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before Qt is imported

from PySide6 import __version__ as PYSIDE_VERSION  # noqa: E402
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPointF, QRectF, Signal  # noqa: E402
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QGraphicsPathItem,
    QGraphicsScene,
    QLabel,
    QProgressBar,
    QStatusBar,
    QWidget,
)

CALLS = 10_000
CHUNK = 100  # calls between checks: a defective build falls by 100 before it is repaired
NOISE = 100  # a fall smaller than this over all CALLS is not the defect (which falls CALLS)
SINGLETONS = (("None", None), ("True", True), ("False", False))


class _Emitter(QObject):
    changed = Signal(int)

    def event(self, e: QEvent) -> bool:  # a Python override returning a bool to C++
        return False


class _Painted(QWidget):
    painted = 0

    def paintEvent(self, e: object) -> None:  # noqa: N802  # a Python override returning None
        self.painted += 1


def _counts() -> list[int]:
    return [sys.getrefcount(obj) for _, obj in SINGLETONS]


def _repair(obj: object, missing: int) -> None:
    """Give ``obj`` back ``missing`` references for good (a list would give them back at
    interpreter exit and abort there instead)."""
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    incref.restype = None
    for _ in range(missing):
        incref(obj)


def measure(fn: Callable[[], object], calls: int = CALLS) -> tuple[list[int], list[int]]:
    """Call ``fn`` ``calls`` times. Returns (the counts before, the change of each count),
    in the order None, True, False; falls are repaired chunk by chunk."""
    start = _counts()
    change = [0, 0, 0]
    for _ in range(calls // CHUNK):
        before = _counts()
        for _ in range(CHUNK):
            fn()
        after = _counts()
        for i, (_, obj) in enumerate(SINGLETONS):
            delta = after[i] - before[i]
            change[i] += delta
            if delta < 0:
                _repair(obj, -delta)
    return start, change


@pytest.fixture
def qt(qapp: object) -> Iterator[SimpleNamespace]:
    """One of each object the cases call, the kinds MaskLoop's canvas, panels and status bar
    use on every click, image switch and repaint."""
    ns = SimpleNamespace()
    ns.label = QLabel("label")
    ns.widget = QWidget()
    ns.widget.resize(40, 30)
    ns.widget.show()
    ns.painted = _Painted()
    ns.painted.resize(20, 20)
    ns.painted.show()
    ns.progress = QProgressBar()
    ns.progress.setRange(0, 100)
    ns.status = QStatusBar()
    ns.pixmap = QPixmap(8, 8)
    ns.pixmap.fill(QColor("red"))
    ns.path = QPainterPath()
    ns.small_path = QPainterPath(QPointF(0, 0))
    ns.small_path.lineTo(5, 5)
    ns.scene = QGraphicsScene()
    ns.item = QGraphicsPathItem()
    ns.scene.addItem(ns.item)
    ns.pen = QPen(QColor("blue"))
    ns.image = QImage(16, 16, QImage.Format.Format_ARGB32_Premultiplied)
    ns.painter = QPainter(ns.image)
    ns.emitter = _Emitter()
    ns.emitter.changed.connect(lambda value: None)
    ns.event = QEvent(QEvent.Type.User)
    ns.rect = QRectF(0, 0, 10, 10)
    ns.point = QPointF(1, 1)
    ns.orphan = QObject()
    QCoreApplication.processEvents()  # exposed: repaint() now calls paintEvent at once
    yield ns
    ns.painter.end()
    ns.widget.close()
    ns.painted.close()


# (case id, what to call); methods returning nothing first, then ones returning None or bool
CASES: list[tuple[str, Callable[[SimpleNamespace], Callable[[], object]]]] = [
    ("QLabel.setText", lambda q: lambda: q.label.setText("x")),
    ("QLabel.setPixmap", lambda q: lambda: q.label.setPixmap(q.pixmap)),
    ("QPainterPath.moveTo", lambda q: lambda: q.path.moveTo(1.0, 2.0)),
    ("QPainterPath.lineTo", lambda q: lambda: q.path.lineTo(3.0, 4.0)),
    ("QPainterPath.closeSubpath", lambda q: q.path.closeSubpath),
    ("QWidget.update", lambda q: q.widget.update),
    ("QWidget.repaint-paintEvent", lambda q: q.painted.repaint),
    ("QWidget.setVisible", lambda q: lambda: q.label.setVisible(False)),
    ("QWidget.setEnabled", lambda q: lambda: q.label.setEnabled(True)),
    ("QObject.setObjectName", lambda q: lambda: q.orphan.setObjectName("name")),
    ("QGraphicsPathItem.setPath", lambda q: lambda: q.item.setPath(q.small_path)),
    ("QGraphicsItem.setZValue", lambda q: lambda: q.item.setZValue(2.0)),
    ("QGraphicsPathItem.setPen", lambda q: lambda: q.item.setPen(q.pen)),
    ("QStatusBar.showMessage", lambda q: lambda: q.status.showMessage("x", 100)),
    ("QProgressBar.setValue", lambda q: lambda: q.progress.setValue(42)),
    ("QPainter.drawLine", lambda q: lambda: q.painter.drawLine(0, 0, 5, 5)),
    ("QObject.parent-None", lambda q: q.orphan.parent),
    ("QWidget.isVisible", lambda q: q.widget.isVisible),
    ("QWidget.isHidden", lambda q: q.widget.isHidden),
    ("QWidget.hasFocus", lambda q: q.widget.hasFocus),
    ("QWidget.isEnabled", lambda q: q.widget.isEnabled),
    ("QPainterPath.isEmpty", lambda q: q.small_path.isEmpty),
    ("QRectF.contains", lambda q: lambda: q.rect.contains(q.point)),
    ("QObject.blockSignals", lambda q: lambda: q.emitter.blockSignals(False)),
    ("Signal.emit", lambda q: lambda: q.emitter.changed.emit(1)),
    ("sendEvent-event-override", lambda q: lambda: QCoreApplication.sendEvent(q.emitter, q.event)),
]


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_qt_calls_keep_none_true_false_refcounts(qt: SimpleNamespace,
                                                 make: Callable[[SimpleNamespace],
                                                                Callable[[], object]],
                                                 request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.id
    fn = make(qt)
    fn()  # first call: lazily created wrappers and caches are not the defect
    start, change = measure(fn)
    if name == "QWidget.repaint-paintEvent":
        assert qt.painted.painted > CALLS  # the Python override did run
    figures = ", ".join(f"{n} {s} {c:+d}"
                        for (n, _), s, c in zip(SINGLETONS, start, change, strict=True))
    print(f"\nPySide6 {PYSIDE_VERSION}, {name} x {CALLS}: refcount before, change: {figures}")
    fallen = [(n, -c) for (n, _), c in zip(SINGLETONS, change, strict=True) if c <= -NOISE]
    assert not fallen, (
        f"PySide6 {PYSIDE_VERSION}: {CALLS} calls of {name} lowered sys.getrefcount of "
        + ", ".join(f"{n} by {d}" for n, d in fallen)
        + ": a reference is dropped on every call and Python aborts when the count reaches 0")
