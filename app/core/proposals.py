"""Proposals: what automatic tools found, stored beside the instances until a person decides.

Every automatic result (a text or exemplar search, segment everything, propagation, an
external detector's boxes turned into box prompts) is a *proposal*, never an instance: adding
proposals writes only the ``proposals`` table, so nothing automatic ever deletes or replaces
an annotation (X-AnyLabeling #1292 lost annotations that way). Exports leave proposals out
unless asked (``export_project(..., include_proposals=True)``).

The API, for the review queue and the batch jobs (``project.proposals`` is a ``ProposalStore``):

- ``NewProposal``: a proposal not stored yet (geometry, source, backend, made_by, prompt,
  score, label): what a producer returns. Plain values, so a worker process can make them.
- ``store.add(image_id, [NewProposal, ...]) -> [id, ...]``: store them as ``pending``.
- ``store.find(image_id=None, status=None, source=None, min_score=None) -> [Proposal]``:
  filtered, by image id then best score first (proposals without a score last), then id.
  ``status`` and ``source`` take one value or a collection of them. A ``min_score`` leaves
  out proposals without a score.
- ``store.get(id) -> Proposal`` (ProjectError when unknown).
- ``store.counts(image_id=None) -> ProposalCounts`` (pending / accepted / rejected) for one
  image or, with None, for the whole project; ``store.counts_by_image()`` for every image
  that has proposals; ``store.images_with(status=PENDING)``: image ids in id order, for
  walking the queue image by image.
- Decisions are undoable commands in ``app.core.proposal_commands`` (``AcceptProposal``,
  ``RejectProposal``, ``AcceptAll``), pushed on the image's ``UndoStack`` like every edit;
  never change a status by hand (``decide`` is theirs).
- Batch runs: ``store.add_for_run(image_id, run_key, proposals)`` stores an image's proposals
  and marks the image done for ``run_key`` in one transaction; ``store.done_images(run_key)``
  is what a resumed run skips.

Geometry is stored as the instances' is (2-D WKB of a valid Polygon / MultiPolygon).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from app.core.errors import ProjectError
from app.core.project_schema import check_geometry, geometry_from_wkb, geometry_to_wkb, now
from app.core.types import Geometry, Source

if TYPE_CHECKING:
    import sqlite3

    from app.core.project_db import ProjectFile


class ProposalSource(StrEnum):
    """Which automatic tool made a proposal."""

    TEXT = "text"  # find all from a text prompt ("person")
    EXEMPLAR = "exemplar"  # find all like an example region
    EVERYTHING = "everything"  # segment everything
    BOXES = "boxes"  # an external detector's boxes, each decoded as a box prompt
    PROPAGATION = "propagation"  # carried from a neighbouring frame


class ProposalStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class NewProposal:
    """A proposal to store: its geometry, which tool (``source``) of which model
    (``backend``, a model id) made it, the kind of backend (``made_by``: recorded as the
    instance's source when it is accepted), what was asked (``prompt``: "person",
    "+box(10,20,90,80)", "box 10,20,90,80 from dets.json"), its score and label if known."""

    geometry: Geometry
    source: ProposalSource
    backend: str
    made_by: Source
    prompt: str
    score: float | None = None
    label: str | None = None


@dataclass(frozen=True)
class Proposal:
    """A stored proposal. ``instance_id`` is the instance its acceptance made (None unless
    accepted); ``decided_at`` when it was accepted or rejected (ISO 8601 UTC)."""

    id: int
    image_id: int
    source: ProposalSource
    backend: str
    made_by: Source
    prompt: str
    score: float | None
    geometry: Geometry
    label: str | None
    status: ProposalStatus
    instance_id: int | None
    created_at: str
    decided_at: str | None


@dataclass(frozen=True)
class ProposalCounts:
    """How many proposals wait for a decision, were accepted, were rejected."""

    pending: int = 0
    accepted: int = 0
    rejected: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.accepted + self.rejected


REPEAT_IOU = 0.8  # a result this close to what an image already has repeats it


def _iou(a: Geometry, b: Geometry) -> float:
    union = a.union(b).area
    return a.intersection(b).area / union if union > 0 else 0.0


def _row(row: sqlite3.Row) -> Proposal:
    return Proposal(
        id=row["id"], image_id=row["image_id"], source=ProposalSource(row["source"]),
        backend=row["backend"], made_by=Source(row["made_by"]), prompt=row["prompt"],
        score=row["score"], geometry=geometry_from_wkb(row["geometry"]), label=row["label"],
        status=ProposalStatus(row["status"]), instance_id=row["instance_id"],
        created_at=row["created_at"], decided_at=row["decided_at"])


def _values(kind: type[StrEnum], value: Any) -> list[str]:
    """One value or a collection of them, checked against ``kind``, as stored text."""
    items = [value] if isinstance(value, str) else list(value)
    try:
        return [kind(v).value for v in items]
    except ValueError as exc:
        allowed = ", ".join(k.value for k in kind)  # type: ignore[attr-defined]
        raise ProjectError(f"{exc}; use one of: {allowed}") from exc


def _counts(rows: Iterable[sqlite3.Row]) -> ProposalCounts:
    found = {r["status"]: r["n"] for r in rows}
    return ProposalCounts(*(found.get(s.value, 0) for s in ProposalStatus))


class ProposalStore:
    """The proposals of one project file (see the module docstring for the API)."""

    def __init__(self, project: ProjectFile) -> None:
        self.project = project

    # --- adding ---------------------------------------------------------------------------

    def add(self, image_id: int, proposals: Iterable[NewProposal]) -> list[int]:
        """Store ``proposals`` of image ``image_id`` as pending, in one transaction; returns
        their ids. Touches no instance."""
        stamp = now()
        ids: list[int] = []
        with self.project.transaction():
            if not self.project.query("SELECT 1 FROM images WHERE id = ?", (image_id,)):
                raise ProjectError(f"{self.project.path}: no image with id {image_id}")
            for p in proposals:
                geometry = check_geometry(p.geometry, f"proposal geometry ({p.prompt})")
                cur = self.project.execute(
                    "INSERT INTO proposals (image_id, source, backend, made_by, prompt, score, "
                    "geometry, label, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (image_id, ProposalSource(p.source).value, p.backend,
                     Source(p.made_by).value, p.prompt,
                     None if p.score is None else float(p.score), geometry_to_wkb(geometry),
                     p.label or None, stamp))
                ids.append(int(cur.lastrowid or 0))
        return ids

    def repeats(self, image_id: int, geometries: Iterable[Geometry],
                iou: float = REPEAT_IOU) -> list[int | None]:
        """For each geometry, what of image ``image_id`` it repeats (IoU of the polygons at
        least ``iou``): None when nothing (it is new), the id of the pending proposal it
        repeats, or 0 when it repeats an instance or a rejected proposal. A search run again
        then adds only what is new, and what a person rejected does not come back."""
        known: list[tuple[Geometry, int]] = [
            (geometry_from_wkb(row["geometry"]), 0) for row in self.project.query(
                "SELECT geometry FROM instances WHERE image_id = ?", (image_id,))]
        for p in self.find(image_id=image_id, status=(ProposalStatus.PENDING,
                                                      ProposalStatus.REJECTED)):
            known.append((p.geometry, p.id if p.status is ProposalStatus.PENDING else 0))
        boxes = [g.bounds for g, _ in known]
        out: list[int | None] = []
        for geom in geometries:
            x0, y0, x1, y1 = geom.bounds
            out.append(next((
                ref for (g, ref), (bx0, by0, bx1, by1) in zip(known, boxes, strict=True)
                if bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1 and _iou(geom, g) >= iou),
                None))
        return out

    def add_for_run(self, image_id: int, run_key: str,
                    proposals: Iterable[NewProposal]) -> list[int]:
        """Store an image's proposals from a batch run and mark the image done for
        ``run_key``, together: a run stopped at any moment has each image all or nothing."""
        with self.project.transaction():
            ids = self.add(image_id, proposals)
            self.project.execute(
                "INSERT OR REPLACE INTO autolabel_done (image_id, run_key, proposals, "
                "finished_at) VALUES (?, ?, ?, ?)", (image_id, run_key, len(ids), now()))
        return ids

    def done_images(self, run_key: str) -> set[int]:
        """The images a batch run with ``run_key`` has finished."""
        rows = self.project.query("SELECT image_id FROM autolabel_done WHERE run_key = ?",
                                  (run_key,))
        return {r["image_id"] for r in rows}

    # --- reading --------------------------------------------------------------------------

    def get(self, proposal_id: int) -> Proposal:
        rows = self.project.query("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
        if not rows:
            raise ProjectError(f"{self.project.path}: no proposal with id {proposal_id}")
        return _row(rows[0])

    def find(
        self,
        image_id: int | None = None,
        status: ProposalStatus | str | Collection[ProposalStatus | str] | None = None,
        source: ProposalSource | str | Collection[ProposalSource | str] | None = None,
        min_score: float | None = None,
    ) -> list[Proposal]:
        """Proposals matching every filter given: by image id, best score first."""
        where: list[str] = []
        params: list[Any] = []
        if image_id is not None:
            where.append("image_id = ?")
            params.append(image_id)
        for column, kind, value in (("status", ProposalStatus, status),
                                    ("source", ProposalSource, source)):
            if value is not None:
                values = _values(kind, value)
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if min_score is not None:
            where.append("score >= ?")
            params.append(float(min_score))
        sql = "SELECT * FROM proposals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY image_id, score IS NULL, score DESC, id"
        return [_row(r) for r in self.project.query(sql, tuple(params))]

    def counts(self, image_id: int | None = None) -> ProposalCounts:
        """Pending / accepted / rejected of one image, or of the project when None."""
        if image_id is None:
            rows = self.project.query(
                "SELECT status, COUNT(*) AS n FROM proposals GROUP BY status")
        else:
            rows = self.project.query(
                "SELECT status, COUNT(*) AS n FROM proposals WHERE image_id = ? "
                "GROUP BY status", (image_id,))
        return _counts(rows)

    def counts_by_image(self) -> dict[int, ProposalCounts]:
        """The counts of every image that has proposals, by image id."""
        by_image: dict[int, list[sqlite3.Row]] = {}
        for row in self.project.query(
                "SELECT image_id, status, COUNT(*) AS n FROM proposals "
                "GROUP BY image_id, status ORDER BY image_id"):
            by_image.setdefault(row["image_id"], []).append(row)
        return {image_id: _counts(rows) for image_id, rows in by_image.items()}

    def images_with(self, status: ProposalStatus | str = ProposalStatus.PENDING) -> list[int]:
        """Ids of the images that have proposals with ``status`` (in id order)."""
        rows = self.project.query(
            "SELECT DISTINCT image_id FROM proposals WHERE status = ? ORDER BY image_id",
            (ProposalStatus(status).value,))
        return [r["image_id"] for r in rows]

    # --- decisions (for app.core.proposal_commands only) ----------------------------------

    def decide(self, proposal_id: int, status: ProposalStatus,
               instance_id: int | None = None) -> None:
        """Set a proposal's status (and the instance its acceptance made); pending clears
        both the instance and the time of the decision."""
        decided = None if status == ProposalStatus.PENDING else now()
        cur = self.project.execute(
            "UPDATE proposals SET status = ?, instance_id = ?, decided_at = ? WHERE id = ?",
            (ProposalStatus(status).value, instance_id, decided, proposal_id))
        if cur.rowcount == 0:
            raise ProjectError(f"{self.project.path}: no proposal with id {proposal_id}")
