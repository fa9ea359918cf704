"""Which project a folder, a project file or nothing (the bundled samples) opens.

A folder FOLDER opens the project file inside it (``FOLDER/<folder name>.maskloop``, or the
only ``*.maskloop`` there), creating it on first use and registering new images each time.
When the folder is read-only the project goes to the user data dir instead. With no argument
the bundled samples (resources/samples) open, with their project in the user data dir.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app.core.errors import ProjectError
from app.core.jobs import CancelToken, Progress
from app.core.project import Project

SUFFIX = ".maskloop"


def samples_dir() -> Path:
    """resources/samples of the source tree (or of a frozen bundle)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2], Path(getattr(sys, "_MEIPASS", here.parents[2]))):
        candidate = base / "resources" / "samples"
        if candidate.is_dir():
            return candidate
    return here.parents[2] / "resources" / "samples"


def user_projects_dir() -> Path:
    return Path(platformdirs.user_data_dir("maskloop")) / "projects"


@dataclass(frozen=True)
class Target:
    """What to open: a project file, and the folder to scan for images (None: don't scan)."""

    project_path: Path
    image_root: Path
    scan: Path | None


def resolve(target: Path | None) -> Target:
    """Decide which project file ``target`` (folder, project file or None) means."""
    if target is None:
        root = samples_dir()
        return Target(user_projects_dir() / f"samples{SUFFIX}", root, root)
    target = target.expanduser().resolve()
    if target.is_file():
        if target.suffix != SUFFIX:
            raise ProjectError(f"{target}: not a folder or a {SUFFIX} project file")
        return Target(target, target.parent, None)
    if not target.is_dir():
        if target.suffix == SUFFIX:
            raise ProjectError(f"{target}: no such project file")
        raise ProjectError(f"{target}: no such folder")
    existing = sorted(target.glob(f"*{SUFFIX}"))
    named = target / f"{target.name or 'images'}{SUFFIX}"
    path = named if named in existing or len(existing) != 1 else existing[0]
    if not path.exists() and not os.access(target, os.W_OK):
        digest = hashlib.sha256(str(target).encode()).hexdigest()[:8]
        path = user_projects_dir() / f"{target.name}-{digest}{SUFFIX}"
    return Target(path, target, target)


def export_dir(project_path: Path) -> Path:
    """The default export folder: ``<project stem>-export`` next to the project file (left
    out of the folder scan, so exported masks never become images of the project)."""
    return project_path.with_name(f"{project_path.stem}-export")


def images_to_scan(target: Target) -> list[Path]:
    """The folder's images, without those in the project's export folder."""
    from app.core.images import list_images

    assert target.scan is not None
    skip = export_dir(target.project_path)
    return [p for p in list_images(target.scan) if not p.is_relative_to(skip)]


@dataclass
class Opened:
    project: Project
    unreadable: list[tuple[str, str]]  # (path, message) of images that could not be read


def open_target(target: Target, progress: Progress | None = None,
                cancel: CancelToken | None = None) -> Opened:
    """Open (or create) the project and register the folder's new images. Slow on a big
    folder the first time (every image is read once): run it off the GUI thread."""
    if target.project_path.exists():
        project = Project.open(target.project_path)
    else:
        target.project_path.parent.mkdir(parents=True, exist_ok=True)
        project = Project.create(target.project_path, target.image_root)
    unreadable: list[tuple[str, str]] = []
    if target.scan is not None:
        try:
            report = project.add_images(images_to_scan(target), progress=progress,
                                        cancel=cancel)
        except BaseException:
            project.close()
            raise
        unreadable = [(str(p), str(m)) for p, m in report.skipped_errors]
    return Opened(project, unreadable)
