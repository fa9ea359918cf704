""""Find all: TEXT" against a local fake of Roboflow's API (SAM3 concept segmentation), and the
box hidden for backends without text. The fake's "model" finds every bright blob for a text
containing "bright" (tests/predict/hosted/fake_common.py), nothing for other texts."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from ui_helpers import TIMEOUT, click, key, open_window

from app.core.types import Source
from app.predict.base import Exemplar, FindQuery
from app.ui.workers import PredictorBridge

sys.path.insert(0, str(Path(__file__).parents[1] / "predict" / "hosted"))
from fakes import FakeRoboflow, Reply  # noqa: E402

KEY = "secret-key-123"


@pytest.fixture
def roboflow() -> Iterator[FakeRoboflow]:
    fake = FakeRoboflow(KEY)
    yield fake
    fake.close()


@pytest.fixture
def roboflow_bridge(qapp: object, roboflow: FakeRoboflow) -> Iterator[PredictorBridge]:
    from app.predict.hosted.roboflow import RoboflowPredictor

    bridge = PredictorBridge(RoboflowPredictor(KEY, roboflow.url, sam2_version_id="hiera_tiny",
                                               backoff=0.01))
    yield bridge
    bridge.close()


def type_query(qtbot: QtBot, w: object, text: str) -> None:
    edit = w.find_all_box.edit  # type: ignore[attr-defined]
    edit.setFocus()
    edit.clear()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def test_find_all_proposals_accept_one(qtbot: QtBot, image_folder: Path,
                                       roboflow_bridge: PredictorBridge,
                                       roboflow: FakeRoboflow) -> None:
    w = open_window(qtbot, image_folder, roboflow_bridge)
    assert w.find_all_action is not None and w.find_all_action.isVisible()
    assert w.find_all_box.isVisibleTo(w)
    gui = threading.get_ident()
    calls: list[int] = []
    original = roboflow_bridge.predictor.find_all  # type: ignore[attr-defined]

    def spy(image: object, query: FindQuery, **kw: object) -> object:
        calls.append(threading.get_ident())
        return original(image, query, **kw)

    roboflow_bridge.predictor.find_all = spy  # type: ignore[attr-defined]
    type_query(qtbot, w, "bright object")
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    assert calls and gui not in calls  # the request ran on the prediction worker
    body = roboflow.calls("/sam3/concept_segment")[0].json()
    assert body["prompts"] == [{"type": "text", "text": "bright object"}]
    # the yellow 60 x 50 rectangle and the blue 30 x 20 one
    assert len(w.proposals.items) == 2
    assert w.canvas.tool is w.proposals
    assert "'bright object'" in w.statusBar().currentMessage()
    # Enter went to the box, not to "accept": nothing stored yet
    assert w.session.instances() == []
    click(qtbot, w, 70, 55)  # accept the yellow one
    insts = w.session.instances()
    assert len(insts) == 1 and insts[0].label == w.session.current_label == "object"
    assert insts[0].source == Source.REMOTE
    assert 0.8 * 3000 < insts[0].geometry.area < 1.2 * 3000
    assert len(w.proposals.items) == 1
    key(qtbot, w, Qt.Key.Key_Escape)  # discard the rest
    assert not w.proposals.active and w.canvas.tool is w.sam_tool
    assert len(w.project.instances(insts[0].image_id)) == 1  # in the project file
    # a text matching nothing says so
    type_query(qtbot, w, "zebra")
    qtbot.waitUntil(lambda: "No proposals of 'zebra'" in w.statusBar().currentMessage(),
                    timeout=TIMEOUT)
    # the same search again: the accepted yellow one is not proposed twice, the blue one
    # (left pending by Esc) is the same proposal, not a copy; Enter accepts all shown
    type_query(qtbot, w, "bright object")
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    assert len(w.proposals.items) == 1
    key(qtbot, w, Qt.Key.Key_Return)
    assert len(w.session.instances()) == 2 and not w.proposals.active
    image_id = insts[0].image_id
    assert w.project.proposals.counts(image_id).pending == 0
    assert len(w.project.proposals.find(image_id=image_id)) == 2  # none stored twice
    # Esc in the box gives the keyboard back to the canvas (issue 13)
    w.find_all_box.edit.setFocus()
    qtbot.keyClick(w.find_all_box.edit, Qt.Key.Key_Escape)
    assert QApplication.focusWidget() is w.canvas
    w.close()


def test_find_all_errors_leave_the_annotations_alone(qtbot: QtBot, image_folder: Path,
                                                     roboflow_bridge: PredictorBridge,
                                                     roboflow: FakeRoboflow) -> None:
    w = open_window(qtbot, image_folder, roboflow_bridge)
    # encoded and prefetched (each an /sam2/embed_image call): the next call is the query's
    assert roboflow_bridge.service.wait_idle(TIMEOUT / 1000)
    roboflow.fail_next(Reply.json(401, {"message": "Unauthorized access"}))
    type_query(qtbot, w, "bright object")
    qtbot.waitUntil(lambda: "failed" in w.statusBar().currentMessage(), timeout=TIMEOUT)
    message = w.statusBar().currentMessage()
    assert "Find all 'bright object' failed" in message and KEY not in message
    assert not w.proposals.active and not w.proposals.busy
    assert w.session.instances() == []
    roboflow.fail_next(Reply(500, b"oops"), times=10)  # every retry fails too
    type_query(qtbot, w, "bright object")
    qtbot.waitUntil(lambda: "failed" in w.statusBar().currentMessage(), timeout=TIMEOUT)
    assert w.session.instances() == [] and KEY not in w.statusBar().currentMessage()
    w.close()


def test_find_all_box_is_hidden_without_text(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: PredictorBridge,
                                             roboflow_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    assert not classical_bridge.supports_text
    assert w.find_all_action is not None and not w.find_all_action.isVisible()
    assert not w.find_all_box.isVisibleTo(w)
    w.proposals.find_all(FindQuery.text("person"))  # even when asked, nothing is sent
    assert not w.proposals.busy and "does not understand text" in (
        w.statusBar().currentMessage())
    w.set_bridge(roboflow_bridge)  # switching to a text-capable backend shows the box
    assert w.find_all_action.isVisible()
    qtbot.waitUntil(lambda: w.find_all_box.isVisibleTo(w))  # the toolbar lays out later
    w.set_bridge(classical_bridge)
    assert not w.find_all_action.isVisible()
    w.close()


def copies_folder(root: Path) -> Path:
    """One picture: three copies of a striped orange disc (radius 20) on a blue-green
    texture."""
    import numpy as np
    from ui_helpers import write_png

    root.mkdir()
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.stack([60 + 20 * np.sin(xx / 11), 110 + 25 * np.cos(yy / 7), 150 + 0 * xx], -1)
    for cx, cy in ((60, 60), (200, 70), (130, 180)):
        dx, dy = xx - cx, yy - cy
        stripes = np.stack([200 + 40 * np.sin(dx / 3), 120 + 60 * np.sin(dy / 4),
                            40 + 0 * xx], -1)
        disc = dx ** 2 + dy ** 2 <= 20 ** 2
        image[disc] = stripes[disc]
    write_png(root / "copies.png", np.clip(image, 0, 255).astype(np.uint8))
    return root


@pytest.mark.slow  # template matching and GrabCut on the worker
def test_find_all_like_an_exemplar_with_the_classical_backend(
        qtbot: QtBot, tmp_path: Path, classical_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, copies_folder(tmp_path / "photos"), classical_bridge)
    assert classical_bridge.supports_exemplars and not classical_bridge.supports_text
    w.proposals.find_all(FindQuery(exemplars=(Exemplar((38, 38, 82, 82)),)))
    assert w.proposals.busy
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    assert len(w.proposals.items) == 2  # the two other discs, not the exemplar
    assert all(0.8 * 1257 < shown[1].area < 1.2 * 1257 for shown in w.proposals.items)
    assert "+box(38,38,82,82)" in w.statusBar().currentMessage()
    assert w.session.instances() == []  # proposals, nothing stored yet
    key(qtbot, w, Qt.Key.Key_Return)
    assert len(w.session.instances()) == 2
    w.close()
