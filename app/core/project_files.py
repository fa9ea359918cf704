"""Registering image files in a project and finding them again after they moved."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.core.errors import ImageError, ProjectError
from app.core.images import content_hash, image_size, list_images
from app.core.jobs import CancelToken, Progress, check
from app.core.types import ImageRecord, ImageStatus

if TYPE_CHECKING:
    from app.core.project import Project

BATCH = 64  # images per transaction when adding many


@dataclass
class AddReport:
    """What ``Project.add_images`` did: records added, paths already present, and files that
    could not be read as (path, message)."""

    added: list[ImageRecord] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    skipped_errors: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RelocateReport:
    """What ``Project.relocate`` did: the new root, images found again under another path
    as (old path, new path), and images still missing."""

    image_root: Path
    rematched: list[tuple[str, str]] = field(default_factory=list)
    missing: list[ImageRecord] = field(default_factory=list)


def _image_files(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            return list(list_images(path))
        if path.is_file():
            return [path]
        raise ProjectError(f"{path}: no such image folder or file")
    return [Path(p) for p in source]


def add_images(project: Project,
               source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
               progress: Progress | None = None,
               cancel: CancelToken | None = None) -> AddReport:
    """See ``Project.add_images``."""
    files = _image_files(source)
    report = AddReport()
    known = {r.path for r in project.images()}
    pending: list[ImageRecord] = []

    def flush() -> None:
        with project.transaction():
            report.added.extend(project.insert_image(r) for r in pending)
        pending.clear()

    try:
        for done, file in enumerate(files):
            check(cancel)
            if progress is not None:
                progress(done, len(files), file.name)
            rel = project.relative_path(file)
            if rel in known:
                report.skipped_existing.append(rel)
                continue
            try:
                width, height = image_size(file)
                digest = content_hash(file)
            except ImageError as exc:
                report.skipped_errors.append((str(file), str(exc)))
                continue
            except OSError as exc:
                report.skipped_errors.append((str(file), f"{file}: {exc.strerror or exc}"))
                continue
            known.add(rel)
            pending.append(ImageRecord(path=rel, width=width, height=height,
                                       content_hash=digest, status=ImageStatus.NEW))
            if len(pending) >= BATCH:
                flush()
    finally:  # keep what was read, also when cancelled
        if pending:
            flush()
    if progress is not None:
        progress(len(files), len(files), "done")
    return report


def relocate(project: Project, new_root: str | os.PathLike[str], match_by_hash: bool,
             progress: Progress | None, cancel: CancelToken | None) -> RelocateReport:
    """See ``Project.relocate``."""
    root = Path(os.path.abspath(new_root))
    if not root.is_dir():
        raise ProjectError(f"{root}: no such image folder")
    project.set_image_root(root)
    report = RelocateReport(image_root=root)
    missing = project.missing_images()
    if missing and match_by_hash:
        by_hash: dict[str, list[ImageRecord]] = {}
        for record in missing:
            by_hash.setdefault(record.content_hash, []).append(record)
        known = {r.path for r in project.images()}
        candidates = [f for f in list_images(root)
                      if project.relative_path(f) not in known]
        for done, file in enumerate(candidates):
            check(cancel)
            if progress is not None:
                progress(done, len(candidates), file.name)
            try:
                digest = content_hash(file)
            except (ImageError, OSError):
                continue
            waiting = by_hash.get(digest)
            if waiting:
                record = waiting.pop(0)
                new_rel = project.relative_path(file)
                project.set_image_path(record.id or 0, new_rel)
                report.rematched.append((record.path, new_rel))
        if progress is not None:
            progress(len(candidates), len(candidates), "done")
    report.missing = project.missing_images()
    return report
