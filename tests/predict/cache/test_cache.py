"""The embedding cache: memory LRU by bytes, disk files, corruption handling, threads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy

from app.core.types import EmbeddingKey
from app.predict.cache.file_format import (
    FORMAT_VERSION,
    KIND,
    SUFFIX,
    Embedding,
    read_embedding,
    write_embedding,
)
from app.predict.cache.store import EmbeddingCache, default_cache_dir


def make_embedding(seed: int = 0, side: int = 16) -> Embedding:
    """A small SAM2-shaped embedding (three float16 arrays) with recognisable values."""
    rng = np.random.default_rng(seed)
    return Embedding(
        {
            "image_embed": rng.standard_normal((1, 8, side, side)).astype(np.float16),
            "high_res_feats_0": rng.standard_normal((1, 2, 4 * side, 4 * side)).astype(np.float16),
            "high_res_feats_1": rng.standard_normal((1, 4, 2 * side, 2 * side)).astype(np.float16),
        },
        image_size=(30 + seed, 40 + seed),
    )


def assert_same(a: Embedding, b: Embedding) -> None:
    assert a.image_size == b.image_size
    assert list(a.arrays) == list(b.arrays)
    for name in a.arrays:
        assert a.arrays[name].dtype == b.arrays[name].dtype
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])


KEY = EmbeddingKey("ab" * 32, "sam2.1_hiera_tiny")


def test_embedding_nbytes() -> None:
    emb = make_embedding()
    assert emb.nbytes == 2 * (8 * 16 * 16 + 2 * 64 * 64 + 4 * 32 * 32)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASKLOOP_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert EmbeddingCache().disk_dir == tmp_path / "c"
    monkeypatch.delenv("MASKLOOP_CACHE_DIR")
    assert default_cache_dir().name == "embeddings"
    assert "maskloop" in str(default_cache_dir())
    assert EmbeddingCache(disk_dir=None).disk_dir is None


def test_memory_only_cache_hits_and_misses() -> None:
    cache = EmbeddingCache(disk_dir=None)
    assert cache.get(KEY) is None
    emb = make_embedding()
    cache.put(KEY, emb)
    assert cache.get(KEY) is emb
    assert cache.contains(KEY) and KEY in cache and cache.in_memory(KEY)
    assert not cache.on_disk(KEY) and cache.path_for(KEY) is None
    s = cache.stats
    assert (s.memory_hits, s.disk_hits, s.misses, s.hits) == (1, 0, 1, 1)
    assert (s.entries, s.memory_bytes) == (1, emb.nbytes)


def test_memory_lru_is_bounded_by_bytes() -> None:
    size = make_embedding().nbytes
    cache = EmbeddingCache(memory_bytes=int(2.5 * size), disk_dir=None)
    keys = [EmbeddingKey(f"h{i}", "m") for i in range(4)]
    cache.put(keys[0], make_embedding(0))
    cache.put(keys[1], make_embedding(1))
    assert cache.get(keys[0]) is not None  # keys[0] is now the most recently used
    cache.put(keys[2], make_embedding(2))  # evicts keys[1], the least recently used
    assert cache.in_memory(keys[0]) and cache.in_memory(keys[2])
    assert not cache.in_memory(keys[1])
    s = cache.stats
    assert s.entries == 2 and s.memory_bytes == 2 * size and s.evictions == 1
    cache.put(keys[2], make_embedding(2))  # replacing does not double count
    assert cache.stats.memory_bytes == 2 * size
    cache.evict(keys[0])
    assert cache.stats.memory_bytes == size and not cache.in_memory(keys[0])
    cache.clear()
    assert cache.stats.entries == 0 and cache.stats.memory_bytes == 0


def test_embedding_larger_than_budget_goes_to_disk_only(tmp_path: Path) -> None:
    cache = EmbeddingCache(memory_bytes=100, disk_dir=tmp_path)
    cache.put(KEY, make_embedding())
    assert not cache.in_memory(KEY) and cache.on_disk(KEY)
    assert_same(cache.get(KEY), make_embedding())
    assert cache.stats.disk_hits == 1


def test_disk_round_trip_and_promotion(tmp_path: Path) -> None:
    emb = make_embedding(3)
    EmbeddingCache(disk_dir=tmp_path).put(KEY, emb)
    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == [KEY.filename() + SUFFIX]  # no temporary left over

    fresh = EmbeddingCache(disk_dir=tmp_path)  # a new cache sees the file
    assert fresh.on_disk(KEY) and not fresh.in_memory(KEY) and fresh.contains(KEY)
    got = fresh.get(KEY)
    assert got is not None
    assert_same(got, emb)
    assert all(a.flags.writeable for a in got.arrays.values())
    assert fresh.in_memory(KEY)  # promoted
    assert fresh.get(KEY) is got
    s = fresh.stats
    assert (s.disk_hits, s.memory_hits, s.misses) == (1, 1, 0)


def test_file_records_version_and_key(tmp_path: Path) -> None:
    path = tmp_path / "e.mlemb"
    write_embedding(path, KEY, make_embedding())
    with safetensors.safe_open(path, framework="numpy") as f:  # any safetensors reader
        meta = f.metadata()
        assert set(f.keys()) == set(make_embedding().arrays)
    assert meta["format"] == "maskloop." + KIND and meta["version"] == str(FORMAT_VERSION)
    assert (meta["model_id"], meta["image_hash"]) == (KEY.model_id, KEY.image_hash)
    assert meta["image_size"] == "30,40"
    other = EmbeddingKey(KEY.image_hash, "sam2.1_hiera_large")
    with pytest.raises(ValueError, match="not"):
        read_embedding(path, other)
    assert_same(read_embedding(path), make_embedding())


def test_empty_and_odd_arrays_round_trip(tmp_path: Path) -> None:
    emb = Embedding(
        {"empty": np.zeros((0, 3), np.float16), "odd": np.arange(7, dtype=np.float16),
         "f32": np.ones((2, 3), np.float32), "strided": np.eye(5, dtype=np.float16)[:, ::2]},
        (5, 7),
    )
    write_embedding(tmp_path / "x.mlemb", KEY, emb)
    assert_same(read_embedding(tmp_path / "x.mlemb", KEY), emb)


def test_read_arrays_are_writable_and_in_order(tmp_path: Path) -> None:
    """torch.from_numpy wants writable arrays; the order is the written one, not sorted."""
    path = tmp_path / ("e" + SUFFIX)
    emb = make_embedding()
    emb.arrays = dict(reversed(emb.arrays.items()))
    write_embedding(path, KEY, emb)
    got = read_embedding(path, KEY)
    assert list(got.arrays) == list(emb.arrays)
    assert all(a.flags.writeable for a in got.arrays.values())


def corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])


def corrupt_flip_payload(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


def corrupt_version(path: Path) -> None:
    with safetensors.safe_open(path, framework="numpy") as f:
        meta = f.metadata()
        names = f.keys()  # a safe_open is not iterable
        arrays = {k: f.get_tensor(k) for k in names}
    meta["version"] = str(FORMAT_VERSION + 1)
    path.write_bytes(safetensors.numpy.save(arrays, metadata=meta))


def corrupt_old_format(path: Path) -> None:
    """A file of format version 1 (the hand-written "MLEMB" format) reads as a miss."""
    header = b'{"model_id": "sam2.1_hiera_tiny", "payload_bytes": 64, "arrays": []}'
    path.write_bytes(b"MLEMB\0" + (1).to_bytes(2, "little") + len(header).to_bytes(4, "little")
                     + header + b"\0" * 64)


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(b"this is not an embedding")


def corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def corrupt_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[13] = ord("!")  # inside the JSON header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("corrupt, match", [
    (corrupt_truncate, "truncated"), (corrupt_flip_payload, "checksum"),
    (corrupt_version, f"version {FORMAT_VERSION + 1}, expected {FORMAT_VERSION}"),
    (corrupt_garbage, "not a MaskLoop embedding"), (corrupt_empty, "truncated"),
    (corrupt_header, "corrupt"), (corrupt_old_format, "not a MaskLoop embedding"),
])
def test_read_embedding_says_what_is_wrong(tmp_path: Path, corrupt, match: str) -> None:
    path = tmp_path / ("e" + SUFFIX)
    write_embedding(path, KEY, make_embedding())
    corrupt(path)
    with pytest.raises(ValueError, match=match):
        read_embedding(path, KEY)


@pytest.mark.parametrize(
    "corrupt",
    [corrupt_truncate, corrupt_flip_payload, corrupt_version, corrupt_garbage, corrupt_empty,
     corrupt_header, corrupt_old_format],
)
def test_corrupt_file_is_ignored_deleted_and_rebuilt(tmp_path: Path, caplog, corrupt) -> None:
    emb = make_embedding(5)
    EmbeddingCache(disk_dir=tmp_path).put(KEY, emb)
    path = tmp_path / (KEY.filename() + SUFFIX)
    corrupt(path)

    cache = EmbeddingCache(disk_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="app.predict.cache.store"):
        assert cache.get(KEY) is None
    assert str(path) in caplog.text and "rebuilt" in caplog.text
    assert not path.exists()
    s = cache.stats
    assert (s.misses, s.disk_errors, s.disk_hits) == (1, 1, 0)

    cache.put(KEY, emb)  # the next encode rebuilds it
    assert_same(EmbeddingCache(disk_dir=tmp_path).get(KEY), emb)


def test_file_of_another_key_is_not_used(tmp_path: Path) -> None:
    """A file renamed or copied onto another key's name is rejected, not mixed up."""
    other = EmbeddingKey("cd" * 32, KEY.model_id)
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(other, make_embedding(1))
    os.replace(cache.path_for(other), cache.path_for(KEY))
    assert EmbeddingCache(disk_dir=tmp_path).get(KEY) is None


