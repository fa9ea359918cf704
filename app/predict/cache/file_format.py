"""The embedding cache's file format: one image's embedding in one file.

A file is a container of ``app.wire.container`` (a safetensors file, the format of the wire's
messages too) of kind "embedding", version ``FORMAT_VERSION``: the named arrays (float16 for
SAM2) and, in the metadata, ``model_id``, ``image_hash`` and ``image_size`` ("h,w"); the
container adds the array order and a crc32 of the arrays.

A file is written to a temporary name in the same folder and renamed into place, so a reader
never sees half a file; reading a file that is truncated, corrupt, of another version or of
another key raises ValueError (``EmbeddingCache`` then deletes it, and rebuilds it later). The
files of version 1 (a hand-written "MLEMB" format) are not containers: they read as corrupt,
so the cache replaces them as it meets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.core.types import EmbeddingKey
from app.wire import container

KIND = "embedding"
FORMAT_VERSION = 2  # 1: the "MLEMB" format before the shared container
SUFFIX = ".mlemb"
TMP_GLOB = "*" + SUFFIX + ".*.tmp"  # write_embedding's temporary files (container.write_file)


@dataclass
class Embedding:
    """One image's embedding: named arrays (float16 for SAM2) and the original image size."""

    arrays: dict[str, np.ndarray]
    image_size: tuple[int, int]  # (height, width) of the original image

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.arrays.values()))


def write_embedding(path: Path, key: EmbeddingKey, emb: Embedding) -> None:
    """Write ``emb`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    h, w = (int(v) for v in emb.image_size)
    meta = {"model_id": key.model_id, "image_hash": key.image_hash, "image_size": f"{h},{w}"}
    container.write_file(path, KIND, FORMAT_VERSION, emb.arrays, meta)


def read_embedding(path: Path, key: EmbeddingKey | None = None) -> Embedding:
    """Read an embedding file; its arrays are writable and own their memory.

    Raises ValueError if the file is not a valid embedding of ``key`` (when given).
    """
    got = container.read_file(path, KIND, FORMAT_VERSION)
    meta = got.meta
    if key is not None and (meta.get("model_id"), meta.get("image_hash")) != (
        key.model_id, key.image_hash
    ):
        raise ValueError(f"holds {meta.get('image_hash')!r}/{meta.get('model_id')!r}, not {key}")
    try:
        h, w = (int(v) for v in meta["image_size"].split(","))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad image_size in the header: {exc}") from None
    return Embedding(got.arrays, (h, w))
