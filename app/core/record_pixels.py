"""The pixels of any image record of a project: a plain image is its file; a frame of a
sequence is not a file (its path is ``"clip.mp4#000012"``) and is decoded from its video or
frame folder.

Thread-safe: the GUI and the prediction worker load at the same time. Open sequences are
kept in a small LRU (opening a video indexes its packets, so reopening per frame would be
slow), each behind its own lock because PyAV containers are not thread-safe; loads of
different sequences and of plain images run in parallel.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from app.core.errors import ImageError
from app.core.images import load_image
from app.core.sequences import Sequence, SequenceError
from app.core.types import ImageRecord, SequenceRecord

if TYPE_CHECKING:
    from app.core.project import Project

KEEP_OPEN = 2  # sequences kept open (each caches up to sequences.DEFAULT_CACHE_BYTES of frames)


@dataclass(eq=False)
class _Open:
    """One sequence: opened on first use under ``lock``, closed when evicted."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: Sequence | None = None
    closed: bool = False  # evicted: a load that got it too late opens the sequence again


class RecordPixels:
    """``load(record)``: RGB uint8 (H, W, 3) of a plain image or of a sequence's frame.
    Failures raise ``ImageError`` naming the file (what the UI's loaders expect)."""

    def __init__(self, project: Project, keep_open: int = KEEP_OPEN) -> None:
        self.project = project
        self.keep_open = max(1, keep_open)
        self._lock = threading.Lock()  # guards _open and _closed
        self._open: OrderedDict[int, _Open] = OrderedDict()  # sequence id, least recent first
        self._closed = False

    def load(self, record: ImageRecord) -> np.ndarray:
        """The record's pixels (a new array the caller owns)."""
        where = None if record.id is None else self.project.sequences.frame_of(record.id)
        if where is None:
            return load_image(self.project.image_root / record.path)
        sequence_id, index = where
        try:
            return self._frame(sequence_id, index)
        except SequenceError as exc:
            raise ImageError(f"{record.path}: {exc}") from exc
        except IndexError as exc:
            raise ImageError(f"{record.path}: {exc} (the sequence changed on disk?)") from exc

    def frame(self, sequence: SequenceRecord, index: int) -> np.ndarray:
        """Frame ``index`` of ``sequence`` without its images row (reading ahead of the
        person: a row is made only for frames they visit)."""
        try:
            return self._frame(int(sequence.id or 0), index)
        except (SequenceError, IndexError) as exc:
            raise ImageError(f"{sequence.path}: frame {index}: {exc}") from exc

    def close(self) -> None:
        """Close the open sequences; later loads raise ImageError."""
        with self._lock:
            self._closed = True
            entries = list(self._open.values())
            self._open.clear()
        for entry in entries:
            self._close(entry)

    def __enter__(self) -> RecordPixels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames --------------------------------------------------------------------------

    def _frame(self, sequence_id: int, index: int) -> np.ndarray:
        while True:
            entry = self._entry(sequence_id)
            with entry.lock:
                if entry.closed:
                    continue  # evicted between _entry and here: take it again
                if entry.sequence is None:
                    entry.sequence = self.project.sequences.open(sequence_id)
                return np.array(entry.sequence.frame(index), copy=True)  # its cache's own

    def _entry(self, sequence_id: int) -> _Open:
        """The sequence's entry, now the most recent; evicts (and closes) the least recent
        beyond ``keep_open``, outside the LRU lock."""
        with self._lock:
            if self._closed:
                raise ImageError("the project's pixels are closed")
            entry = self._open.get(sequence_id)
            if entry is None:
                entry = self._open[sequence_id] = _Open()
            self._open.move_to_end(sequence_id)
            evicted = []
            while len(self._open) > self.keep_open:
                evicted.append(self._open.popitem(last=False)[1])
        for old in evicted:
            self._close(old)
        return entry

    @staticmethod
    def _close(entry: _Open) -> None:
        """Close ``entry``'s sequence once no load is using it."""
        with entry.lock:
            entry.closed = True
            if entry.sequence is not None:
                entry.sequence.close()
                entry.sequence = None