def test_models_do_not_share_files(tmp_path: Path) -> None:
    cache = EmbeddingCache(disk_dir=tmp_path)
    tiny = EmbeddingKey("ab" * 32, "sam2.1_hiera_tiny")
    large = EmbeddingKey("ab" * 32, "sam2.1_hiera_large")
    cache.put(tiny, make_embedding(1))
    cache.put(large, make_embedding(2))
    fresh = EmbeddingCache(disk_dir=tmp_path)
    assert_same(fresh.get(tiny), make_embedding(1))
    assert_same(fresh.get(large), make_embedding(2))


def test_disk_limit_evicts_least_recently_used(tmp_path: Path) -> None:
    cache = EmbeddingCache(disk_dir=tmp_path)
    keys = [EmbeddingKey(f"{i:064x}", "m") for i in range(3)]
    for i, key in enumerate(keys):
        cache.put(key, make_embedding(i))
        os.utime(cache.path_for(key), (1000 + i, 1000 + i))  # deterministic ages
    file_size = cache.path_for(keys[0]).stat().st_size
    fresh = EmbeddingCache(disk_dir=tmp_path, disk_bytes=3 * file_size)
    assert fresh.get(keys[0]) is not None  # a disk hit makes keys[0] the most recent
    fresh.put(EmbeddingKey(f"{9:064x}", "m"), make_embedding(9))  # over the limit by one file
    assert fresh.on_disk(keys[0]) and not fresh.on_disk(keys[1]) and fresh.on_disk(keys[2])
    assert fresh.disk_usage() <= 3 * file_size
    assert fresh.trim_disk(0) == 3 and fresh.disk_usage() == 0


