"""Operations on the selected instances: relabel by hotkey, merge, subtract, re-simplify,
delete. They read the selection and the label from ``AppState`` and edit through the session;
they never see the window."""

from __future__ import annotations

import functools
from collections.abc import Callable

from app.core.types import Geometry
from app.ui.app_state import AppState
from app.ui.tasks import TaskRunner, run_sized


class InstanceOps:
    """What the keys and the instance list ask of the selected instances."""

    def __init__(self, state: AppState, tasks: TaskRunner,
                 redraw_candidate: Callable[[], None]) -> None:
        self.state, self.tasks = state, tasks
        self.redraw_candidate = redraw_candidate  # the SAM candidate in the new label's colour

    def label_hotkey(self, key: str) -> None:
        """1-9: pick the label; relabel the selected instances."""
        name = self.state.label_for_hotkey(key)
        if name is None:
            return
        self.state.set_label(name)
        ids = self.state.selection
        if ids:
            self.state.session.relabel(ids, name)
        else:
            self.redraw_candidate()

    def delete(self, ids: list[int]) -> None:
        """The instance list's "Delete": these instances (undoable)."""
        if ids:
            self.state.set_selection([])
            self.state.session.delete(ids)

    def merge_selected(self) -> None:
        ids = self.state.selection
        if len(ids) < 2:
            self.state.say("Select two or more instances (Ctrl+click) to merge")
            return
        self.state.session.merge(ids)
        self.state.set_selection([])

    def subtract_selected(self) -> None:
        ids = self.state.selection
        if len(ids) < 2:
            self.state.say("Select an instance, then Ctrl+click the ones to cut out of it")
            return
        self.state.session.subtract(ids[0], ids[1:])

    def simplify_selected(self, tolerance: float) -> None:
        """Re-simplify the selected instances at ``tolerance`` pixels (from their pixels, so
        the slider can go both ways); also the default for new instances."""
        from app.core.geometry import geometry_to_mask, mask_to_geometry

        state, session = self.state, self.state.session
        state.set_tolerance(tolerance)
        img = session.image
        if img is None:
            return

        def resimplify(geom: Geometry) -> Geometry | None:
            mask = geometry_to_mask(geom, img.height, img.width)
            return mask_to_geometry(mask, tolerance=tolerance)

        def store(iid: int, new: Geometry | None) -> None:
            if new is not None and session.image is img:
                session.edit_geometry(iid, new)

        for iid in state.selection:
            geom = state.project.instance(iid).geometry
            run_sized(self.tasks, img.width * img.height, resimplify, geom,
                      on_result=functools.partial(store, iid))
