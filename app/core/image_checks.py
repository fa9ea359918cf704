"""Images of a project whose header reads but whose pixels do not (a truncated JPEG).

Registering an image reads its header (size) and its bytes (hash), not its pixels, so a file
cut short is registered like a good one. ``check_images`` decodes what needs decoding
(``check_complete``: most files are judged by their first and last bytes) and remembers
each result in the project for the file's size and modification time, so a second check,
an export or the next session reads nothing again until a file changes. It is slow the
first time on a big folder of formats that must be decoded: run it off the GUI thread. A
missing file is not checked (``Project.missing_images`` is about those).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from app.core.errors import ImageError, ProjectError
from app.core.images import load_image
from app.core.jobs import CancelToken, Progress, check
from app.core.project import Project
from app.core.types import ImageRecord

BATCH = 64  # results stored per transaction

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # an empty IEND chunk and its CRC


def _ends_where_it_should(path: Path) -> bool:
    """Whether the file ends where its format says it does, read from its first and last
    bytes: a JPEG with its EOI marker, a PNG with its IEND chunk, a WebP (RIFF) or BMP as
    long as its header says. A file cut short never does (an EOI marker cannot occur in a
    JPEG's compressed data); False also for other formats and for bytes after the end."""
    with path.open("rb") as f:
        head = f.read(16)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - len(_PNG_END)))
        tail = f.read()
    if head.startswith(b"\xff\xd8"):
        return tail.endswith(b"\xff\xd9")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return tail == _PNG_END
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return int.from_bytes(head[4:8], "little") + 8 <= size
    if head[:2] == b"BM":
        return int.from_bytes(head[2:6], "little") == size
    return False


def check_complete(path: str | os.PathLike[str]) -> None:
    """Raise ImageError (naming the file and the problem) if the image cannot be decoded
    in full. A JPEG, PNG, WebP or BMP that ends where its format says is taken as complete
    from its first and last bytes; any other file is decoded (``load_image``)."""
    path = Path(path)
    try:
        if _ends_where_it_should(path):
            return
    except OSError as exc:
        raise ImageError(f"cannot read image '{path}': {exc.strerror or exc}") from exc
    load_image(path)


def known_problems(project: Project) -> dict[int, str]:
    """What the last checks found, by image id (no file is read)."""
    rows = project.query("SELECT image_id, problem FROM image_checks WHERE problem IS NOT NULL")
    return {r["image_id"]: r["problem"] for r in rows}


def check_images(project: Project, records: Sequence[ImageRecord] | None = None, *,
                 progress: Progress | None = None,
                 cancel: CancelToken | None = None) -> dict[int, str]:
    """The problem of each image of ``records`` (default: all) that cannot be decoded, by
    image id; files not changed since their last check are not read again."""
    records = project.images() if records is None else list(records)
    stored = {r["image_id"]: (r["size"], r["mtime_ns"], r["problem"])
              for r in project.query("SELECT * FROM image_checks")}
    problems: dict[int, str] = {}
    pending: list[tuple[int, int, int, str | None]] = []
    try:
        for done, record in enumerate(records):
            check(cancel)
            if progress is not None:
                progress(done, len(records), record.path)
            path = project.image_path(record)
            try:
                st = path.stat()
            except OSError:
                continue
            known = stored.get(int(record.id or 0))
            if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
                problem = known[2]
            else:
                try:
                    check_complete(path)
                    problem = None
                except ImageError as exc:
                    problem = str(exc)
                pending.append((int(record.id or 0), st.st_size, st.st_mtime_ns, problem))
                if len(pending) >= BATCH:
                    _store(project, pending)
            if problem is not None:
                problems[int(record.id or 0)] = problem
    finally:  # keep what was found, also when cancelled
        _store(project, pending)
    if progress is not None:
        progress(len(records), len(records), "done")
    return problems


def _store(project: Project, rows: list[tuple[int, int, int, str | None]]) -> None:
    """Remember results (best effort: a project that cannot be written is checked again
    next time)."""
    if not rows:
        return
    try:
        with project.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO image_checks "
                             "(image_id, size, mtime_ns, problem) VALUES (?, ?, ?, ?)", rows)
    except ProjectError:
        pass
    rows.clear()
