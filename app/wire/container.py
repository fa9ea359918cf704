"""MaskLoop's one binary container: the embedding cache files (app/predict/cache/file_format.py)
and the messages between the server and its client (app/wire/messages.py).

A container is a plain safetensors file (https://github.com/huggingface/safetensors)::

    uint64      header length N, little-endian
    N bytes     JSON header: for each array its dtype, shape and data_offsets, and
                "__metadata__", a str -> str dict
    payload     the arrays, little-endian, C order, back to back

so any safetensors reader opens it. safetensors checks what a hostile header could abuse: the
header length against the data (and a 100 MB cap), every shape against its byte range (with
overflow checks), byte ranges that neither overlap nor leave gaps nor end outside the data, and
no trailing bytes; nothing is allocated from a claimed shape. What it lacks, MaskLoop adds in
the metadata:

    "format"    "maskloop.<kind>" ("embedding", "message"): the container's magic
    "version"   the kind's version (a reader refuses any other)
    "order"     JSON list of the array names in their order (safetensors sorts them)
    "crc32"     crc32 of the arrays' bytes in that order (safetensors has no checksum)

plus the kind's own keys. Anything invalid raises ``ContainerError`` (a ValueError) with a
message that says what is wrong: truncated, trailing bytes, not a MaskLoop container, another
kind or version, corrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors

__all__ = ["ContainerError", "Contents", "decode", "encode", "read_file", "write_file"]

RESERVED = ("format", "version", "order", "crc32")
MAX_HEADER = 100_000_000  # safetensors refuses longer headers
_LEN = struct.Struct("<Q")
# safetensors' dtype codes that every release since 0.4 reads back into numpy
_FROM_CODE = {
    "BOOL": np.dtype(np.bool_), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8),
    "I16": np.dtype(np.int16), "U16": np.dtype(np.uint16), "I32": np.dtype(np.int32),
    "U32": np.dtype(np.uint32), "I64": np.dtype(np.int64), "U64": np.dtype(np.uint64),
    "F16": np.dtype(np.float16), "F32": np.dtype(np.float32), "F64": np.dtype(np.float64),
}
_TO_CODE = {d.name: code for code, d in _FROM_CODE.items()}
_DTYPES = frozenset(_TO_CODE)


class ContainerError(ValueError):
    """Bytes that are not a valid container of the expected kind and version."""


@dataclass
class Contents:
    """A decoded container: its kind's metadata (reserved keys removed) and its arrays."""

    meta: dict[str, str]
    arrays: dict[str, np.ndarray]  # writable, each owning its own buffer, in the written order


def _checked(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"array name {name!r} cannot be stored")
        a = np.asarray(a)
        if a.dtype.name not in _DTYPES:
            raise ValueError(f"array {name!r} has dtype {a.dtype}: only booleans, integers and "
                             "floats of up to 64 bits can be stored")
        out[name] = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # as stored
    return out


def _crc(arrays: Mapping[str, np.ndarray]) -> int:
    crc = 0
    for a in arrays.values():
        if a.size:
            crc = zlib.crc32(a.reshape(-1).view(np.uint8).data, crc)
    return crc


