"""Operations on the selected instances: relabel by hotkey, merge, subtract, re-simplify,
delete, and "find all like this" (the selection as exemplars: positive, or negative added to
the last query, in this image or the next ones). They read the selection and the label from
``AppState`` and edit through the session; they never see the window."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from app.core.types import Geometry
from app.predict.base import Exemplar, FindQuery
from app.ui.app_state import AppState
from app.ui.tasks import TaskRunner, run_sized

NEXT_IMAGES = 10  # how many of the next images "find all like this in the next images" searches
SELECT_FIRST = ("Select one or more instances (Edit tool, V; Ctrl+click for more) to find "
                "all like them")


class InstanceOps:
    """What the keys and the instance list ask of the selected instances. ``find`` runs a
    find-all query on the current image, ``find_next`` on the next images (the proposals
    controller's ``find_all`` and the window's next-images search)."""

    def __init__(self, state: AppState, tasks: TaskRunner,
                 redraw_candidate: Callable[[], None],
                 find: Callable[[FindQuery], None] | None = None,
                 find_next: Callable[[FindQuery], None] | None = None,
                 pointed: Callable[[], Geometry | None] | None = None) -> None:
        self.state, self.tasks = state, tasks
        self.redraw_candidate = redraw_candidate  # the SAM candidate in the new label's colour
        self.find, self.find_next = find, find_next
        self.pointed = pointed  # the shown proposal under the pointer (a "not like this")
        self.last_query: FindQuery | None = None  # the last "like this" query, for negatives
        self._last_image: int | None = None  # the image it was made on
        self._used: frozenset[int] = frozenset()  # the instances that are its exemplars

    def exemplars(self, positive: bool = True, skip: frozenset[int] = frozenset()
                  ) -> tuple[Exemplar, ...]:
        """The selected instances (but those in ``skip``) as exemplars: bounding box and
        mask rasterised at image size."""
        geoms = [self.state.project.instance(iid).geometry for iid in self.state.selection
                 if iid not in skip]
        return self._as_exemplars(geoms, positive)

    def _as_exemplars(self, geoms: list[Geometry], positive: bool) -> tuple[Exemplar, ...]:
        from app.core.geometry import geometry_to_mask

        img = self.state.image
        if img is None:
            return ()
        out = []
        for geom in geoms:
            if geom.is_empty:
                continue
            x0, y0, x1, y1 = geom.bounds
            mask = geometry_to_mask(geom, img.height, img.width)
            if mask.any():
                out.append(Exemplar((x0, y0, x1, y1), positive, mask=mask))
        return tuple(out)

    def _can_find(self) -> bool:
        if self.state.image is None:
            self.state.say("Open an image first")
            return False
        if not self.state.bridge.supports_exemplars:
            self.state.say(f"{self.state.description} cannot find objects like an example")
            return False
        return True

    def find_like(self) -> None:
        """Ctrl+F: proposals for everything like the selected instances in this image."""
        if not self._can_find() or self.find is None:
            return
        found = self.exemplars()
        if not found:
            self.state.say(SELECT_FIRST)
            return
        self._run(FindQuery(exemplars=found), set(self.state.selection))

    def find_unlike(self) -> None:
        """Ctrl+Shift+F: add the proposal under the pointer and the selected instances as
        negatives to the last query, rerun."""
        if not self._can_find() or self.find is None:
            return
        last = self.last_query
        if last is None or self._last_image != self._image_id():
            self.state.say("Find all like an instance first (Ctrl+F), then select what "
                           "should not be found and press Ctrl+Shift+F")
            return
        here = self.pointed() if self.pointed is not None else None
        negatives = self.exemplars(positive=False, skip=self._used) + self._as_exemplars(
            [here] if here is not None else [], positive=False)
        if not negatives:
            self.state.say("Point at a wrong proposal (or select instances that should not "
                           "be found), then press Ctrl+Shift+F")
            return
        self._run(FindQuery(exemplars=last.exemplars + negatives),
                  self._used | set(self.state.selection))

    def find_like_next(self) -> None:
        """Ctrl+Alt+F: the selected instances (or the last query's exemplars) searched in
        the next images; results go to review."""
        if not self._can_find() or self.find_next is None:
            return
        found = self._with_picture(self.exemplars())
        if not found and self.last_query is not None and self._last_image == self._image_id():
            found = self._with_picture(self.last_query.exemplars)
        if not found:
            self.state.say(SELECT_FIRST)
            return
        self.find_next(FindQuery(exemplars=found))

    def _with_picture(self, exemplars: tuple[Exemplar, ...]) -> tuple[Exemplar, ...]:
        """The exemplars with the current picture attached."""
        img, path = self.state.image, self.state.image_path
        if img is None or path is None:
            return ()
        picture: np.ndarray = self.state.bridge.images.get(img.content_hash, path)
        return tuple(Exemplar(e.box, e.positive, mask=e.mask, image=picture)
                     for e in exemplars)

    def _image_id(self) -> int | None:
        img = self.state.image
        return img.id if img is not None else None

    def _run(self, query: FindQuery, used: set[int] | frozenset[int]) -> None:
        assert self.find is not None
        self.last_query, self._last_image = query, self._image_id()
        self._used = frozenset(used)
        self.find(query)

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
