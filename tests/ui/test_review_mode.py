"""Issue 17, the review queue in the real window: stored proposals decided with the keys
(Enter, Del, E, Shift+Enter, arrows, PgUp / PgDn, Ctrl+Z, Esc), the label popup, filters,
counts, and proposals that outlive the window."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, drag, key, open_window

from app.core.project import Project
from app.core.proposals import NewProposal, ProposalSource, ProposalStatus
from app.core.types import Source
from app.interaction.review import REVIEW_KEYS
from app.ui.main_window import MainWindow

K = Qt.Key
SHIFT = Qt.KeyboardModifier.ShiftModifier
CTRL = Qt.KeyboardModifier.ControlModifier


def propose(w: MainWindow, image_id: int, n: int, source: ProposalSource =
            ProposalSource.EVERYTHING, first_score: float = 0.99) -> list[int]:
    """``n`` small boxes on a grid of the 160 x 120 test image, scores falling from
    ``first_score`` (what segment everything would have stored)."""
    shapes = [NewProposal(box(4 + 15 * (k % 10), 4 + 11 * (k // 10), 14 + 15 * (k % 10),
                              12 + 11 * (k // 10)), source, "classical", Source.CLASSICAL,
                          "cat" if source is ProposalSource.TEXT else "",
                          round(first_score - k / 100, 3),
                          "cat" if source is ProposalSource.TEXT else None)
              for k in range(n)]
    ids = w.project.proposals.add(image_id, shapes)
    w.review.update_counts()
    return ids


def status_of(w: MainWindow, pid: int) -> ProposalStatus:
    return w.project.proposals.get(pid).status


@pytest.mark.slow
@pytest.mark.parametrize("label_popup", [False, True], ids=["no-popup", "popup"])
def test_a_scripted_session_reviews_100_proposals_with_keys_only(
        qtbot: QtBot, image_folder: Path, classical_bridge: object, label_popup: bool) -> None:
    w = open_window(qtbot, image_folder, classical_bridge, label_popup=label_popup)
    ids = [i.id for i in w.project.images()]
    for image_id, n in zip(ids, (40, 35, 25), strict=True):
        propose(w, int(image_id or 0), n)
    assert "◇40" in w.images_panel.list.item(0).text()
    assert w.status.review.text() == "100 to review"
    presses = 0

    def press(k: Qt.Key, mod: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
        nonlocal presses
        presses += 1
        key(qtbot, w, k, mod)
        if label_popup and k == K.Key_Return:  # the popup: Enter keeps the current label
            qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
            popup = w.labelling.popup
            assert popup is not None
            presses += 1
            qtbot.keyClick(popup.edit, K.Key_Return)

    press(K.Key_R, CTRL)
    review = w.review
    assert review.active and w.canvas.tool is review
    assert review.panel.button.text() == "Stop reviewing (Esc)"
    # the labelling actions lend their keys and stay usable from the menus and toolbar
    eraser = w.actions_by_name["tool_eraser"]
    assert eraser.isEnabled() and eraser.shortcuts() == []
    decided = 0
    while not review.queue.done:
        current = review.queue.current
        assert current is not None and w.session.image is not None
        assert w.session.image.id == review.queue.image_id  # the window follows the queue
        assert review.items[current.id].pen().style() == Qt.PenStyle.SolidLine
        left = len(review.queue.items)
        if w.session.image.id == ids[2] and left <= 10:  # the rest of the last image at once
            press(K.Key_Return, SHIFT)
            decided += left
        elif decided % 4 == 3:
            press(K.Key_Delete)
            decided += 1
        else:
            press(K.Key_Return)
            decided += 1
    counts = w.project.proposals.counts()
    assert decided == 100 and counts.pending == 0
    assert counts.accepted + counts.rejected == 100 and counts.rejected == 22
    assert sum(len(w.project.instances(int(i or 0))) for i in ids) == counts.accepted
    # keys per decision: Ctrl+R once, then one key per proposal, Shift+Enter for ten
    print(f"\nREVIEW popup={label_popup} keys={presses} decisions={decided} "
          f"keys/decision={presses / decided:.3f}")
    # Ctrl+R once, then one key per proposal (and the popup's Enter per accept), and
    # Shift+Enter (and its popup's Enter) for the last ten
    assert presses == (1 + 68 * 2 + 22 + 2 if label_popup else 1 + 90 + 1)
    assert "Nothing left to review" in review.banner.text()
    assert "◇" not in w.images_panel.list.item(0).text() and w.status.review.text() == ""
    press(K.Key_Escape)  # leaves; the keys are the labelling keys again
    assert not review.active and w.canvas.tool is w.sam_tool
    assert [s.toString() for s in w.actions_by_name["accept"].shortcuts()] == \
        ["Return", "Enter"]
    assert not w.actions_by_name["review_accept"].isEnabled()
    w.close()


def test_popup_moves_and_edit(qtbot: QtBot, image_folder: Path,
                              classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge, label_popup=True)
    first = int(w.project.images()[0].id or 0)
    a, b, c = propose(w, first, 3)
    w.session.add_label("dog")
    key(qtbot, w, K.Key_R, CTRL)
    review = w.review
    assert review.queue.current is not None and review.queue.current.id == a
    # the view is zoomed on the current proposal
    assert w.canvas.scale_factor() > 1.5 and w.canvas.user_zoomed
    key(qtbot, w, K.Key_Right)
    assert review.queue.current is not None and review.queue.current.id == b
    key(qtbot, w, K.Key_Left)
    assert review.queue.current is not None and review.queue.current.id == a
    # Enter: the label popup; Esc in it decides nothing
    key(qtbot, w, K.Key_Return)
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
    popup = w.labelling.popup
    assert popup is not None
    qtbot.keyClick(popup.edit, K.Key_Escape)
    qtbot.waitUntil(lambda: w.labelling.popup is None, timeout=TIMEOUT)
    assert status_of(w, a) is ProposalStatus.PENDING
    key(qtbot, w, K.Key_Return)
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
    popup = w.labelling.popup
    assert popup is not None
    qtbot.keyClicks(popup.edit, "dog")
    qtbot.keyClick(popup.edit, K.Key_Return)
    accepted = w.project.proposals.get(a)
    assert accepted.status is ProposalStatus.ACCEPTED and accepted.instance_id is not None
    assert w.project.instance(accepted.instance_id).label == "dog"
    assert review.queue.current is not None and review.queue.current.id == b
    # E: the polygon in the editor; a dragged corner, then Enter (and the popup) accepts it
    key(qtbot, w, K.Key_E)
    assert review.edit is not None and w.canvas.tool is review
    x0, y0, x1, y1 = w.project.proposals.get(b).geometry.bounds
    drag(qtbot, w, (x1, y1), (x1 + 6, y1 + 5))
    assert review.edit.geometry.bounds[2:] == (x1 + 6, y1 + 5)
    key(qtbot, w, K.Key_Return)
    qtbot.waitUntil(lambda: w.labelling.popup is not None, timeout=TIMEOUT)
    popup = w.labelling.popup
    assert popup is not None
    qtbot.keyClick(popup.edit, K.Key_Return)  # "dog" again: the last used comes first
    edited = w.project.proposals.get(b)
    assert edited.status is ProposalStatus.ACCEPTED and edited.instance_id is not None
    inst = w.project.instance(edited.instance_id)
    assert inst.label == "dog" and inst.geometry.bounds == (x0, y0, x1 + 6, y1 + 5)
    assert review.edit is None
    # E then Esc: back to the queue, nothing decided; Del rejects
    key(qtbot, w, K.Key_E)
    key(qtbot, w, K.Key_Escape)
    assert review.active and review.edit is None and status_of(w, c) is ProposalStatus.PENDING
    key(qtbot, w, K.Key_Delete)
    assert status_of(w, c) is ProposalStatus.REJECTED
    assert "Nothing left to review" in review.banner.text()
    assert review.panel.image_counts.text() == "0 pending · 2 accepted · 1 rejected"
    w.close()


def test_undo_of_accept_and_of_accept_all(qtbot: QtBot, image_folder: Path,
                                          classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    first, second = (int(r.id or 0) for r in w.project.images()[:2])
    (a,) = propose(w, first, 1)
    propose(w, second, 3)
    w.show_image(w.project.image(first))
    key(qtbot, w, K.Key_R, CTRL)
    review = w.review
    key(qtbot, w, K.Key_Return)  # the only one of the first image: on to the second
    assert status_of(w, a) is ProposalStatus.ACCEPTED
    assert w.session.image is not None and w.session.image.id == second
    # Ctrl+Z on the second image undoes the accept made on the first: back there
    key(qtbot, w, K.Key_Z, CTRL)
    assert w.session.image is not None and w.session.image.id == first
    assert status_of(w, a) is ProposalStatus.PENDING and w.project.instances(first) == []
    assert review.queue.current is not None and review.queue.current.id == a
    key(qtbot, w, K.Key_Z, CTRL | SHIFT)  # redo
    assert status_of(w, a) is ProposalStatus.ACCEPTED and len(w.project.instances(first)) == 1
    assert w.session.image.id == second  # type: ignore[union-attr]
    # Shift+Enter accepts the three; one Ctrl+Z brings all three back
    key(qtbot, w, K.Key_Return, SHIFT)
    assert w.project.proposals.counts(second).accepted == 3
    assert len(w.project.instances(second)) == 3 and review.queue.done
    key(qtbot, w, K.Key_Z, CTRL)
    assert w.project.proposals.counts(second).pending == 3
    assert w.project.instances(second) == [] and len(review.queue.items) == 3
    # nothing automatic replaced the instance accepted on the first image
    assert len(w.project.instances(first)) == 1
    w.close()


def test_filters_by_source_and_score(qtbot: QtBot, image_folder: Path,
                                     classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    first = int(w.project.images()[0].id or 0)
    propose(w, first, 4, ProposalSource.EVERYTHING, first_score=0.9)  # .9 .89 .88 .87
    texts = propose(w, first, 3, ProposalSource.TEXT, first_score=0.6)  # .6 .59 .58
    panel = w.review.panel
    panel.source.setCurrentIndex(panel.source.findData(ProposalSource.TEXT))
    panel.min_score.setValue(0.59)
    key(qtbot, w, K.Key_R, CTRL)
    review = w.review
    assert [p.id for p in review.queue.items] == texts[:2]
    assert review.queue.current is not None and review.queue.current.prompt == "cat"
    assert "text 'cat'" in review.banner.text()
    key(qtbot, w, K.Key_Return, SHIFT)  # all that the filter shows, not the hidden ones
    counts = w.project.proposals.counts(first)
    assert (counts.pending, counts.accepted) == (5, 2)
    assert {i.label for i in w.project.instances(first)} == {"cat"}  # the proposals' label
    panel.source.setCurrentIndex(0)  # all sources, any score
    panel.min_score.setValue(0.0)
    assert len(review.queue.items) == 5 and review.queue.current is not None
    assert review.queue.current.score == 0.9
    w.close()


def test_segment_everything_is_stored_and_outlives_the_window(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.proposals.request()
    qtbot.waitUntil(lambda: w.proposals.active, timeout=TIMEOUT)
    shown = len(w.proposals.items)
    image_id = int(w.session.image.id or 0)  # type: ignore[union-attr]
    stored = w.project.proposals.find(image_id)
    assert shown == len(stored) > 0
    assert {p.source for p in stored} == {ProposalSource.EVERYTHING}
    assert all(p.status is ProposalStatus.PENDING and p.score is not None for p in stored)
    key(qtbot, w, K.Key_Escape)  # hides them; they stay to review
    assert not w.proposals.active and w.status.review.text() == f"{shown} to review"
    path = w.project.path
    w.close()
    # reopened: the same proposals, still pending, and the review takes them
    again = Project.open(path)
    assert [p.id for p in again.proposals.find(status=ProposalStatus.PENDING)] == \
        [p.id for p in stored]
    again.close()
    w2 = open_window(qtbot, image_folder, classical_bridge)
    key(qtbot, w2, K.Key_R, CTRL)
    assert w2.review.active and w2.review.queue.current is not None
    key(qtbot, w2, K.Key_Return)
    assert w2.project.proposals.counts().accepted == 1
    w2.close()


def test_the_help_lists_the_review_keys(qtbot: QtBot, image_folder: Path,
                                        classical_bridge: object) -> None:
    from app.ui.help_dialog import key_rows

    w = open_window(qtbot, image_folder, classical_bridge)
    groups = dict(key_rows(w.menuBar()))
    rows = groups["Review"]
    texts = [what for _, what in rows]
    for _, words, _ in REVIEW_KEYS:
        assert f"Review: {words}" in texts
    assert ("Ctrl+R", "Review proposals (on / off)") in rows
    w.close()


def test_other_images_and_tools_while_reviewing(qtbot: QtBot, image_folder: Path,
                                                classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    first, second, third = (int(r.id or 0) for r in w.project.images())
    propose(w, first, 2)
    (c,) = propose(w, third, 1)
    w.show_image(w.project.image(first))
    key(qtbot, w, K.Key_R, CTRL)
    review = w.review
    key(qtbot, w, K.Key_PageDown)  # the next image with proposals: the second has none
    assert w.session.image is not None and w.session.image.id == third
    assert review.queue.current is not None and review.queue.current.id == c
    key(qtbot, w, K.Key_A)  # the previous image, by hand: none to review there
    assert w.session.image.id == second and review.queue.current is None
    assert "No proposals here" in review.banner.text()
    key(qtbot, w, K.Key_Return)  # nothing to decide: nothing happens
    assert w.project.proposals.counts().pending == 3
    # segment everything while reviewing: the new proposals join the queue here
    w.proposals.request()
    qtbot.waitUntil(lambda: review.queue.current is not None, timeout=TIMEOUT)
    assert review.queue.image_id == second and not w.proposals.active
    assert review.queue.current.source is ProposalSource.EVERYTHING
    assert set(review.items) == {p.id for p in review.queue.items}
    # another tool ends the review; its keys are the labelling keys again
    key(qtbot, w, K.Key_V)
    assert not review.active and w.canvas.tool is w.edit_tool and not review.items
    assert not w.actions_by_name["review_reject"].isEnabled()
    assert [s.toString() for s in w.actions_by_name["delete"].shortcuts()] == ["Del"]
    w.close()