def _layout(
    kind: str, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, str] | None
) -> tuple[bytes, list[memoryview]]:
    """The length prefix and header, and the arrays' bytes to follow it in that order."""
    checked = _checked(arrays)
    full = {str(k): str(v) for k, v in (meta or {}).items()}
    clash = set(full) & set(RESERVED)
    if clash:
        raise ValueError(f"metadata keys {sorted(clash)} are reserved by the container")
    full.update({"format": f"maskloop.{kind}", "version": str(int(version)),
                 "order": json.dumps(list(checked)), "crc32": str(_crc(checked))})
    header: dict[str, object] = {"__metadata__": full}
    offset = 0
    for name, a in checked.items():
        header[name] = {"dtype": _TO_CODE[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    views = [a.reshape(-1).view(np.uint8).data for a in checked.values()]
    return _LEN.pack(len(raw)) + raw, views


def encode(
    kind: str, version: int, arrays: Mapping[str, np.ndarray], meta: Mapping[str, str] | None = None
) -> bytes:
    """The container of ``arrays`` with ``meta`` (str -> str, none of ``RESERVED``)."""
    head, views = _layout(kind, version, arrays, meta)
    return b"".join([head, *views])


def decode(data: bytes, kind: str, version: int) -> Contents:
    """The metadata and arrays of ``encode(kind, version, ...)``'s bytes; ContainerError if not."""
    data = bytes(data) if not isinstance(data, bytes) else data
    what = f"MaskLoop {kind}"
    if len(data) < _LEN.size + 2:
        raise ContainerError(f"{what} is truncated ({len(data)} bytes)")
    (n,) = _LEN.unpack_from(data)
    if n > MAX_HEADER or data[_LEN.size:_LEN.size + 1] != b"{":
        raise ContainerError(f"not a {what} (no safetensors header)")
    if _LEN.size + n > len(data):
        raise ContainerError(f"{what} is truncated (header)")
    try:
        flat = safetensors.deserialize(data)
    except Exception as exc:  # SafetensorError (not a ValueError), or a PyO3 panic
        raise ContainerError(_diagnose(data, n, what, exc)) from None
    meta = _metadata(data, n)
    if meta.get("format") != f"maskloop.{kind}":
        raise ContainerError(f"not a {what} (format {meta.get('format')!r})")
    if meta.get("version") != str(version):
        raise ContainerError(f"{what} version {meta.get('version')}, expected {version}")
    by_name = {name: info for name, info in flat}
    try:
        order = json.loads(meta["order"])
        crc = int(meta["crc32"])
        if not isinstance(order, list) or sorted(order) != sorted(by_name):
            raise ValueError("the order does not list the arrays")
    except (KeyError, TypeError, ValueError) as exc:
        raise ContainerError(f"{what} has a bad header: {exc}") from None
    arrays: dict[str, np.ndarray] = {}
    for name in order:
        info = by_name[name]
        dtype = _FROM_CODE.get(info["dtype"])
        if dtype is None:
            raise ContainerError(f"{what}: array {name!r} has dtype {info['dtype']}")
        a = np.frombuffer(info["data"], dtype=dtype).reshape(info["shape"])
        arrays[name] = a if a.flags.writeable else a.copy()  # bytes before safetensors 0.5
    if _crc(arrays) != crc:
        raise ContainerError(f"{what} is corrupt (checksum mismatch)")
    return Contents({k: v for k, v in meta.items() if k not in RESERVED}, arrays)


def _metadata(data: bytes, n: int) -> dict[str, str]:
    """The header's "__metadata__" (safetensors has validated the header already)."""
    header = json.loads(data[_LEN.size:_LEN.size + n])
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()}


def _diagnose(data: bytes, n: int, what: str, exc: Exception) -> str:
    """A message for bytes safetensors refused: truncated, trailing bytes, or corrupt."""
    try:
        header = json.loads(data[_LEN.size:_LEN.size + n])
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return f"{what} is corrupt (bad header: {exc})"
    expected = _LEN.size + n + max(ends, default=0)
    if len(data) < expected:
        return f"{what} is truncated ({len(data):,} of {expected:,} bytes)"
    if len(data) > expected:
        return f"{what} has {len(data) - expected:,} trailing bytes"
    return f"{what} is corrupt ({exc})"


def write_file(
    path: Path, kind: str, version: int, arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, str] | None = None,
) -> None:
    """Write a container to ``path`` atomically (temporary file in the same folder, renamed).

    The temporary file is named ``<path name>.<random>.tmp``."""
    head, views = _layout(kind, version, arrays, meta)  # raises before any file exists
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            for view in views:
                f.write(view)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_file(path: Path, kind: str, version: int) -> Contents:
    """``decode`` of a file's bytes (read in one call); OSError if it cannot be read."""
    with open(path, "rb") as f:
        data = f.read()
    return decode(data, kind, version)
