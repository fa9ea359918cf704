"""One image's instances as last read from the project, kept in step with it by re-reading
only the rows that changed (``app.core.instance_journal``): after an accept, one row is read,
not every instance of the image, and the unchanged instances are the very same objects as
before, so whoever draws or lists them can tell what changed by identity."""

from __future__ import annotations

from app.core.instance_journal import journal
from app.core.project import Project
from app.core.project_schema import INSTANCE_SQL, instance_from_row
from app.core.types import Instance


class ImageInstances:
    """The instances of image ``image_id`` of ``project``, in the order they were made
    (by id, as ``Project.instances``). Instances are immutable: share them freely."""

    def __init__(self, project: Project, image_id: int) -> None:
        self.project = project
        self.image_id = image_id
        self._journal = journal(project)
        self._count = -1  # the project's change count when last brought up to date
        self._position = 0  # the journal's position when last brought up to date
        self._by_id: dict[int, Instance] = {}
        self.rows_read = 0  # instance rows read so far (for tests and the benchmark)

    def get(self) -> dict[int, Instance]:
        """Instance id -> instance, up to date (do not change the dict)."""
        count = self.project.change_count()
        if count == self._count:
            return self._by_id
        if self._count < 0:
            self._read_all()
        else:
            changes = self._journal.since(self._position, self.image_id)
            if changes.everything:
                self._read_all()
            else:
                self._position = changes.position
                if changes.ids:
                    self._read(changes.ids)
        self._count = count
        return self._by_id

    def _read_all(self) -> None:
        self._position = self._journal.position  # a change made while reading is read again
        found = self.project.instances(self.image_id)
        self.rows_read += len(found)
        self._by_id = {int(i.id or 0): i for i in found}

    def _read(self, ids: frozenset[int]) -> None:
        marks = ", ".join("?" * len(ids))
        rows = self.project.query(f"{INSTANCE_SQL} WHERE i.id IN ({marks})", tuple(ids))
        self.rows_read += len(rows)
        by_id = dict(self._by_id)  # a caller may still hold the previous dict
        for iid in ids:
            by_id.pop(iid, None)
        last = max(by_id, default=-1)
        ordered = True
        for row in rows:
            inst = instance_from_row(row)
            if inst.image_id == self.image_id:
                iid = int(inst.id or 0)
                ordered = ordered and iid > last
                last = max(last, iid)
                by_id[iid] = inst
        self._by_id = by_id if ordered else dict(sorted(by_id.items()))
