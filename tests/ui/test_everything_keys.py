"""Issue 13, item 7 and the first-run guide. Segment everything's instruction stays over the
canvas while proposals are shown, with keys to accept all (Enter), reject all (Esc) and to
accept (Y) or reject (N) the proposal under the pointer, which is highlighted. The guide:
three steps ticked off as they are done, then never shown again."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, click, key, open_window, view_pos, wait_mask

from app.ui.settings import GuiSettings


def show_proposals(w: object) -> None:
    """Three proposals as the predictor's would arrive (the request path: test_find_all)."""
    geoms = [(box(40, 30, 100, 80), 0.9), (box(120, 90, 150, 110), 0.8),
             (box(5, 5, 25, 25), 0.7)]
    w.proposals._show(w.session.image, geoms)  # type: ignore[attr-defined]


def test_proposal_keys_and_the_lasting_banner(qtbot: QtBot, image_folder: Path,
                                              classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    show_proposals(w)
    props = w.proposals
    assert props.active and w.canvas.tool is props
    banner = props.banner
    assert banner.isVisibleTo(w) and "3 proposals" in banner.text()
    assert "Y" in banner.text() and "Enter" in banner.text() and "Esc" in banner.text()
    qtbot.wait(8500)  # longer than a status message lasts: the banner stays
    assert banner.isVisibleTo(w)
    # the proposal under the pointer is highlighted; Y accepts it
    qtbot.mouseMove(w.canvas.viewport(), view_pos(w, 130, 100))
    qtbot.waitUntil(lambda: props._hover is not None, timeout=TIMEOUT)
    item = props.items[props._hover][0]
    assert item.pen().widthF() > 2 and item.pen().style() == Qt.PenStyle.SolidLine
    key(qtbot, w, Qt.Key.Key_Y)
    insts = w.session.instances()
    assert len(insts) == 1 and insts[0].geometry.bounds == (120, 90, 150, 110)
    assert "2 proposals" in banner.text()
    # N discards the one under the pointer; nothing there: a message, nothing changes
    qtbot.mouseMove(w.canvas.viewport(), view_pos(w, 15, 15))
    key(qtbot, w, Qt.Key.Key_N)
    assert len(props.items) == 1 and len(w.session.instances()) == 1
    qtbot.mouseMove(w.canvas.viewport(), view_pos(w, 155, 5))
    key(qtbot, w, Qt.Key.Key_Y)
    assert len(props.items) == 1 and "Point at a proposal" in w.statusBar().currentMessage()
    # Enter accepts all that are left; the banner goes with them
    key(qtbot, w, Qt.Key.Key_Return)
    assert len(w.session.instances()) == 2 and not props.active
    assert not banner.isVisibleTo(w) and w.canvas.tool is w.sam_tool
    # Esc rejects all
    show_proposals(w)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert not props.active and len(w.session.instances()) == 2
    assert not banner.isVisibleTo(w)
    w.close()


def test_segmenting_shows_in_the_banner_and_esc_cancels(qtbot: QtBot, image_folder: Path,
                                                       classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.proposals.request()
    assert "Segmenting everything" in w.proposals.banner.text()
    key(qtbot, w, Qt.Key.Key_Escape)
    assert not w.proposals.busy and not w.proposals.banner.isVisibleTo(w)
    w.close()


def test_first_run_guide(qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    guide = w.guide
    assert guide is not None and guide.isVisibleTo(w) and guide.step == 0
    assert "Click" in guide.lines[0].text() and "Enter" in guide.lines[2].text()
    click(qtbot, w, 70, 55)  # the card never takes a click meant for the canvas
    wait_mask(qtbot, w)
    assert guide.step == 1
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: guide.step == 3, timeout=TIMEOUT)
    assert w.settings.guide_done
    qtbot.waitUntil(lambda: not guide.isVisibleTo(w), timeout=TIMEOUT)
    w.close()  # saves the settings
    # seen once: not again
    from app.ui.app import Launcher

    assert GuiSettings.load().guide_done
    launcher = Launcher(classical_bridge, GuiSettings.load(), interactive=False)  # type: ignore[arg-type]
    launcher.open(image_folder)
    qtbot.waitUntil(lambda: launcher.window is not None, timeout=TIMEOUT)
    assert launcher.window.guide is None
    launcher.window.close()


def test_the_guide_is_dismissed_with_its_button(qtbot: QtBot, image_folder: Path,
                                                classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    assert w.guide is not None
    w.guide.close_button.click()
    assert not w.guide.isVisibleTo(w) and w.settings.guide_done
    w.close()
    assert GuiSettings(guide_done=True).guide_done
