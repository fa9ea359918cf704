""""Find all like this" from the window (issue 17): the selected instances as exemplars, on
this image and on the next images of the folder, with the classical backend (template
matching + GrabCut) on striped discs; disabled for a backend that cannot find by example."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import Point
from ui_helpers import TIMEOUT, key, open_window, write_png

from app.core.proposals import ProposalSource
from app.core.types import Source
from app.predict.base import FindQuery
from app.ui.main_window import MainWindow
from app.ui.workers import PredictorBridge

sys.path.insert(0, str(Path(__file__).parents[1] / "predict" / "hosted"))
from fakes import FakeFal  # noqa: E402

DISC_AREA = np.pi * 20 ** 2


def discs_image(centres: list[tuple[int, int]],
                greener: tuple[tuple[int, int], ...] = ()) -> np.ndarray:
    """Striped orange discs (radius 20) at ``centres`` on a blue-green texture (the picture
    of tests/ui/test_find_all.py's exemplar test), and greener ones at ``greener`` (alike
    enough to be found, with a lower score)."""
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.stack([60 + 20 * np.sin(xx / 11), 110 + 25 * np.cos(yy / 7), 150 + 0 * xx], -1)
    for (cx, cy), (red, green) in [*((c, (200, 120)) for c in centres),
                                   *((c, (150, 160)) for c in greener)]:
        dx, dy = xx - cx, yy - cy
        stripes = np.stack([red + 40 * np.sin(dx / 3), green + 60 * np.sin(dy / 4),
                            40 + 0 * xx], -1)
        disc = dx ** 2 + dy ** 2 <= 20 ** 2
        image[disc] = stripes[disc]
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def discs_folder(tmp_path: Path) -> Path:
    """a.png: three discs and a greener one; b.png (next): two discs elsewhere; c.png:
    none."""
    root = tmp_path / "photos"
    root.mkdir()
    write_png(root / "a.png", discs_image([(60, 60), (200, 70), (130, 180)], ((260, 170),)))
    write_png(root / "b.png", discs_image([(250, 180), (90, 150)]))
    write_png(root / "c.png", discs_image([]))
    return root


def select_disc(w: MainWindow, x: int, y: int) -> int:
    """Store the disc at (x, y) as an instance and select it; its id."""
    w.session.add_instance(Point(x, y).buffer(20, quad_segs=32), Source.MANUAL)
    iid = w.session.instances()[-1].id
    assert iid is not None
    w.app_state.set_selection([iid])
    return iid


def centres(w: MainWindow, image_id: int) -> list[tuple[int, int]]:
    """The rounded centres of the image's pending proposals, sorted."""
    out = []
    for p in w.project.proposals.find(image_id, status="pending"):
        c = p.geometry.centroid
        out.append((round(c.x), round(c.y)))
    return sorted(out)


def near(found: list[tuple[int, int]], wanted: list[tuple[int, int]], tol: int = 4) -> bool:
    return len(found) == len(wanted) and all(
        abs(fx - wx) <= tol and abs(fy - wy) <= tol
        for (fx, fy), (wx, wy) in zip(found, sorted(wanted), strict=True))


