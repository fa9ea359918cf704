"""Checks for the records an import reads. A problem is one line naming the record and the field,
``annotations[3].image_id: missing``, so that a reader can skip the record with a warning (or
stop with a ``FormatError``) instead of failing with a traceback.

The policy every reader follows:

- a file that has not the expected shape (not JSON, not an object, a table that is not a list,
  two records with the same id) is an error: nothing is imported;
- a record with a field missing or of the wrong type is skipped with a warning, and the rest
  is imported;
- an image record without a usable size takes it from its image file when that file is found,
  else from the project image it names (when the import is into a project), and says so in a
  warning; otherwise the image (and its annotations) is skipped with a warning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from app.core.errors import ImageError
from app.core.images import MAX_PIXELS, image_size

SHOWN_CHARS = 40

# (width, height, a description such as "the project's image a/b.jpg") of the project image that
# a dataset's image path names, or None; lets an image record without a size take the project's.
SizeLookup = Callable[[str], tuple[int, int, str] | None]


class RecordProblem(ValueError):
    """A record or one of its fields is unusable; ``str()`` is ``"where: problem"``, e.g.
    ``"annotations[3].image_id: missing"``."""


def show(value: Any) -> str:
    """``value`` as it would be written in JSON, cut to a few dozen characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type, with its article: "an object", "a string", ..."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else f"a {type(value).__name__}"


def member(where: str, key: str) -> str:
    """The name of field ``key`` of the record ``where`` ("" for a file's top level)."""
    return f"{where}.{key}" if where else key


def field(record: Any, key: str, where: str) -> Any:
    """``record[key]``; RecordProblem when the record is not an object or has no ``key``."""
    if not isinstance(record, Mapping):
        raise RecordProblem(f"{where or 'the file'}: expected an object, got {show(record)}")
    if key not in record:
        raise RecordProblem(f"{member(where, key)}: missing")
    return record[key]


def integer(value: Any, where: str) -> int:
    """A JSON integer (``3`` or ``3.0``); strings, booleans and fractions are refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise RecordProblem(f"{where}: expected an integer, got {show(value)}")


def number(value: Any, where: str) -> float:
    """A finite JSON number; strings, booleans, NaN and infinities are refused."""
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value):
        return float(value)
    raise RecordProblem(f"{where}: expected a number, got {show(value)}")


def numbers(value: Any, where: str) -> list[float]:
    """A JSON array of finite numbers; the message names the first bad element."""
    if not isinstance(value, list):
        raise RecordProblem(f"{where}: expected an array of numbers, got {show(value)}")
    return [number(v, f"{where}[{i}]") for i, v in enumerate(value)]


def side(value: Any, where: str) -> int:
    """An image width or height: a positive integer within the image size limit."""
    if isinstance(value, int | float) and not isinstance(value, bool) \
            and math.isfinite(value) and float(value).is_integer() \
            and 1 <= value <= MAX_PIXELS:
        return int(value)
    raise RecordProblem(f"{where}: expected a positive integer, got {show(value)}")


def image_record_size(record: Mapping[str, Any], where: str, keys: tuple[str, str],
                      file: Path | None, path: str = "",
                      project_size: SizeLookup | None = None,
                      ) -> tuple[tuple[int, int], str | None]:
    """((width, height), note) of an image record whose size is in ``keys`` (width key, height
    key). When the record has no usable size it is read from the image ``file``, else taken
    from the project image that ``path`` names (``project_size``), and ``note`` says so;
    RecordProblem when none of these works."""
    problem: str | None = None
    sizes: list[int] = []
    for key in keys:
        try:
            sizes.append(side(field(record, key, where), member(where, key)))
        except RecordProblem as exc:
            problem = str(exc)
            break
    if problem is None:
        width, height = sizes
        if width * height <= MAX_PIXELS:
            return (width, height), None
        problem = (f"{where or 'size'}: {width}x{height} is more than the {MAX_PIXELS:,} "
                   "pixel limit")
    unreadable = ""
    if file is not None:
        try:
            width, height = image_size(file)
        except (ImageError, OSError) as exc:
            unreadable = f" and the image file cannot be read ({exc})"
        else:
            return (width, height), f"{problem}; the size {width}x{height} was read from {file}"
    found = project_size(path) if project_size is not None and path else None
    if found is not None:
        width, height, what = found
        return (width, height), f"{problem}; the size {width}x{height} was taken from {what}"
    if unreadable:
        raise RecordProblem(f"{problem}{unreadable}")
    if project_size is None:
        raise RecordProblem(f"{problem} and the image file was not found")
    raise RecordProblem(f"{problem}, the image file was not found and the project has no such "
                        "image")


def rle_string_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``);
    ValueError when ``text`` is not one."""
    counts: list[int] = []
    pos, end = 0, len(text)
    while pos < end:
        value, shift, more = 0, 0, True
        while more:
            if pos >= end:
                raise ValueError("truncated")
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[pos]!r}")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts
