"""Issue: "masks, polygons and edits of an object cost in proportion to the object, not to
the image". Accepting one instance (``session.add_instance`` and the window's refresh) must
do the same work with 10 or 200 instances already on the image: geometries decoded, shades
made, geometries compared, list rows made. Counted, not timed (the machine is noisy). The
instance list must still show exactly the session's instances after adds, deletes in the
middle, undo and redo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import shapely
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import open_window

from app.core.types import Source
from app.ui.canvas import layers, shades
from app.ui.main_window import MainWindow


def square(k: int) -> Any:
    x, y = 4 + 7 * (k % 25), 4 + 7 * (k // 25)
    return box(x, y, x + 5, y + 5)


class Counter:
    """Counts the calls of a module function (and still calls it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
        self.calls = 0
        original = getattr(target, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, counted)


def work_per_accept(w: MainWindow, monkeypatch: pytest.MonkeyPatch, start: int
                    ) -> dict[str, int]:
    """What one accept (and the window's update) does, counted."""
    QApplication.processEvents()
    decoded = Counter(monkeypatch, shapely, "from_wkb")
    shaded = Counter(monkeypatch, shades, "shade_of")  # shades looked up (or made)
    compared = Counter(monkeypatch, layers, "_same_geometry")
    made, created = w.instances_panel.made, w.instance_layer.created
    full = w.instance_sync.full
    w.session.add_instance(square(start), Source.MANUAL)
    QApplication.processEvents()
    out = {"decoded": decoded.calls, "shaded": shaded.calls, "compared": compared.calls,
           "rows made": w.instances_panel.made - made,
           "items created": w.instance_layer.created - created,
           "full refreshes": w.instance_sync.full - full}
    monkeypatch.undo()
    return out


def shown_rows(w: MainWindow) -> list[tuple[int, str, bool]]:
    lw = w.instances_panel.list
    return [(lw.item(r).data(Qt.ItemDataRole.UserRole), lw.item(r).text(),
             lw.item(r).checkState() == Qt.CheckState.Checked) for r in range(lw.count())]


def expected_rows(w: MainWindow) -> list[tuple[int, str, bool]]:
    return [(int(i.id or 0), f"#{i.id} {i.label}  ({i.source.value})",
             i.id not in w.instances_panel.hidden) for i in w.session.instances()]


def test_an_accept_does_the_same_work_with_10_or_200_instances(
        qtbot: QtBot, image_folder: Path, classical_bridge: object,
        monkeypatch: pytest.MonkeyPatch) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    work = {}
    done = 0
    for n in (10, 200):
        while done < n:
            w.session.add_instance(square(done), Source.MANUAL)
            done += 1
        work[n] = work_per_accept(w, monkeypatch, done)
        done += 1
    # before: every instance decoded, shaded and compared again (10 vs 200 of each)
    assert work[10] == work[200], work
    assert work[200] == {"decoded": 1, "shaded": 1, "compared": 0, "rows made": 1,
                         "items created": 1, "full refreshes": 0}
    assert shown_rows(w) == expected_rows(w)
    w.close()


def test_the_list_follows_deletes_undo_and_redo(qtbot: QtBot, image_folder: Path,
                                               classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_label("cat")
    for k in range(12):
        w.session.add_instance(square(k), Source.MANUAL, label="cat" if k % 3 else None)
    QApplication.processEvents()
    panel = w.instances_panel
    ids = [i.id for i in w.session.instances()]
    assert shown_rows(w) == expected_rows(w)
    panel.set_hidden([int(ids[4] or 0)], True)
    w.session.delete([int(ids[5] or 0)])  # in the middle: the later rows stay as they are
    made = panel.made
    w.session.delete([int(ids[11] or 0)])  # the last: one row leaves, no row is made
    assert panel.made == made
    assert shown_rows(w) == expected_rows(w)
    w.session.undo()
    w.session.undo()  # the middle one comes back in its place
    assert [r[0] for r in shown_rows(w)] == ids
    assert shown_rows(w) == expected_rows(w)
    w.session.relabel([int(ids[0] or 0)], "cat")
    assert shown_rows(w) == expected_rows(w)
    # the row shades follow the canvas after deletes, undo and a relabel
    for iid in ids:
        colour = w.instance_layer.colour(int(iid or 0))
        item = panel.list.item(ids.index(iid))
        icon = item.icon().pixmap(8, 8).toImage().pixelColor(4, 4)
        assert colour is not None and icon.name() == colour.name()
    # the selection: exactly the rows asked for
    w.app_state.set_selection([int(ids[2] or 0), int(ids[7] or 0)])
    assert sorted(i.data(Qt.ItemDataRole.UserRole) for i in panel.list.selectedItems()) == \
        sorted([ids[2], ids[7]])
    w.app_state.set_selection([int(ids[7] or 0)])
    assert [i.data(Qt.ItemDataRole.UserRole) for i in panel.list.selectedItems()] == [ids[7]]
    w.close()


def test_unticked_rows_and_recoloured_labels_after_accepts(qtbot: QtBot, image_folder: Path,
                                                          classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    for k in range(4):
        w.session.add_instance(square(k), Source.MANUAL)
    panel, layer = w.instances_panel, w.instance_layer
    last = int(w.session.instances()[-1].id or 0)
    panel.set_hidden([last], True)  # unticked: hidden on the canvas
    assert not layer.items[last].isVisible()
    w.session.add_instance(square(4), Source.MANUAL)  # a new one is shown
    assert shown_rows(w) == expected_rows(w) and shown_rows(w)[-1][2]
    w.session.delete([int(w.session.instances()[-1].id or 0)])
    w.session.delete([last])
    w.session.undo()  # the unticked last one comes back after the others: still unticked
    assert shown_rows(w) == expected_rows(w) and not shown_rows(w)[-1][2]
    assert not layer.items[last].isVisible()
    # a label recoloured: every instance takes its new shade, in the list as on the canvas
    w.session.update_label("object", colour="#00ff00")
    first = int(w.session.instances()[0].id or 0)
    colour = layer.colour(first)
    assert colour is not None and colour.name() == "#00ff00"
    icon = panel.list.item(0).icon().pixmap(8, 8).toImage().pixelColor(4, 4)
    assert icon.name() == "#00ff00"
    w.close()
