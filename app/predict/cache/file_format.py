"""The embedding cache's file format: one image's embedding in one file.

Disk format (version 1), little-endian::

    b"MLEMB\\0"  magic (6 bytes)
    uint16      format version
    uint32      header length N
    N bytes     JSON header: model_id, image_hash, image_size, crc32 of the payload, and for
                each array its name, dtype, shape, offset and nbytes inside the payload
    padding     to a multiple of 64 bytes
    payload     the raw arrays, each at a 64-byte aligned offset

A file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file; reading a file that is truncated, corrupt, of another version or of
another key raises ValueError (``EmbeddingCache`` then deletes it, and rebuilds it later).
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
from typing import Any

import numpy as np

from app.core.types import EmbeddingKey

MAGIC = b"MLEMB\x00"
FORMAT_VERSION = 1
SUFFIX = ".mlemb"
TMP_GLOB = "*" + SUFFIX + ".*.tmp"  # write_embedding's temporary files
_PREFIX = struct.Struct("<6sHI")  # magic, version, header length
_ALIGN = 64


@dataclass
class Embedding:
    """One image's embedding: named arrays (float16 for SAM2) and the original image size."""

    arrays: dict[str, np.ndarray]
    image_size: tuple[int, int]  # (height, width) of the original image

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _bytes_of(a: np.ndarray) -> memoryview:
    """The raw bytes of a C-contiguous array, without a copy."""
    return a.reshape(-1).view(np.uint8).data


def write_embedding(path: Path, key: EmbeddingKey, emb: Embedding) -> None:
    """Write ``emb`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    arrays: list[tuple[str, np.ndarray]] = [
        (name, np.ascontiguousarray(a)) for name, a in emb.arrays.items()
    ]
    for name, a in arrays:
        if a.dtype.kind not in "biufc":
            raise ValueError(f"array {name!r} has dtype {a.dtype}: only numbers can be cached")
    entries: list[dict[str, Any]] = []
    offsets: list[int] = []
    offset = 0
    crc = 0
    for name, a in arrays:
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                        "offset": offset, "nbytes": a.nbytes})
        offsets.append(offset)
        crc = zlib.crc32(_bytes_of(a), crc)
        offset = _align(offset + a.nbytes)
    payload_size = offset
    header = json.dumps({
        "model_id": key.model_id, "image_hash": key.image_hash,
        "image_size": [int(emb.image_size[0]), int(emb.image_size[1])],
        "payload_bytes": payload_size, "crc32": crc, "arrays": entries,
    }).encode()
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)) + header
    head += b"\0" * (_align(len(head)) - len(head))

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(head)
            written = 0
            for (_, a), start in zip(arrays, offsets, strict=True):
                f.write(b"\0" * (start - written))
                f.write(_bytes_of(a))
                written = start + a.nbytes
            f.write(b"\0" * (payload_size - written))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_embedding(path: Path, key: EmbeddingKey | None = None) -> Embedding:
    """Read an embedding file; the arrays are views into one buffer read in a single call.

    Raises ValueError if the file is not a valid embedding of ``key`` (when given).
    """
    with open(path, "rb") as f:
        prefix = f.read(_PREFIX.size)
        if len(prefix) != _PREFIX.size:
            raise ValueError("file is truncated")
        magic, version, header_len = _PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise ValueError("not an embedding cache file")
        if version != FORMAT_VERSION:
            raise ValueError(f"format version {version}, expected {FORMAT_VERSION}")
        raw = f.read(header_len)
        if len(raw) != header_len:
            raise ValueError("file is truncated")
        try:
            header = json.loads(raw)
            payload_bytes = int(header["payload_bytes"])
            entries = header["arrays"]
            h, w = header["image_size"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"bad header: {exc}") from exc
        if key is not None and (header.get("model_id"), header.get("image_hash")) != (
            key.model_id, key.image_hash
        ):
            raise ValueError(
                f"holds {header.get('image_hash')!r}/{header.get('model_id')!r}, not {key}"
            )
        f.seek(_align(_PREFIX.size + header_len))
        buf = np.empty(payload_bytes, dtype=np.uint8)
        if f.readinto(buf.data) != payload_bytes or f.read(1):
            raise ValueError("file is truncated or has trailing bytes")
    return _unpack(buf, header, entries, (int(h), int(w)))


def _unpack(
    buf: np.ndarray, header: Mapping[str, object], entries: list[dict], size: tuple[int, int]
) -> Embedding:
    arrays: dict[str, np.ndarray] = {}
    crc = 0
    try:
        for e in entries:
            start, n = int(e["offset"]), int(e["nbytes"])
            if start < 0 or start + n > buf.size:
                raise ValueError(f"array {e['name']!r} lies outside the file")
            chunk = buf[start:start + n]
            crc = zlib.crc32(chunk.data, crc)
            arrays[str(e["name"])] = chunk.view(np.dtype(e["dtype"])).reshape(e["shape"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad header: {exc}") from exc
    if crc != header.get("crc32"):
        raise ValueError("checksum mismatch (corrupt file)")
    return Embedding(arrays, size)