def test_temporary_files_of_killed_writers_are_cleaned(tmp_path: Path) -> None:
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(KEY, make_embedding())
    old = tmp_path / (KEY.filename() + SUFFIX + ".abc123.tmp")
    fresh = tmp_path / (KEY.filename() + SUFFIX + ".def456.tmp")
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    os.utime(old, (1000, 1000))
    assert cache.trim_disk(10**9) == 0  # under the limit: no embedding deleted
    assert not old.exists() and fresh.exists() and cache.on_disk(KEY)
    assert cache.disk_usage() == cache.path_for(KEY).stat().st_size
    cache.clear(disk=True)
    assert list(tmp_path.iterdir()) == []


def test_clear_and_evict_disk(tmp_path: Path) -> None:
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(KEY, make_embedding())
    cache.evict(KEY, disk=True)
    assert not cache.contains(KEY)
    cache.put(KEY, make_embedding())
    cache.clear(disk=True)
    assert not cache.contains(KEY) and list(tmp_path.iterdir()) == []


def test_unwritable_disk_dir_is_reported_not_raised(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    cache = EmbeddingCache(disk_dir=blocker / "embeddings")
    with caplog.at_level(logging.WARNING, logger="app.predict.cache.store"):
        cache.put(KEY, make_embedding())
    assert cache.in_memory(KEY) and cache.stats.disk_errors == 1
    assert "could not write" in caplog.text


def test_non_numeric_arrays_are_refused(tmp_path: Path) -> None:
    """Object arrays would write pointers: refused, and the previous file stays whole."""
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(KEY, make_embedding(1))
    before = cache.path_for(KEY).read_bytes()
    bad = Embedding({"ok": np.zeros(8, np.float16), "objects": np.array([object()] * 3)}, (1, 1))
    with pytest.raises(ValueError, match="objects"):
        write_embedding(cache.path_for(KEY), KEY, bad)
    assert [p.name for p in tmp_path.iterdir()] == [KEY.filename() + SUFFIX]
    assert cache.path_for(KEY).read_bytes() == before


def test_threads_share_the_cache(tmp_path: Path) -> None:
    """Writers and readers on several threads: every read sees a whole embedding."""
    size = make_embedding().nbytes
    cache = EmbeddingCache(memory_bytes=3 * size, disk_dir=tmp_path)
    keys = [EmbeddingKey(f"{i:064x}", "m") for i in range(6)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            for round_ in range(5):
                for i, key in enumerate(keys):
                    if (i + offset + round_) % 2:
                        cache.put(key, make_embedding(i))
                    else:
                        got = cache.get(key)
                        if got is not None:
                            assert_same(got, make_embedding(i))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = cache.stats
    assert s.memory_bytes <= 3 * size and s.disk_errors == 0
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(SUFFIX)]


def test_new_process_reads_the_disk_cache(tmp_path: Path) -> None:
    emb = make_embedding(7)
    EmbeddingCache(disk_dir=tmp_path).put(KEY, emb)
    code = (
        "import sys, numpy as np\n"
        "from app.core.types import EmbeddingKey\n"
        "from app.predict.cache.store import EmbeddingCache\n"
        f"emb = EmbeddingCache().get(EmbeddingKey({KEY.image_hash!r}, {KEY.model_id!r}))\n"
        "print(emb.image_size, float(emb.arrays['image_embed'].astype(np.float32).sum()))\n"
    )
    env = {**os.environ, "MASKLOOP_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[3]).stdout.split(")")
    expected = float(emb.arrays["image_embed"].astype(np.float32).sum())
    assert out[0] + ")" == str(emb.image_size)
    assert float(out[1]) == pytest.approx(expected, rel=1e-6)


def test_sam2_sized_disk_hit_reads_one_file(tmp_path: Path) -> None:
    """A full SAM2 embedding (8 MiB float16) survives the round trip with little overhead."""
    rng = np.random.default_rng(0)
    emb = Embedding(
        {"image_embed": rng.standard_normal((1, 256, 64, 64)).astype(np.float16),
         "high_res_feats_0": rng.standard_normal((1, 32, 256, 256)).astype(np.float16),
         "high_res_feats_1": rng.standard_normal((1, 64, 128, 128)).astype(np.float16)},
        (480, 640),
    )
    assert emb.nbytes <= 8 * 2**20
    cache = EmbeddingCache(disk_dir=tmp_path)
    cache.put(KEY, emb)
    assert cache.path_for(KEY).stat().st_size < emb.nbytes + 4096
    got = EmbeddingCache(disk_dir=tmp_path).get(KEY)
    assert got is not None
    assert_same(got, emb)
