"""Where a bulk job's images come from: a local folder or an object-store URI.

A local folder is listed as ``maskloop embed`` lists it (``list_images``); a URI (``s3://``,
``gs://``, ``file://``, any fsspec protocol whose package is installed: s3fs, gcsfs) is listed
with fsspec, which Ray Data itself uses for object stores (well kept; nothing to write by
hand). A worker reads an image by the same string, so every node must reach the source."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from app.core.errors import ImageError
from app.core.images import IMAGE_EXTENSIONS, list_images


def is_uri(source: str) -> bool:
    """True for ``scheme://...`` (an fsspec URI), False for a local path."""
    return "://" in source


def list_source(source: str, recursive: bool = True) -> list[str]:
    """The image files of ``source`` in a stable order (local paths or full URIs).

    Raises ImageError naming the source when it cannot be listed."""
    if not is_uri(source):
        return [str(p) for p in list_images(source, recursive=recursive)]
    fs, root = _filesystem(source)
    try:
        if not fs.isdir(root):
            raise ImageError(f"cannot list images in '{source}': not a folder (prefix)")
        found = fs.find(root, maxdepth=None if recursive else 1)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot list images in '{source}': {exc}") from None
    names = [p for p in found if PurePosixPath(p).suffix.lower() in IMAGE_EXTENSIONS
             and not PurePosixPath(p).name.startswith(".")]
    return sorted(fs.unstrip_protocol(p) for p in names)


def read_bytes(location: str) -> bytes:
    """The bytes of one image file (a local path or a URI); ImageError naming it."""
    try:
        if not is_uri(location):
            with open(location, "rb") as f:
                return f.read()
        fs, path = _filesystem(location)
        data = fs.cat_file(path)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read image '{location}': {exc}") from None
    return bytes(data)


def _filesystem(uri: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise ImageError(f"cannot read '{uri}': fsspec is not installed (install "
                         "maskloop[cluster])") from None
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:  # e.g. s3fs missing for s3://
        raise ImageError(f"cannot open '{uri}': {exc}") from None
    return fs, path
