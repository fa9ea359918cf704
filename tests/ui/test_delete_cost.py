"""Issue 16: "masks, polygons and edits of an object cost in proportion to the object, not to
the image". Deleting an instance from the middle must do the same work with 10 or 200
instances on the image (counted, not timed, as in test_accept_cost.py) and leave every other
instance's shade alone, on the canvas and in the list: a shade follows the instance's id, not
its place among the instances, so undo, redo and a full refresh (another image and back) give
the same shades, and instances of one label made one after another still look apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import shapely
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from test_accept_cost import Counter, expected_rows, shown_rows, square
from test_instances_look import distance
from ui_helpers import TIMEOUT, open_window

from app.core.types import Source
from app.ui.canvas import layers, shades
from app.ui.main_window import MainWindow


def shown_shades(w: MainWindow) -> dict[int, str]:
    """Instance id -> its shade on the canvas, checked to be the list's too."""
    out: dict[int, str] = {}
    lw = w.instances_panel.list
    for row in range(lw.count()):
        iid = int(w.instances_panel.ids()[row])
        colour = w.instance_layer.colour(iid)
        assert colour is not None
        icon = lw.item(row).icon().pixmap(8, 8).toImage().pixelColor(4, 4)
        assert icon.name() == colour.name(), iid
        out[iid] = colour.name()
    assert sorted(out) == sorted(w.instance_layer.items)
    return out


def work_of(w: MainWindow, monkeypatch: pytest.MonkeyPatch, edit: Any) -> dict[str, int]:
    """What ``edit()`` (and the window's update) does, counted."""
    QApplication.processEvents()
    panel, layer = w.instances_panel, w.instance_layer
    decoded = Counter(monkeypatch, shapely, "from_wkb")
    shaded = Counter(monkeypatch, shades, "shade_of")
    compared = Counter(monkeypatch, layers, "_same_geometry")
    styled = Counter(monkeypatch, layers.InstanceLayer, "_style")
    repainted = Counter(monkeypatch, layers.InstancePicture, "changed")
    made, created, reshaped = panel.made, layer.created, layer.reshaped
    rows, full = panel.list.count(), w.instance_sync.full
    edit()
    QApplication.processEvents()
    out = {"decoded": decoded.calls, "shades looked up": shaded.calls,
           "compared": compared.calls, "items styled": styled.calls,
           "areas repainted": repainted.calls, "rows made": panel.made - made,
           "rows": panel.list.count() - rows, "items created": layer.created - created,
           "items reshaped": layer.reshaped - reshaped,
           "full refreshes": w.instance_sync.full - full}
    monkeypatch.undo()
    return out


def middle(w: MainWindow) -> int:
    ids = [int(i.id or 0) for i in w.session.instances()]
    return ids[len(ids) // 2]


def test_a_delete_in_the_middle_does_the_same_work_with_10_or_200_instances(
        qtbot: QtBot, image_folder: Path, classical_bridge: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_label("cat")
    work = {}
    done = 0
    for n in (10, 200):
        while len(w.session.instances()) < n:
            w.session.add_instance(square(done), Source.MANUAL,
                                   label="cat" if done % 3 == 1 else None)
            done += 1
        QApplication.processEvents()
        before = shown_shades(w)
        gone = middle(w)
        work[n] = work_of(w, monkeypatch, lambda gone=gone: w.session.delete([gone]))
        # every other instance keeps its shade, on the canvas and in the list
        assert shown_shades(w) == {k: v for k, v in before.items() if k != gone}
        assert shown_rows(w) == expected_rows(w)
    # before: a full refresh; every later instance of the label re-shaded, its row rewritten
    # and its item restyled and repainted (10 vs 200 of each)
    assert work[10] == work[200], work
    assert work[200] == {"decoded": 1, "shades looked up": 0, "compared": 0,
                         "items styled": 0, "areas repainted": 1, "rows made": 0,
                         "rows": -1, "items created": 0, "items reshaped": 0,
                         "full refreshes": 0}
    w.close()


def test_undo_and_redo_of_a_delete_and_a_full_refresh_keep_the_shades(
        qtbot: QtBot, image_folder: Path, classical_bridge: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_label("cat")
    for k in range(40):
        w.session.add_instance(square(k), Source.MANUAL, label="cat" if k % 4 == 3 else None)
    QApplication.processEvents()
    first = shown_shades(w)
    gone = middle(w)
    w.session.delete([gone])
    deleted = shown_shades(w)
    assert deleted == {k: v for k, v in first.items() if k != gone}
    # undo: it comes back in its place with its old shade; one row made, one item drawn
    work = work_of(w, monkeypatch, w.session.undo)
    assert shown_shades(w) == first and shown_rows(w) == expected_rows(w)
    assert work["full refreshes"] == 0 and work["rows"] == 1 and work["rows made"] == 1
    assert work["items created"] == 1 and work["items styled"] == 1
    # redo: it goes again, the others untouched
    work = work_of(w, monkeypatch, w.session.redo)
    assert shown_shades(w) == deleted and shown_rows(w) == expected_rows(w)
    assert work["full refreshes"] == 0 and work["rows"] == -1 and work["items styled"] == 0
    # an edit of one instance (relabelled: another object, the same id) rewrites its row
    # and restyles its item only
    edited = int(w.session.instances()[5].id or 0)
    work = work_of(w, monkeypatch, lambda: w.session.relabel([edited], "cat"))
    assert work["full refreshes"] == 0 and work["rows made"] == 1
    assert work["items styled"] == 1 and work["rows"] == 0
    assert shown_rows(w) == expected_rows(w)
    # reshaped: one path replaced
    work = work_of(w, monkeypatch, lambda: w.session.edit_geometry(edited, square(60)))
    assert work["full refreshes"] == 0 and work["items reshaped"] == 1
    assert work["items styled"] == 0 and work["items created"] == 0
    incremental = shown_shades(w)
    assert incremental[edited] != deleted[edited]  # a cat now
    # the same shades from a full refresh: another image and back
    full = w.instance_sync.full
    here, other = w.session.image, w.project.images()[1]
    assert here is not None and other.id != here.id
    w.show_image(other)
    qtbot.waitUntil(lambda: not w.instance_layer.items and w.instance_sync.full > full,
                    timeout=TIMEOUT)
    w.show_image(here)
    qtbot.waitUntil(lambda: len(w.instance_layer.items) == len(incremental), timeout=TIMEOUT)
    assert w.instance_sync.full >= full + 2
    assert shown_shades(w) == incremental and shown_rows(w) == expected_rows(w)
    w.close()


def test_consecutive_instances_of_one_label_have_different_shades(
        qtbot: QtBot, image_folder: Path, classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_label("cat")
    for k in range(30):  # a row of touching objects, every 3rd one a cat
        w.session.add_instance(box(10 * k, 10, 10 * k + 10, 30), Source.MANUAL,
                               label="cat" if k % 3 == 2 else None)
    QApplication.processEvents()
    layer = w.instance_layer
    for label in ("object", "cat"):
        ids = [int(i.id or 0) for i in w.session.instances() if i.label == label]
        for a, b in zip(ids, ids[1:], strict=False):
            ca, cb = layer.colour(a), layer.colour(b)
            assert ca is not None and cb is not None
            assert distance(ca, cb) > 0.1, (label, a, b)
    # a delete in between does not bring two neighbours' shades together
    objects = [int(i.id or 0) for i in w.session.instances() if i.label == "object"]
    w.session.delete([objects[3]])
    ca, cb = layer.colour(objects[2]), layer.colour(objects[4])
    assert ca is not None and cb is not None and distance(ca, cb) > 0.1
    w.close()
