"""Where an export goes: the safety checks, the staging folder and the manifest.

An export never writes over, deletes, moves or links over one of the project's images or any
file it did not create. Every export is written into a hidden staging folder beside the output
folder (same file system) and moved into place at the end, with a manifest
(``maskloop-export.json``) that lists every file it wrote and says ``"complete": true``.

The rules:

- The output folder must be new or empty, or ``overwrite`` must be given. Overwriting removes
  only the files that the earlier export's manifest lists (and the folders they leave empty);
  every other file stays, and a new file that would land on one of them is refused.
- No file of the export may be one of the project's images.
- An output folder that is, is inside or contains an image folder is accepted only when the
  layout cannot collide: the folder an export puts image files in (copied or linked images,
  overlays, mask PNGs: ``images/`` for COCO and YOLO, ``instances/`` and ``semantic/`` for
  masks, the folder itself for labelme and overlays) must hold none of the project's images.
  So a fresh folder inside the image folder (the app's default ``<project>-export``) is fine,
  and so is a COCO JSON without copied images beside the images; a labelme export into the
  image folder, or a YOLO export into the dataset the project was imported from, is refused.

Moving into place: a new or empty output folder is replaced by the staging folder (one
rename); a folder that holds nothing but an earlier export is swapped with it (two renames, the
old one is then deleted); a folder that also holds other files gets the new files moved in one
by one while its manifest says ``"complete": false``, so an interrupted export is recognisable
and a later overwrite still removes every file either export wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from app.core.errors import FormatError
from app.core.formats.common import path_key, safe_relative, write_text_atomic
from app.core.images import EXPORT_MANIFEST

MANIFEST_NAME = EXPORT_MANIFEST
MANIFEST_VERSION = 1


def _norm(path: str) -> str:
    """A resolved path in ``path_key``'s form."""
    path = os.path.normcase(path)
    return path.casefold() if sys.platform in ("darwin", "win32") else path


def _within(key: str, folder_key: str) -> bool:
    return key == folder_key or key.startswith(folder_key.rstrip(os.sep) + os.sep)


