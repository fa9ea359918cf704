"""The one binary container (app.wire.container): a safetensors file with MaskLoop's kind,
version, array order and crc32 in its metadata; hostile bytes are ContainerErrors that say
what is wrong, and a header's claims never size an allocation."""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from app.wire import container
from app.wire.container import ContainerError


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "z": rng.standard_normal((2, 3)).astype(np.float16),
        "a": np.arange(5, dtype=np.int64),
        "empty": np.zeros((0, 4), np.float32),
        "scalar": np.array(2.5),
        "flags": np.array([True, False, True]),
        "bytes": np.frombuffer(b"\x00\xffabc", np.uint8),
        "strided": np.eye(4, dtype=np.float32)[:, ::2],
        "big_endian": np.arange(3, dtype=">u4"),
    }


def test_round_trip_keeps_order_dtypes_values_and_metadata() -> None:
    src = arrays()
    got = container.decode(container.encode("thing", 3, src, {"k": "v", "x": "1,2"}), "thing", 3)
    assert got.meta == {"k": "v", "x": "1,2"}
    assert list(got.arrays) == list(src)
    for name, a in src.items():
        b = got.arrays[name]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
        np.testing.assert_array_equal(b, a)
        assert b.flags.writeable and b.flags.c_contiguous


def test_it_is_a_plain_safetensors_file() -> None:
    data = container.encode("thing", 1, {"w": np.ones((2, 2), np.float16)}, {"k": "v"})
    np.testing.assert_array_equal(safetensors.numpy.load(data)["w"], np.ones((2, 2)))
    n = struct.unpack_from("<Q", data)[0]
    meta = json.loads(data[8:8 + n])["__metadata__"]
    assert meta["format"] == "maskloop.thing" and meta["version"] == "1" and meta["k"] == "v"
    assert json.loads(meta["order"]) == ["w"] and int(meta["crc32"]) > 0


def test_what_cannot_be_stored_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'objs'"):
        container.encode("t", 1, {"objs": np.array([object()])})
    with pytest.raises(ValueError, match="'c'"):
        container.encode("t", 1, {"c": np.zeros(2, np.complex128)})
    with pytest.raises(ValueError, match="__metadata__"):
        container.encode("t", 1, {"__metadata__": np.zeros(2)})
    with pytest.raises(ValueError, match="reserved"):
        container.encode("t", 1, {}, {"crc32": "0"})
    with pytest.raises(ValueError, match="'objs'"):
        container.write_file(tmp_path / "f", "t", 1, {"objs": np.array([object()])})
    assert list(tmp_path.iterdir()) == []


def test_write_file_is_atomic_and_read_file_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.bin"
    container.write_file(path, "t", 1, {"a": np.arange(3)}, {"m": "1"})
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]  # no temporary file left
    got = container.read_file(path, "t", 1)
    assert got.meta == {"m": "1"}
    np.testing.assert_array_equal(got.arrays["a"], np.arange(3))


def _raw(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _meta(**extra: str) -> dict[str, str]:
    return {"format": "maskloop.t", "version": "1", "order": '["a"]', "crc32": "0", **extra}


GOOD = container.encode("t", 1, {"a": np.arange(16, dtype=np.uint8), "b": np.ones(3)})


@pytest.mark.parametrize("data, match", [
    (b"", "truncated"),
    (b"\x05", "truncated"),
    (GOOD[:20], "truncated \\(header\\)"),
    (GOOD[:-1], "truncated"),
    (GOOD + b"\0", "1 trailing bytes"),
    (b"XXXX" + GOOD[4:], "not a MaskLoop t"),
    (struct.pack("<Q", 10) + b"not json!!", "not a MaskLoop t"),
    (struct.pack("<Q", 1 << 62) + b"{}", "not a MaskLoop t"),
    (b"MLEMB\0\x01\0" + b"\x10\0\0\0{}" + b"\0" * 30, "not a MaskLoop t"),
    (_raw({"__metadata__": {"format": 1}}), "corrupt"),
    (safetensors.numpy.save({"a": np.zeros(2)}), "not a MaskLoop t \\(format None\\)"),
    (container.encode("other", 1, {}), "not a MaskLoop t \\(format 'maskloop.other'\\)"),
    (container.encode("t", 2, {}), "version 2, expected 1"),
    # shapes that claim more than their bytes: refused by safetensors, nothing allocated
    (_raw({"a": {"dtype": "F16", "shape": [1 << 40, 1 << 20], "data_offsets": [0, 8]},
           "__metadata__": _meta()}, b"\0" * 8), "corrupt"),
    (_raw({"a": {"dtype": "F64", "shape": [1 << 30], "data_offsets": [0, 8]},
           "__metadata__": _meta()}, b"\0" * 8), "corrupt"),
    (_raw({"a": {"dtype": "U8", "shape": [1 << 40], "data_offsets": [0, 1 << 40]},
           "__metadata__": _meta()}, b"\0" * 8), "truncated"),
    (_raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "__metadata__": _meta()}, b"\0" * 4), "corrupt"),
    (_raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "__metadata__": _meta(order='["a", "x"]')}, b"\0" * 4), "bad header"),
    (_raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "__metadata__": _meta(order="{")}, b"\0" * 4), "bad header"),
    (_raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "__metadata__": _meta(crc32="x")}, b"\0" * 4), "bad header"),
    (_raw({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
           "__metadata__": _meta(crc32="1")}, b"\0" * 4), "checksum"),
    (_raw({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
           "__metadata__": _meta()}, b"\0" * 4), "dtype BF16"),
])
def test_bad_bytes_say_what_is_wrong(data: bytes, match: str) -> None:
    with pytest.raises(ContainerError, match=match):
        container.decode(data, "t", 1)


def test_a_hostile_header_allocates_nothing_it_claims() -> None:
    """A header claiming a terabyte of shape, or a 99 MB header, in a few bytes."""
    hostile = [
        _raw({"a": {"dtype": "F16", "shape": [1 << 40], "data_offsets": [0, 1 << 41]},
              "__metadata__": _meta()}, b"\0" * 64),
        struct.pack("<Q", 99_000_000) + b"{}",
    ]
    tracemalloc.start()
    try:
        for data in hostile:
            with pytest.raises(ContainerError):
                container.decode(data, "t", 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_container_error_is_a_value_error() -> None:
    assert issubclass(ContainerError, ValueError)  # the cache treats both as "rebuild"
