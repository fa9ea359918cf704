"""Segment everything and find all (a text, or like example regions): the predictor's
proposals shown as dashed
suggestions. They are stored in the project at once as pending proposals (with their source,
prompt and score: issue 17), so they outlive the window; deciding is an undoable command.
Click one to accept it (right click rejects it), or point at it and press Y (accept) or N
(reject); Enter accepts all that are left; Esc hides them, pending, for the review queue
(Ctrl+R, app/ui/review.py). The proposal under the pointer is highlighted, and a banner over
the canvas says the keys for as long as proposals are shown (and the progress while they are
computed). Accepted suggestions get the CURRENT label, also those found by text (the text is
a query, the label stays the person's choice: pick or add the label first, e.g. "person", to
store them under it). "Find all like this in the next images" (``find_in_next``) runs the
same query on other images of the folder, one job each on the prediction worker, and stores
each image's results as they come (pending, for review mode); Esc cancels the rest. Nothing
here ever deletes or replaces an instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene
from shapely.geometry import Point as ShapelyPoint

from app.core.command_base import Command
from app.core.edit_commands import Batch
from app.core.errors import MaskLoopError
from app.core.proposal_commands import AcceptProposal, RejectProposal
from app.core.proposals import NewProposal, ProposalSource
from app.core.types import Geometry, ImageRecord, MaskProposal
from app.interaction.events import Button, PointerEvent
from app.predict.base import EverythingOptions, FindQuery
from app.predict.service.types import Phase, ProgressEvent
from app.ui.app_state import AppState
from app.ui.canvas.banner import Banner
from app.ui.canvas.convert import geometry_path
from app.ui.canvas.layers import cosmetic_pen
from app.ui.canvas.view import CanvasView
from app.ui.tasks import TaskRunner
from app.ui.workers import PredictorBridge


def proposals_to_geometries(proposals: list[MaskProposal], tolerance: float
                            ) -> list[tuple[Geometry, float]]:
    """Polygons of the proposals (runs on a pool thread)."""
    from app.core.geometry import mask_to_geometry

    out = []
    for p in proposals:
        geom = mask_to_geometry(p.mask, tolerance=tolerance)
        if geom is not None:
            out.append((geom, float(p.score)))
    return out


class Shown(NamedTuple):
    """A stored proposal on the canvas."""

    item: QGraphicsPathItem
    geometry: Geometry
    score: float
    proposal_id: int


@dataclass
class NextImages:
    """A "find all in the next images" run: its request ids by image, and how far it got."""

    query: FindQuery
    pending: dict[int, ImageRecord]  # request id -> the image it searches
    total: int
    done: int = 0
    found: int = 0
    errors: list[str] = field(default_factory=list)


class ProposalsController(QObject):
    """Owns the suggestion items; acts as the canvas tool while suggestions are shown.
    ``stored(image_id)`` once a result is in the project (the review's counts follow)."""

    stored = Signal(int)

    def __init__(self, state: AppState, canvas: CanvasView, tasks: TaskRunner,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.state, self.canvas, self.tasks = state, canvas, tasks
        self.scene: QGraphicsScene = canvas.scene()
        self.items: list[Shown] = []
        self._kind = ProposalSource.EVERYTHING  # what the request in progress is
        # review mode takes new proposals into its queue instead (True: taken, not shown)
        self.hand_over: Callable[[int], bool] | None = None
        self._request: int | None = None
        self._query: str | None = None  # a find-all request's query in words, None for everything
        self._previous_tool: str | None = None
        self._bridge: PredictorBridge | None = None
        self.next_run: NextImages | None = None  # "find all in the next images" under way
        self.banner = Banner(canvas)
        self._hover: int | None = None  # index of the proposal under the pointer
        self._pointer: tuple[float, float] | None = None
        canvas.cursor_moved.connect(self._moved)
        self.set_bridge(state.bridge)
        state.backend_changed.connect(self.set_bridge)

    def set_bridge(self, bridge: PredictorBridge) -> None:
        if self._bridge is not None:
            self.clear()
            self.cancel_next()
            self._bridge.proposals_ready.disconnect(self._on_ready)
            self._bridge.failed.disconnect(self._on_failed)
            self._bridge.progress.disconnect(self._on_progress)
        self._bridge = bridge
        bridge.proposals_ready.connect(self._on_ready)
        bridge.failed.connect(self._on_failed)
        bridge.progress.connect(self._on_progress)

    @property
    def active(self) -> bool:
        """Suggestions are shown (the canvas tool is this controller)."""
        return bool(self.items)

    @property
    def busy(self) -> bool:
        """Segment everything was asked for and has not answered yet."""
        return self._request is not None

    def request(self) -> None:
        if self.state.session.image is None:
            self.state.say("Open an image first")
            return
        self.clear()
        self._query = None
        self._kind = ProposalSource.EVERYTHING
        self._request = self.state.bridge.segment_everything(
            EverythingOptions(points_per_side=self.state.bridge.everything_grid))
        self.state.say("Segmenting everything… (Esc cancels)")
        self.banner.say("Segmenting everything… (Esc cancels)")

    def find_all(self, query: FindQuery) -> None:
        """What ``query`` asks for (texts for a text-capable backend, exemplars for one that
        finds objects like them), run on the prediction worker."""
        if not query.texts and not query.exemplars:
            return
        if self.state.session.image is None:
            self.state.say("Open an image first")
            return
        bridge = self.state.bridge
        if query.texts and not bridge.supports_text:
            self.state.say(f"{bridge.description} does not understand text")
            return
        if query.exemplars and not bridge.supports_exemplars:
            self.state.say(f"{bridge.description} cannot find objects like an example")
            return
        self.clear()
        words = query.describe()
        self._query = words
        self._kind = ProposalSource.TEXT if query.texts else ProposalSource.EXEMPLAR
        self._request = bridge.find_all(query)
        self.state.say(f"Finding all {words!r}… (Esc cancels)")
        self.banner.say(f"Finding all {words!r}… (Esc cancels)")

    def find_in_next(self, query: FindQuery, images: list[ImageRecord]) -> None:
        """Search ``images`` for what ``query`` asks (its exemplars carry the picture they
        lie in), one request each, queued on the prediction worker; every image's results
        are stored as pending proposals as they arrive, so review mode (Ctrl+R) walks them."""
        bridge = self.state.bridge
        if not query.exemplars or not bridge.supports_exemplars:
            self.state.say(f"{bridge.description} cannot find objects like an example")
            return
        if not images:
            self.state.say("No next images to search")
            return
        self.cancel_next()
        root = self.state.project.image_root
        pending = {bridge.find_all_in(r.content_hash, root / r.path, query): r for r in images}
        self.next_run = NextImages(query, pending, len(images))
        self._say_next()

    @property
    def searching_next(self) -> bool:
        """A "find all in the next images" run is under way."""
        return self.next_run is not None

    def cancel_next(self) -> None:
        """Stop the next-images run; what it stored stays."""
        run = self.next_run
        if run is None:
            return
        self.next_run = None
        (self._bridge or self.state.bridge).cancel_find_in()  # the bridge it was sent to
        self.banner.say("")
        self.state.say(f"Find all in the next images cancelled after {run.done} of "
                       f"{run.total} images ({run.found} proposals kept for review)")

    def _say_next(self) -> None:
        run = self.next_run
        if run is None:
            return
        text = (f"Finding all like the example in the next images: {run.done} of {run.total} "
                f"images, {run.found} proposals (Esc cancels)")
        self.banner.say(text)
        self.state.say(text)

    def _next_answered(self, request_id: int, geoms: list[tuple[Geometry, float]] | None,
                       error: str | None = None) -> None:
        """One image of the next-images run answered: store its results, tell progress."""
        run = self.next_run
        if run is None or request_id not in run.pending:
            return
        image = run.pending.pop(request_id)
        run.done += 1
        if error is not None:
            run.errors.append(f"{image.path}: {error}")
        elif geoms:
            run.found += len(self._store(image, geoms, ProposalSource.EXEMPLAR,
                                         run.query.describe()))
        if run.pending:
            self._say_next()
            return
        self.next_run = None
        self.banner.say("")
        failed = f"; failed: {'; '.join(run.errors)}" if run.errors else ""
        self.state.say(f"Found {run.found} proposals like the example in {run.total} next "
                       f"images: review them with Ctrl+R{failed}", 0)

    def cancel(self) -> None:
        if self._request is not None:
            self.state.bridge.cancel_everything()
            self._request = None
            self.banner.say("")

    def _on_progress(self, event: ProgressEvent) -> None:
        if self.next_run is not None and self._request is None and not self.items:
            self._say_next()
        if self._request is not None and event.total > 1 and event.phase is Phase.SEGMENTING:
            self.banner.say(f"Segmenting everything… {100 * event.done // event.total}% "
                            "(Esc cancels)")

    def _on_failed(self, kind: str, request_id: int, message: str) -> None:
        if kind == "everything" and self.next_run is not None \
                and request_id in self.next_run.pending:
            self._next_answered(request_id, None, message)
            return
        if kind == "everything" and request_id == self._request:
            self._request = None
            self.banner.say("")
            what = f"Find all {self._query!r}" if self._query else "Segment everything"
            self.state.say(f"{what} failed: {message}")

    def _on_ready(self, request_id: int, proposals: list[MaskProposal]) -> None:
        if self.next_run is not None and request_id in self.next_run.pending:
            self.tasks.start(proposals_to_geometries, proposals, self.state.tolerance,
                             on_result=lambda geoms: self._next_answered(request_id, geoms),
                             on_error=lambda exc: self._next_answered(request_id, None,
                                                                      str(exc)))
            return
        if request_id != self._request:
            return
        self._request = None
        image = self.state.session.image
        self.tasks.start(proposals_to_geometries, proposals, self.state.tolerance,
                           on_result=lambda geoms: self._show(image, geoms))

    def _store(self, image: ImageRecord, geoms: list[tuple[Geometry, float]],
               kind: ProposalSource | None = None, query: str | None = None
               ) -> list[tuple[Geometry, float, int]]:
        """Keep the results in the project as pending proposals (touches no instance);
        returns the pending ones with their ids. A result that repeats a pending proposal of
        the image is that proposal (not stored twice); one that repeats an instance or a
        rejected proposal is left out, so a search run again adds only what is new.
        ``kind`` and ``query`` default to the current request's."""
        if image.id is None or not geoms:
            return []
        store = self.state.project.proposals
        repeats = store.repeats(image.id, [geom for geom, _ in geoms])
        fresh = [g for g, ref in zip(geoms, repeats, strict=True) if ref is None]
        bridge = self.state.bridge
        kind = self._kind if kind is None else kind
        prompt = (self._query or "") if query is None else query
        ids = iter(store.add(image.id, [
            NewProposal(geom, kind, bridge.description, bridge.source, prompt, score)
            for geom, score in fresh]) if fresh else [])
        if fresh:
            self.stored.emit(image.id)
        out, seen = [], set()
        for (geom, score), ref in zip(geoms, repeats, strict=True):
            pid = next(ids) if ref is None else ref
            if pid and pid not in seen:
                seen.add(pid)
                out.append((geom, score, pid))
        return out

    def _show(self, image: ImageRecord | None, geoms: list[tuple[Geometry, float]]) -> None:
        if image is None or image is not self.state.session.image:
            return
        self.clear()
        stored = self._store(image, geoms)
        if stored and image.id is not None and self.hand_over is not None \
                and self.hand_over(image.id):
            return
        for geom, score, pid in stored:
            item = QGraphicsPathItem(geometry_path(geom))
            item.setPen(cosmetic_pen(QColor(255, 220, 0), 1.5, Qt.PenStyle.DashLine))
            fill = QColor(255, 220, 0)
            fill.setAlphaF(0.12)
            item.setBrush(fill)
            item.setZValue(2.5)
            self.scene.addItem(item)
            self.items.append(Shown(item, geom, score, pid))
        if self.items:
            self._previous_tool = self.state.tool
            self.canvas.tool = self
        found = f" of {self._query!r}" if self._query else ""
        if not self.items:
            self.banner.say("")
            self.state.say(f"No proposals{found}")
            return
        self._say_keys()
        if self._pointer is not None:
            self._highlight(*self._pointer)

    def _say_keys(self) -> None:
        found = f" of {self._query!r}" if self._query else ""
        text = (f"{len(self.items)} proposals{found} for label "
                f"{self.state.label!r}: click or Y accepts the one under the "
                "pointer, right click or N rejects it · Enter accepts all · Esc keeps them "
                "to review (Ctrl+R)")
        self.banner.say(text)
        self.state.say(text)

    def clear(self) -> None:
        self.cancel()
        for shown in self.items:
            self.scene.removeItem(shown.item)
        self.items.clear()
        self._hover = None
        if self._request is None:
            self.banner.say("")
        if self._previous_tool is not None and self.canvas.tool is self:
            self.state.set_tool(self._previous_tool)
        self._previous_tool = None

    def accept_all(self) -> None:
        """Enter: every suggestion shown, as one undoable step, with the current label."""
        label = self.state.label
        shown = list(self.items)
        self.clear()
        if shown:
            self._apply(Batch([AcceptProposal(s.proposal_id, label) for s in shown],
                              f"Accept {len(shown)} proposals"))

    def _apply(self, command: Command) -> None:
        """A decision on the image's undo stack; a proposal decided meanwhile (another
        window, autolabel) is said, not raised."""
        try:
            self.state.session.apply(command)
        except MaskLoopError as exc:
            self.state.say(str(exc))

    def _at(self, x: float, y: float) -> int | None:
        pt = ShapelyPoint(x, y)
        hits = [i for i, s in enumerate(self.items) if s.geometry.covers(pt)]
        return min(hits, key=lambda i: self.items[i].geometry.area) if hits else None

    def take(self, i: int, accept: bool) -> None:
        """Accept (or reject) proposal ``i``; the last one taken ends the suggestions."""
        shown = self.items.pop(i)
        self.scene.removeItem(shown.item)
        self._hover = None
        self._apply(AcceptProposal(shown.proposal_id, self.state.label) if accept
                    else RejectProposal(shown.proposal_id))
        if not self.items:
            self.clear()
        else:
            self._say_keys()
            if self._pointer is not None:
                self._highlight(*self._pointer)

    def reject_pointed(self) -> Geometry | None:
        """Reject the shown proposal under the pointer and give its shape (the "not like
        this" exemplar); None when the pointer is on none."""
        if not self.active or self._pointer is None:
            return None
        i = self._at(*self._pointer)
        if i is None:
            return None
        geometry = self.items[i].geometry
        self.take(i, accept=False)
        return geometry

    def take_under_pointer(self, accept: bool) -> None:
        """Y (accept) / N (discard): the proposal under the pointer."""
        if not self.active:
            return
        i = self._at(*self._pointer) if self._pointer is not None else None
        if i is None:
            self.state.say("Point at a proposal first", 3000)
            return
        self.take(i, accept)

    def _highlight(self, x: float, y: float) -> None:
        i = self._at(x, y)
        if i == self._hover:
            return
        for k, shown in enumerate(self.items):
            item, on = shown.item, k == i
            item.setPen(cosmetic_pen(QColor(255, 220, 0), 3.0 if on else 1.5,
                                     Qt.PenStyle.SolidLine if on else Qt.PenStyle.DashLine))
            fill = QColor(255, 220, 0)
            fill.setAlphaF(0.3 if on else 0.12)
            item.setBrush(fill)
        self._hover = i

    # -- CanvasTool ------------------------------------------------------------------------
    def press(self, ev: PointerEvent) -> None:
        i = self._at(ev.x, ev.y)
        if i is not None:
            self.take(i, ev.button == Button.LEFT)

    def _moved(self, x: float, y: float) -> None:
        self._pointer = (x, y)
        if self.items:
            self._highlight(x, y)

    def move(self, ev: PointerEvent) -> None:
        pass

    def release(self, ev: PointerEvent) -> None:
        pass

    def double_click(self, ev: PointerEvent) -> None:
        pass
