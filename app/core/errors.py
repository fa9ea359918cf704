"""One exception family per layer, with messages a user can act on."""

from __future__ import annotations


class MaskLoopError(Exception):
    """Base of every error MaskLoop reports to a user (never shown as a traceback)."""


class ProjectError(MaskLoopError):
    """The project file cannot be opened, read or written."""


class ImageError(MaskLoopError):
    """An image file cannot be read; the message names the file and the problem."""


class FormatError(MaskLoopError):
    """An export or import failed; the message names the file and the problem."""


class WireError(MaskLoopError):
    """Bytes that are not a valid MaskLoop message (truncated, wrong magic, bad header)."""


class Cancelled(MaskLoopError):
    """A long job was cancelled by the person who started it."""
