"""Issue 13, item 4: telling instances apart. Each instance has its own shade of its label's
colour (the same in the list), a thin outline over a light halo on any background, the
selection clearly marked; the instance list's right-click menu (relabel, delete, hide, zoom
to) and double click (zoom to)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot
from shapely.geometry import box
from ui_helpers import TIMEOUT, open_window

from app.core.types import Instance, Source
from app.ui.canvas.shades import STEPS, instance_shades, shade


def distance(a: QColor, b: QColor) -> float:
    return sum((x - y) ** 2 for x, y in zip(a.getRgbF()[:3], b.getRgbF()[:3],
                                            strict=True)) ** 0.5


def test_shades_differ_and_stay_in_the_label_hue() -> None:
    base = QColor("#ff3b30")
    cycle = len(STEPS)
    shades = [shade("#ff3b30", i) for i in range(cycle)]
    assert shades[0] == base
    for i, a in enumerate(shades):
        for b in shades[i + 1:]:
            assert distance(a, b) > 0.04  # visibly different
        # and the next instance (often the neighbour) clearly so, round the cycle too
        assert distance(a, shades[i - 1]) > 0.2
        h = a.hslHueF() * 360
        assert min(abs(h - base.hslHueF() * 360), 360 - abs(h - base.hslHueF() * 360)) < 30
    # by id: the first instance of a project has the label's colour, so has every 13th
    rows = [Instance(1, "flower", box(0, 0, 1, 1), None, Source.MANUAL, id=i)
            for i in (7, 1, 5, 1 + cycle)] + [
        Instance(1, "pot", box(0, 0, 1, 1), None, Source.MANUAL, id=4)]
    got = instance_shades(rows, lambda label: "#ff3b30" if label == "flower" else "#007aff")
    assert got[1] == base and got[1 + cycle] == base
    assert got[4] == shade("#007aff", 3) and got[5] == shade("#ff3b30", 4)
    assert got[7] == shade("#ff3b30", 6)
    # as many ids in a row, one label made every 1st, 2nd or 3rd time: all different
    for stride in (1, 2, 3):
        ids = [100 + stride * k for k in range(cycle)]
        got = instance_shades([Instance(1, "flower", box(0, 0, 1, 1), None, Source.MANUAL,
                                        id=i) for i in ids], lambda label: "#ff3b30")
        assert len({got[i].name() for i in ids}) == cycle


def test_adjacent_instances_of_one_label_look_apart(qtbot: QtBot, image_folder: Path,
                                                   classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_instance(box(40, 30, 70, 80), Source.MANUAL)
    w.session.add_instance(box(70, 30, 100, 80), Source.MANUAL)  # touching, same label
    qtbot.waitUntil(lambda: len(w.instance_layer.items) == 2, timeout=TIMEOUT)
    a, b = sorted(w.instance_layer.items)
    ia, ib = w.instance_layer.items[a], w.instance_layer.items[b]
    assert distance(ia.brush().color(), ib.brush().color()) > 0.05
    # an outline on every instance: a light halo under a line that differs from the fill
    assert len(ia.pens) == 2 and ia.pens[0].color().lightness() > 200
    assert distance(ia.pens[1].color(), w.instance_layer.colour(a)) > 0.2
    # the list shows the canvas's shade
    icon = w.instances_panel.list.item(1).icon().pixmap(8, 8).toImage().pixelColor(4, 4)
    assert distance(icon, w.instance_layer.colour(b)) < 0.02
    # the selection: a wider line, a white halo and a dashed ring; a stronger fill
    w.set_tool("edit")
    w.edit_tool.select(b)
    assert len(ib.pens) == 3 and ib.pens[0].widthF() > 4
    assert ib.pens[2].style() == Qt.PenStyle.DashLine
    assert ib.brush().color().alphaF() > ia.brush().color().alphaF()
    w.close()


def test_instance_list_menu_and_double_click(qtbot: QtBot, image_folder: Path,
                                             classical_bridge: object) -> None:
    w = open_window(qtbot, image_folder, classical_bridge)
    w.session.add_label("cat")
    for geom in (box(40, 30, 100, 80), box(120, 90, 150, 110), box(5, 5, 20, 20)):
        w.session.add_instance(geom, Source.MANUAL)
    qtbot.waitUntil(lambda: w.instances_panel.list.count() == 3, timeout=TIMEOUT)
    panel = w.instances_panel
    ids = panel.ids()

    def menu_on(row: int) -> dict[str, object]:
        rect = panel.list.visualItemRect(panel.list.item(row))
        panel.list.customContextMenuRequested.emit(rect.center())
        assert panel.menu is not None
        actions = {a.text(): a for a in panel.menu.actions()}
        panel.menu.close()
        return actions

    # relabel from the menu
    actions = menu_on(1)
    assert set(actions) >= {"Relabel", "Delete", "Hide", "Zoom to (double click)"}
    relabel = {a.text().split("\t")[0]: a for a in actions["Relabel"].menu().actions()}
    assert set(relabel) == {"object", "cat"}
    relabel["cat"].trigger()
    assert w.project.instance(ids[1]).label == "cat"
    # hide from the menu: unticked in the list, hidden on the canvas
    menu_on(1)["Hide"].trigger()
    assert ids[1] in panel.hidden and not w.instance_layer.items[ids[1]].isVisible()
    assert menu_on(1)["Show"] is not None
    # zoom to from the menu, and with a double click
    fit = w.canvas.scale_factor()
    menu_on(1)["Zoom to (double click)"].trigger()
    assert w.canvas.scale_factor() > 1.5 * fit
    centre = w.canvas.mapToScene(w.canvas.viewport().rect().center())
    assert abs(centre.x() - 135) < 3 and abs(centre.y() - 100) < 3
    w.canvas.fit()
    panel.list.itemDoubleClicked.emit(panel.list.item(2))
    centre = w.canvas.mapToScene(w.canvas.viewport().rect().center())
    assert abs(centre.x() - 12.5) < 3 and abs(centre.y() - 12.5) < 3
    assert w.canvas.user_zoomed
    # delete from the menu (undoable)
    menu_on(0)["Delete"].trigger()
    assert [i.id for i in w.session.instances()] == ids[1:]
    w.undo()
    assert [i.id for i in w.session.instances()] == ids
    w.close()