@pytest.mark.slow  # template matching and GrabCut on the worker
def test_find_like_the_selection_then_not_like(qtbot: QtBot, discs_folder: Path,
                                               classical_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, discs_folder, classical_bridge)
    action = w.actions_by_name["find_like"]
    assert action.isEnabled() and action.shortcut().toString() == "Ctrl+F"
    # nothing selected: the status bar says what to select, nothing is asked
    key(qtbot, w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert "Select one or more instances" in w.statusBar().currentMessage()
    assert not w.proposals.busy
    select_disc(w, 60, 60)
    key(qtbot, w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert w.proposals.busy
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    image_id = w.session.image.id  # type: ignore[union-attr]
    # the other copies and the greener disc
    assert near(centres(w, image_id), [(200, 70), (130, 180), (260, 170)])
    stored = w.project.proposals.find(image_id, status="pending")
    assert {p.source for p in stored} == {ProposalSource.EXEMPLAR}
    assert all(0.8 * DISC_AREA < p.geometry.area < 1.2 * DISC_AREA for p in stored)
    query = w.ops.last_query
    assert query is not None and len(query.positives) == 1
    exemplar = query.positives[0]
    assert exemplar.mask is not None and exemplar.mask.shape == (240, 320)
    assert abs(int(exemplar.mask.sum()) - DISC_AREA) < 0.1 * DISC_AREA
    # "not like this": the proposal under the pointer (the greener disc) becomes a negative
    # exemplar (and is rejected), the query runs again with it
    w.proposals._moved(260, 170)
    key(qtbot, w, Qt.Key.Key_F,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    query = w.ops.last_query
    assert query is not None and len(query.negatives) == 1 and len(query.positives) == 1
    assert w.proposals.busy
    rejected = w.project.proposals.find(image_id, status="rejected")
    assert near([(round(p.geometry.centroid.x), round(p.geometry.centroid.y))
                 for p in rejected], [(260, 170)])
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    assert "-box(" in w.statusBar().currentMessage()
    found = sorted((round(s.geometry.centroid.x), round(s.geometry.centroid.y))
                   for s in w.proposals.items)
    assert near(found, [(200, 70), (130, 180)])  # the greener disc is no longer proposed
    assert w.session.instances()[0].geometry.area > 0.8 * DISC_AREA  # untouched
    w.close()


@pytest.mark.slow  # template matching and GrabCut on the worker, for two images
def test_find_like_in_the_next_images_stores_for_review(
        qtbot: QtBot, discs_folder: Path, classical_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, discs_folder, classical_bridge)
    current = w.session.image
    assert current is not None and current.path == "a.png"
    select_disc(w, 60, 60)
    key(qtbot, w, Qt.Key.Key_F,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert w.proposals.searching_next
    assert "in the next images: 0 of 2 images" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not w.proposals.searching_next, timeout=2 * TIMEOUT)
    assert "Found 2 proposals" in w.statusBar().currentMessage()
    by_path = {r.path: r for r in w.project.images()}
    b, c = by_path["b.png"], by_path["c.png"]
    assert b.id is not None and c.id is not None
    assert near(centres(w, b.id), [(250, 180), (90, 150)])
    assert centres(w, c.id) == []
    assert all(p.source is ProposalSource.EXEMPLAR and p.prompt.startswith("+box(")
               for p in w.project.proposals.find(b.id, status="pending"))
    assert centres(w, current.id) == []  # type: ignore[arg-type]  # not this image's
    assert w.session.image is not None and w.session.image.id == current.id  # stayed there
    # cancelled at once: nothing more is stored, what was found stays
    key(qtbot, w, Qt.Key.Key_F,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert w.proposals.searching_next
    key(qtbot, w, Qt.Key.Key_Escape)
    assert not w.proposals.searching_next and "cancelled" in w.statusBar().currentMessage()
    assert classical_bridge.service.wait_idle(TIMEOUT / 1000)
    qtbot.wait(50)  # a late answer would be delivered now
    assert len(w.project.proposals.find(b.id, status="pending")) == 2  # kept, none added
    w.close()


@pytest.fixture
def fal_bridge(qapp: object) -> Iterator[PredictorBridge]:
    from app.predict.hosted.fal import FalPredictor

    fake = FakeFal("secret-key-123")
    bridge = PredictorBridge(FalPredictor("secret-key-123", fake.url, poll_interval=0.001))
    yield bridge
    bridge.close()
    fake.close()


def test_find_like_disabled_without_exemplars(qtbot: QtBot, discs_folder: Path,
                                              fal_bridge: PredictorBridge,
                                              classical_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, discs_folder, fal_bridge)
    assert not fal_bridge.supports_exemplars
    for name in ("find_like", "find_unlike", "find_like_next"):
        action = w.actions_by_name[name]
        assert not action.isEnabled()
        assert "cannot find objects like an example" in action.toolTip()
    select_disc(w, 60, 60)
    w.ops.find_like()  # even when asked directly, nothing is sent
    assert not w.proposals.busy
    assert "cannot find objects like an example" in w.statusBar().currentMessage()
    w.set_bridge(classical_bridge)
    assert w.actions_by_name["find_like"].isEnabled()
    assert w.actions_by_name["find_like"].toolTip() == w.actions_by_name["find_like"].text()
    w.close()


@pytest.mark.slow  # template matching and GrabCut on the worker
def test_a_next_image_that_cannot_be_read_is_named(qtbot: QtBot, discs_folder: Path,
                                                   classical_bridge: PredictorBridge) -> None:
    w = open_window(qtbot, discs_folder, classical_bridge)
    by_path = {r.path: r for r in w.project.images()}
    b = by_path["b.png"]
    # an image whose file went away after the folder was read (a hash never decoded)
    gone = replace(by_path["c.png"], path="gone.png", content_hash="0" * 64)
    select_disc(w, 60, 60)
    query = FindQuery(exemplars=w.ops._with_picture(w.ops.exemplars()))
    w.proposals.find_in_next(query, [b, gone])
    qtbot.waitUntil(lambda: not w.proposals.searching_next, timeout=2 * TIMEOUT)
    message = w.statusBar().currentMessage()
    assert "Found 2 proposals" in message and "failed: gone.png:" in message
    assert b.id is not None and len(w.project.proposals.find(b.id, status="pending")) == 2
    w.close()


@pytest.mark.slow  # SAM2 tiny (random weights) encodes and decodes three images on the CPU
def test_find_like_in_the_next_images_with_sam2(qtbot: QtBot, discs_folder: Path,
                                               sam2_bridge: PredictorBridge) -> None:
    """The local SAM2 backend takes the same next-images run: every image answered, none
    failed, and what it found is stored as pending exemplar proposals of those images
    (random weights: how many is not the point)."""
    w = open_window(qtbot, discs_folder, sam2_bridge)
    assert w.actions_by_name["find_like_next"].isEnabled()
    select_disc(w, 60, 60)
    w.ops.find_like_next()
    assert w.proposals.searching_next
    qtbot.waitUntil(lambda: not w.proposals.searching_next, timeout=12 * TIMEOUT)
    message = w.statusBar().currentMessage()
    assert message.startswith("Found ") and "failed" not in message
    found = int(message.split()[1])
    stored = [p for r in w.project.images() if r.path != "a.png" and r.id is not None
              for p in w.project.proposals.find(r.id, status="pending")]
    assert len(stored) == found
    assert all(p.source is ProposalSource.EXEMPLAR for p in stored)
    w.close()


@pytest.mark.slow  # template matching and GrabCut, three times
def test_service_runs_next_image_finds_after_the_current_images_requests() -> None:
    """The service alone (no window): a find-all on the current image asked after two
    next-image finds cancels neither (each is answered with its own id); cancelling the
    next-image finds leaves the current image's requests alone."""
    import threading

    from app.core.types import MaskProposal
    from app.predict.base import Exemplar
    from app.predict.classical.predictor import ClassicalPredictor
    from app.predict.service.service import PredictionService
    from app.predict.service.types import ServiceCallbacks

    a = discs_image([(60, 60), (200, 70), (130, 180)])
    b = discs_image([(250, 180), (90, 150)])
    answers: list[tuple[int, int]] = []
    done = threading.Event()

    def answered(proposals: list[MaskProposal], generation: int) -> None:
        answers.append((generation, len(proposals)))
        if len(answers) == 3:
            done.set()

    service = PredictionService(ClassicalPredictor(), ServiceCallbacks(on_everything=answered))
    try:
        service.set_current_image("a", lambda: a)
        yy, xx = np.mgrid[0:240, 0:320]
        mask = (xx - 60) ** 2 + (yy - 60) ** 2 <= 20 ** 2
        query = FindQuery(exemplars=(Exemplar((40, 40, 80, 80), mask=mask, image=a),))
        service.find_all_in(1, "b", lambda: b, query)
        service.find_all_in(2, "b-again", lambda: b.copy(), query)
        service.find_all(3, FindQuery(exemplars=(Exemplar((40, 40, 80, 80), mask=mask),)))
        assert done.wait(60)
        assert sorted(answers) == [(1, 2), (2, 2), (3, 2)]
        answers.clear()
        service.find_all_in(4, "b", lambda: b, query)
        service.cancel_find_in()
        service.find_all(5, FindQuery(exemplars=(Exemplar((40, 40, 80, 80), mask=mask),)))
        assert service.wait_idle(60)
        assert answers == [(5, 2)]
    finally:
        service.shutdown(10)
