"""Operations on the selected instances: relabel by hotkey, merge, subtract, re-simplify;
and what the instance list asks for (selection, visibility, opacity, delete)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.types import Geometry
from app.ui.tasks import run_sized

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def label_hotkey(w: MainWindow, key: str) -> None:
    """1-9: pick the label; relabel the selected instances."""
    name = w.session.label_for_hotkey(key)
    if name is None:
        return
    w.session.set_current_label(name)
    ids = w.edit_tool.selected_ids()
    if ids:
        w.session.relabel(ids, name)
    elif w.sam_tool.state.result is not None:
        w.sam_tool.redraw()


def list_selection(w: MainWindow, ids: list[int]) -> None:
    w.edit_tool.select(ids[0] if ids else None)
    w.edit_tool.extra = ids[1:]
    w.instance_layer.set_selected(ids)


def set_visible(w: MainWindow, iid: int, visible: bool) -> None:
    w.instance_layer.set_visible(iid, visible)
    w.edit_tool.refresh()


def set_opacity(w: MainWindow, opacity: float) -> None:
    w.instance_layer.set_opacity(opacity)
    w.settings.opacity = opacity


def delete_instances(w: MainWindow, ids: list[int]) -> None:
    """The instance list's "Delete": these instances (undoable)."""
    if ids:
        w.edit_tool.select(None)
        w.session.delete(ids)


def merge_selected(w: MainWindow) -> None:
    ids = w.edit_tool.selected_ids()
    if len(ids) < 2:
        w.show_message("Select two or more instances (Ctrl+click) to merge")
        return
    w.session.merge(ids)
    w.edit_tool.select(None)


def subtract_selected(w: MainWindow) -> None:
    ids = w.edit_tool.selected_ids()
    if len(ids) < 2:
        w.show_message("Select an instance, then Ctrl+click the ones to cut out of it")
        return
    w.session.subtract(ids[0], ids[1:])


def simplify_selected(w: MainWindow, tolerance: float) -> None:
    """Re-simplify the selected instances at ``tolerance`` pixels (from their pixels, so
    the slider can go both ways); also the default for new instances."""
    from app.core.geometry import geometry_to_mask, mask_to_geometry

    w.app_state.set_tolerance(tolerance)
    img = w.session.image
    if img is None:
        return

    def resimplify(geom: Geometry) -> Geometry | None:
        mask = geometry_to_mask(geom, img.height, img.width)
        return mask_to_geometry(mask, tolerance=tolerance)

    def store(iid: int, new: Geometry | None) -> None:
        if new is not None and w.session.image is img:
            w.session.edit_geometry(iid, new)

    for iid in w.edit_tool.selected_ids():
        geom = w.project.instance(iid).geometry
        run_sized(w.tasks, img.width * img.height, resimplify, geom,
                  on_result=lambda new, iid=iid: store(iid, new))
