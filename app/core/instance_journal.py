"""Which instances changed, so that a reader of an image's instances (the window's session)
re-reads the changed rows only, not every instance of the image after each edit (an accept
cost grew with the number of instances on the image).

Temporary triggers on the project's connection (they live in that connection only: the file
and its schema are untouched) call a Python function for every row of ``instances`` that is
inserted, updated or deleted, and for every label that is changed (the instances carry their
label's name). The journal is kept in Python, not in a table, so a rolled back transaction
leaves its entries: a reader then re-reads rows that did not change after all, which is
harmless, and never misses a change. Every writer goes through this connection (one per
project), so nothing escapes the triggers.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from dataclasses import dataclass

from app.core.project_db import ProjectFile

FUNCTION = "maskloop_instance_changed"
KEEP = 50_000  # entries kept; a reader further behind reads everything again

_TRIGGERS = (
    f"CREATE TEMP TRIGGER IF NOT EXISTS journal_instance_insert AFTER INSERT ON main.instances "
    f"BEGIN SELECT {FUNCTION}(new.image_id, new.id); END",
    f"CREATE TEMP TRIGGER IF NOT EXISTS journal_instance_update AFTER UPDATE ON main.instances "
    f"BEGIN SELECT {FUNCTION}(old.image_id, old.id), {FUNCTION}(new.image_id, new.id); END",
    f"CREATE TEMP TRIGGER IF NOT EXISTS journal_instance_delete AFTER DELETE ON main.instances "
    f"BEGIN SELECT {FUNCTION}(old.image_id, old.id); END",
    # a renamed label renames every instance of it: readers start again (any label change)
    f"CREATE TEMP TRIGGER IF NOT EXISTS journal_label_update AFTER UPDATE ON main.labels "
    f"BEGIN SELECT {FUNCTION}(NULL, NULL); END",
)

_journals: weakref.WeakKeyDictionary[ProjectFile, InstanceJournal] = weakref.WeakKeyDictionary()
_journals_lock = threading.Lock()


@dataclass(frozen=True)
class Changes:
    """What changed for one image since a reader's position: ``everything`` (read it all
    again), or the ids of the instances inserted, updated or deleted."""

    position: int
    everything: bool
    ids: frozenset[int]


class InstanceJournal:
    """The changes to the instances of one open project, in order (``journal(project)``).
    Until its triggers are in place (they are put in place outside any transaction, so a
    rollback cannot take them away), every reader is told to read everything."""

    def __init__(self, project: ProjectFile) -> None:
        # weakly: the journals are kept by project (weak keys), which a strong reference
        # from here would keep alive for ever
        self._project = weakref.ref(project)
        self._lock = threading.Lock()
        self._entries: list[tuple[int | None, int | None]] = []  # (image id, instance id)
        self._base = 0  # position of _entries[0]
        self._installed = False

    def _install(self) -> bool:
        """Put the triggers in place unless a transaction is open (the store's lock is held
        for a whole transaction, so none can start meanwhile); True once they are."""
        if self._installed:
            return True
        project = self._project()
        if project is None:
            return False
        def install(conn: sqlite3.Connection) -> None:
            conn.create_function(FUNCTION, 2, self._record)
            for sql in _TRIGGERS:
                conn.execute(sql)
            with self._lock:
                self._base += 1  # a position taken before this one means "read everything"

        self._installed = project.outside_transaction(install)
        return self._installed

    @property
    def position(self) -> int:
        """Where a reader that has seen every change so far stands."""
        self._install()
        with self._lock:
            return self._base + len(self._entries)

    def _record(self, image_id: int | None, instance_id: int | None) -> None:
        with self._lock:
            self._entries.append((image_id, instance_id))
            if len(self._entries) > 2 * KEEP:
                drop = len(self._entries) - KEEP
                del self._entries[:drop]
                self._base += drop

    def since(self, position: int, image_id: int) -> Changes:
        """The changes to ``image_id``'s instances after ``position``; an instance that moved
        to or from another image counts as changed in both."""
        installed = self._install()
        with self._lock:
            end = self._base + len(self._entries)
            if not installed or position < self._base:
                return Changes(end, True, frozenset())
            ids: set[int] = set()
            for image, instance in self._entries[position - self._base:]:
                if image is None or instance is None:
                    return Changes(end, True, frozenset())
                if image == image_id:
                    ids.add(instance)
            return Changes(end, False, frozenset(ids))


def journal(project: ProjectFile) -> InstanceJournal:
    """The project's journal, made on first use (one per project: one set of triggers)."""
    with _journals_lock:
        found = _journals.get(project)
        if found is None:
            found = _journals[project] = InstanceJournal(project)
        return found
