"""The review queue: pending proposals walked image by image, one at a time (issue 17).

Qt-free, so the order, the moves and what each key does are tested without a display; the
window's side (drawing, the label popup, the edit tool) is ``app/ui/review.py``.

- The order: the images in the window's order (those with pending proposals that pass the
  filter), and within an image the store's order (best score first).
- A decision (accept, reject, accept all, an edited accept) is an undoable command of
  ``app.core.proposal_commands`` that ``command`` builds and the caller pushes on the image's
  undo stack; ``refresh`` then moves on: to the next proposal of the image, to the next image
  with pending ones when the image is done, and back to a proposal an undo made pending again.
- The decisions of a review are remembered by image (``decided``), so that Ctrl+Z after the
  queue moved on to the next image returns to the image of the last decision to undo it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.core.command_base import Command
from app.core.edit_commands import Batch
from app.core.proposal_commands import AcceptProposal, RejectProposal
from app.core.proposals import (
    Proposal,
    ProposalCounts,
    ProposalSource,
    ProposalStatus,
    ProposalStore,
)
from app.core.types import Geometry


class ReviewAction(StrEnum):
    """What a key does in review mode."""

    ACCEPT = "accept"  # the current proposal (the label popup first if enabled)
    REJECT = "reject"
    EDIT = "edit"  # its polygon in the edit tool; Enter then accepts the edited shape
    ACCEPT_ALL = "accept_all"  # every proposal left on the image (that the filter shows)
    NEXT = "next"  # proposal, on to the next image after the last
    PREVIOUS = "previous"
    NEXT_IMAGE = "next_image"  # with pending proposals
    PREVIOUS_IMAGE = "previous_image"
    UNDO = "undo"  # the last decision, on its image
    REDO = "redo"
    LEAVE = "leave"  # back to labelling (an edit in progress: back to the queue)


# The keys of review mode (Qt's portable key names) and what each does, with the words the
# menu and the help dialog show; app/ui/keys.py builds the Review menu from this table.
REVIEW_KEYS: list[tuple[ReviewAction, str, tuple[str, ...]]] = [
    (ReviewAction.ACCEPT, "Accept the proposal (or the edited shape)", ("Return", "Enter")),
    (ReviewAction.REJECT, "Reject the proposal", ("Delete",)),
    (ReviewAction.EDIT, "Edit the proposal's polygon, Enter accepts it", ("E",)),
    (ReviewAction.ACCEPT_ALL, "Accept all left on the image",
     ("Shift+Return", "Shift+Enter")),
    (ReviewAction.NEXT, "Next proposal", ("Right", "Space")),
    (ReviewAction.PREVIOUS, "Previous proposal", ("Left",)),
    (ReviewAction.NEXT_IMAGE, "Next image with proposals", ("PgDown",)),
    (ReviewAction.PREVIOUS_IMAGE, "Previous image with proposals", ("PgUp",)),
    (ReviewAction.UNDO, "Undo the last decision", ("Ctrl+Z",)),
    (ReviewAction.REDO, "Redo the decision", ("Ctrl+Shift+Z", "Ctrl+Y")),
    (ReviewAction.LEAVE, "Leave review (or the edit)", ("Escape",)),
]


def action_for_key(key: str) -> ReviewAction | None:
    """The action of ``key`` (a portable key name such as "Shift+Return") in review mode."""
    for action, _, keys in REVIEW_KEYS:
        if key in keys:
            return action
    return None


@dataclass(frozen=True)
class ReviewFilter:
    """Which pending proposals the queue shows: from these ``sources`` (empty: all) and
    scoring at least ``min_score`` (None: any, also those without a score)."""

    sources: frozenset[ProposalSource] = frozenset()
    min_score: float | None = None

    def describe(self) -> str:
        parts = [", ".join(sorted(s.value for s in self.sources))] if self.sources else []
        if self.min_score is not None:
            parts.append(f"score ≥ {self.min_score:.2f}")
        return " · ".join(parts) or "all proposals"


def counts_text(counts: ProposalCounts) -> str:
    """ "3 pending · 5 accepted · 1 rejected" (the panel, the status bar)."""
    return f"{counts.pending} pending · {counts.accepted} accepted · {counts.rejected} rejected"


class ReviewQueue:
    """Where the review is: the image, its pending proposals (filtered), the current one.

    ``image_order()`` gives the image ids in the window's order (its list, with its filter);
    without it, the project's order.
    """

    def __init__(self, store: ProposalStore,
                 image_order: Callable[[], Sequence[int]] | None = None) -> None:
        self.store = store
        self.image_order = image_order
        self.filter = ReviewFilter()
        self.image_id: int | None = None
        self.items: list[Proposal] = []  # pending proposals of the image that pass the filter
        self.index = 0
        self._decided: list[int] = []  # image ids of the decisions, last last (for undo)
        self._undone: list[int] = []  # image ids of undone decisions (for redo)

    # -- where we are ----------------------------------------------------------------------
    @property
    def current(self) -> Proposal | None:
        return self.items[self.index] if 0 <= self.index < len(self.items) else None

    @property
    def done(self) -> bool:
        """Nothing (that the filter shows) is left to review anywhere."""
        return self.current is None and not self.images()

    def pending(self, image_id: int) -> list[Proposal]:
        """The image's pending proposals that pass the filter, best first."""
        return self.store.find(image_id, status=ProposalStatus.PENDING,
                               source=self.filter.sources or None,
                               min_score=self.filter.min_score)

    def images(self) -> list[int]:
        """Ids of the images with pending proposals that pass the filter, in order."""
        with_pending = self.store.images_with(ProposalStatus.PENDING)
        if self.image_order is not None:
            wanted = set(with_pending)
            with_pending = [i for i in self.image_order() if i in wanted]
        if not self.filter.sources and self.filter.min_score is None:
            return with_pending
        # the store has no filtered images_with: ask per image (cheap: an indexed query)
        return [i for i in with_pending if self.pending(i)]

    def counts(self, image_id: int | None = None) -> ProposalCounts:
        """Pending / accepted / rejected of an image (None: of the project), unfiltered."""
        return self.store.counts(image_id)

    # -- moves -----------------------------------------------------------------------------
    def go_to_image(self, image_id: int, last: bool = False) -> bool:
        """Make ``image_id`` the image reviewed, at its first (or ``last``) proposal; False
        when it has none pending."""
        self.image_id = image_id
        self.items = self.pending(image_id)
        self.index = len(self.items) - 1 if last and self.items else 0
        return bool(self.items)

    def start(self, image_id: int | None = None) -> bool:
        """Begin at ``image_id`` if it has proposals to review, else at the next image (in
        order, wrapping around) that has; False when there is nothing to review."""
        if image_id is not None and self.go_to_image(image_id):
            return True
        return self._advance(image_id, 1, wrap=True)

    def select(self, proposal_id: int) -> bool:
        """Make a proposal of the current image the current one (a click on it)."""
        for i, p in enumerate(self.items):
            if p.id == proposal_id:
                self.index = i
                return True
        return False

    def step(self, delta: int) -> bool:
        """Next (1) or previous (-1) proposal; past the image's last (first) one, the next
        (previous) image with proposals. False at either end of the queue (nothing moves)."""
        j = self.index + delta
        if 0 <= j < len(self.items):
            self.index = j
            return True
        return self._advance(self.image_id, delta, wrap=False)

    def step_image(self, delta: int) -> bool:
        """The next (1) or previous (-1) image with proposals, at its first one."""
        return self._advance(self.image_id, delta, wrap=False, first=True)

    def _advance(self, after: int | None, delta: int, *, wrap: bool,
                 first: bool = False) -> bool:
        """To the image after (``delta`` 1) or before (-1) ``after`` in the window's order
        that has proposals to review (``after`` itself may have none left)."""
        images = self.images()
        rank = self._rank()
        key = rank(after) if after is not None else None
        if delta > 0:
            later = [i for i in images if key is None or rank(i) > key]
            target = later[0] if later else (images[0] if wrap and images else None)
        else:
            earlier = [i for i in images if key is not None and rank(i) < key]
            target = earlier[-1] if earlier else (images[-1] if wrap and images else None)
        if target is None:
            if not images:
                self.items, self.index = [], 0
            return False
        return self.go_to_image(target, last=delta < 0 and not first)

    def _rank(self) -> Callable[[int], int]:
        """An image's place in the order (the project's order is by id)."""
        if self.image_order is None:
            return lambda image_id: image_id
        places = {image_id: k for k, image_id in enumerate(self.image_order())}
        return lambda image_id: places.get(image_id, -1)

    def set_filter(self, new: ReviewFilter) -> bool:
        """Show only what passes ``new``; stays on the image when it still has some."""
        self.filter = new
        return self.start(self.image_id)

    # -- decisions -------------------------------------------------------------------------
    def command(self, action: ReviewAction, label: str | None = None,
                geometry: Geometry | None = None,
                label_of: Callable[[Proposal], str | None] | None = None) -> Command | None:
        """The undoable command of a decision on the current proposal (ACCEPT, REJECT, EDIT
        with ``geometry``) or on the image (ACCEPT_ALL: the proposals the filter shows, as
        one step). ``label`` names the instances; without it ``label_of(proposal)``."""
        current = self.current
        if current is None:
            return None

        def name(p: Proposal) -> str | None:
            return label or (label_of(p) if label_of is not None else None)

        if action is ReviewAction.REJECT:
            return RejectProposal(current.id)
        if action in (ReviewAction.ACCEPT, ReviewAction.EDIT):
            return AcceptProposal(current.id, name(current),
                                  geometry if action is ReviewAction.EDIT else None)
        if action is ReviewAction.ACCEPT_ALL:
            accepts: list[Command] = [AcceptProposal(p.id, name(p)) for p in self.items]
            return Batch(accepts, f"Accept {len(accepts)} proposals")
        return None

    def decided(self, image_id: int) -> None:
        """A decision on ``image_id`` was pushed: it is the next to undo."""
        self._decided.append(image_id)
        self._undone.clear()

    def undo_image(self) -> int | None:
        """The image of the last decision not undone yet (its undo is the caller's)."""
        if not self._decided:
            return None
        image_id = self._decided.pop()
        self._undone.append(image_id)
        return image_id

    def redo_image(self) -> int | None:
        if not self._undone:
            return None
        image_id = self._undone.pop()
        self._decided.append(image_id)
        return image_id

    def refresh(self) -> bool:
        """Read the image's proposals again after a decision, an undo or a redo, and move
        on: a proposal that came back (undo) becomes the current one, else the current one
        stays if still pending, else the one that followed it; an image with none left
        gives way to the next image with proposals. False when nothing is left."""
        if self.image_id is None:
            return self.start(None)
        before = [p.id for p in self.items]
        was = self.current.id if self.current is not None else None
        self.items = self.pending(self.image_id)
        ids = [p.id for p in self.items]
        back = [i for i, pid in enumerate(ids) if pid not in before]
        if back:
            self.index = back[0]
        elif was in ids:
            self.index = ids.index(was)
        else:  # the current one was decided: the next of those that were after it
            after = before[before.index(was) + 1:] if was in before else []
            self.index = next((ids.index(pid) for pid in after if pid in ids), len(ids))
            if self.index >= len(ids):
                self.index = max(0, len(ids) - 1)
        if self.items:
            return True
        return self._advance(self.image_id, 1, wrap=True)