def _files_under(root: Path) -> list[str]:
    """Relative POSIX paths of every file and link under ``root`` (links are not followed)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        links = [d for d in dirnames if (base / d).is_symlink()]
        found += [(base / name).relative_to(root).as_posix() for name in (*filenames, *links)]
    return sorted(found)


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and _within(path_key(folder), path_key(stop)):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of the export in ``folder``, or None when there is none."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("files"), list):
            raise ValueError("no list of files")
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable MaskLoop export manifest ({exc}); remove it "
                          "or export to another folder") from exc
    return data


@dataclass
class OutputFolder:
    """An export's output folder, checked before the export runs (``prepare``); the export is
    written into ``staging()`` and moved in with ``commit``."""

    path: Path
    overwrite: bool
    protected: frozenset[str]
    old_files: set[str] = field(default_factory=set)

    @classmethod
    def prepare(cls, out_dir: str | os.PathLike[str], *, images: Iterable[Path],
                image_subdirs: Sequence[str], fmt: str, overwrite: bool = False,
                extra_protected: Iterable[Path] = ()) -> OutputFolder:
        """Check ``out_dir`` for an export of ``fmt`` that puts image files into
        ``image_subdirs`` (relative to it; "." is the folder itself) of a project whose image
        files are ``images``; FormatError (one line) when it is refused."""
        path = Path(os.path.realpath(out_dir))
        if path.parent == path:
            raise FormatError(f"{path}: cannot export into the top of a file system; give a "
                              "folder")
        if path.exists() and not path.is_dir():
            raise FormatError(f"{path}: exists and is not a folder")
        image_keys: list[tuple[str, Path]] = []
        protected: set[str] = set()
        for image in images:
            key = path_key(image)
            image_keys.append((key, Path(image)))
            protected.add(key)
            if os.path.islink(image):  # the file a linked image shows is the user's too
                protected.add(_norm(os.path.realpath(image)))
        protected.update(path_key(p) for p in extra_protected)
        for sub in image_subdirs:
            where = Path(os.path.realpath(path / sub))
            where_key = _norm(str(where))
            hit = next((p for k, p in image_keys if _within(k, where_key)), None)
            if hit is not None:
                place = "this folder" if where == path else f"{where}"
                raise FormatError(
                    f"{path}: refused: a {fmt} export would put image files in {place}, "
                    f"which holds the project's images (such as {hit}); choose a folder that "
                    "holds none of them")
        folder = cls(path, overwrite, frozenset(protected))
        if path.is_dir() and any(path.iterdir()):
            if not overwrite:
                raise FormatError(
                    f"{path}: folder is not empty; export to a new or empty folder, or "
                    "overwrite (--overwrite) to replace an earlier MaskLoop export there (only "
                    "the files its manifest lists are removed)")
            manifest = read_manifest(path)
            if manifest is not None:
                folder.old_files = {rel for rel in manifest["files"] if isinstance(rel, str)
                                    and safe_relative(rel) and rel != MANIFEST_NAME
                                    and not folder._protected(path / rel)}
        return folder

    def _protected(self, path: Path) -> bool:
        return path_key(path) in self.protected

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A new hidden folder beside the output folder; removed unless it was moved in."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stage = self.path.parent / f".{self.path.name}.maskloop-staging-{secrets.token_hex(4)}"
        stage.mkdir()
        try:
            yield stage
        finally:
            if stage.exists():
                shutil.rmtree(stage)

    # --- commit --------------------------------------------------------------------------------

    def _check_collisions(self, new_files: list[str]) -> None:
        checked: set[Path] = set()
        for rel in new_files:
            dst = self.path / rel
            if self._protected(dst):
                raise FormatError(f"{dst}: is one of the project's images; an export never "
                                  "writes over it")
            parent = self.path
            for part in PurePosixPath(rel).parts[:-1]:
                parent = parent / part
                if parent in checked:
                    continue
                if parent.is_symlink() or (parent.exists() and not parent.is_dir()):
                    raise FormatError(f"{parent}: is in the way of the export (a file or link "
                                      "that no earlier MaskLoop export there lists)")
                checked.add(parent)
            if os.path.lexists(dst) and (rel not in self.old_files
                                         or (dst.is_dir() and not dst.is_symlink())):
                raise FormatError(f"{dst}: already exists and no earlier MaskLoop export there "
                                  "lists it; an export never replaces such a file (export to "
                                  "a new or empty folder)")

    def _remove_listed(self, root: Path, files: Iterable[str]) -> None:
        """Remove ``files`` (relative to ``root``) and the folders they leave empty; never one
        of the project's images."""
        for rel in sorted(files):
            path = root / rel
            if self._protected(path) or not (path.is_symlink() or path.is_file()):
                continue
            path.unlink()
            _prune_empty(path.parent, root)

    def _holds_only_old_export(self) -> bool:
        """Whether every file and folder in the output folder belongs to the earlier export."""
        if not (self.path / MANIFEST_NAME).is_file():
            return False
        ours = self.old_files | {MANIFEST_NAME}
        folders = {str(parent) for rel in ours for parent in PurePosixPath(rel).parents}
        for dirpath, dirnames, filenames in os.walk(self.path):
            base = Path(dirpath).relative_to(self.path)
            if any((base / d).as_posix() not in folders for d in dirnames):
                return False  # a folder of someone else's (or a link to one)
            if any((base / f).as_posix() not in ours for f in filenames):
                return False
        return True

    def commit(self, stage: Path, info: dict[str, Any]) -> tuple[list[Path], list[str]]:
        """Move the export written in ``stage`` into place with its manifest (``info`` plus the
        file list and ``complete``). Returns the final paths of the files written (the manifest
        last) and warnings."""
        new_files = _files_under(stage)
        if MANIFEST_NAME in new_files:
            raise FormatError(f"{MANIFEST_NAME} is the name of the export manifest; an export "
                              "file cannot have it")
        empty = not self.path.exists() or not any(self.path.iterdir())
        if not empty:  # (nothing can be in the way in a new or empty folder)
            if not self.overwrite:
                raise FormatError(f"{self.path}: folder is no longer empty (files appeared "
                                  "during the export); nothing was written")
            self._check_collisions(new_files)
        warnings: list[str] = []

        def manifest(files: Iterable[str], complete: bool) -> str:
            return json.dumps({"maskloop_export": MANIFEST_VERSION, "complete": complete, **info,
                               "files": sorted(files)}, indent=1, ensure_ascii=False)

        done = [self.path / rel for rel in new_files] + [self.path / MANIFEST_NAME]
        if empty:
            write_text_atomic(stage / MANIFEST_NAME, manifest(new_files, True))
            if self.path.exists():
                self.path.rmdir()
            os.rename(stage, self.path)
        elif self._holds_only_old_export():
            write_text_atomic(stage / MANIFEST_NAME, manifest(new_files, True))
            old = self.path.parent / f".{self.path.name}.maskloop-old-{secrets.token_hex(4)}"
            os.rename(self.path, old)
            try:
                os.rename(stage, self.path)
            except OSError:
                os.rename(old, self.path)
                raise
            self._remove_listed(old, self.old_files | {MANIFEST_NAME})
            with contextlib.suppress(OSError):
                old.rmdir()
            if old.exists():
                warnings.append(f"{old}: the earlier export's folder was kept: it holds files "
                                "that appeared during the export")
        else:  # other files live here too: move the new files in one by one
            target_manifest = self.path / MANIFEST_NAME
            write_text_atomic(target_manifest, manifest(self.old_files | set(new_files), False))
            self._remove_listed(self.path, self.old_files - set(new_files))
            for rel in new_files:
                dst = self.path / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / rel, dst)
            write_text_atomic(target_manifest, manifest(new_files, True))
        return done, warnings


def manifest_info(fmt: str, images: int, instances: int, options: dict[str, Any],
                  image_ids: list[int] | None) -> dict[str, Any]:
    """What the manifest says besides its file list."""
    plain: dict[str, Any] = {k: v for k, v in options.items()
                             if v is None or isinstance(v, str | int | float | bool)}
    if image_ids is not None:
        plain["image_ids"] = list(image_ids)
    return {"format": fmt, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "images": images, "instances": instances, "options": plain}
