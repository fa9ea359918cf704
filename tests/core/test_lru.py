"""BoundedCache (app/core/lru.py): the app's one LRU, by count or by bytes."""

from __future__ import annotations

import threading

import pytest

from app.core.lru import BoundedCache


def _nbytes(key: str, value: bytes) -> int:
    return len(key) + len(value)


def test_by_count_evicts_the_least_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for i, key in enumerate("abcd"):
        assert cache.put(key, i)
    assert len(cache) == 3 and "a" not in cache
    assert [k for k, _ in cache.items()] == ["b", "c", "d"]
    assert cache.get("a") is None and cache.get("d") == 3
    assert cache.nbytes == 0 and not cache.by_bytes


def test_get_refreshes_recency() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent: "b" goes first
    cache.put("c", 3)
    assert cache.contains("a") and not cache.contains("b") and cache.contains("c")
    assert [k for k, _ in cache.items()] == ["a", "c"]


def test_contains_does_not_refresh_recency() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache
    cache.put("c", 3)
    assert "a" not in cache and "b" in cache


def test_put_again_replaces_and_refreshes() -> None:
    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.items() == [("a", 10), ("c", 3)] and len(cache) == 2


def test_by_bytes_evicts_down_to_the_bound() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(1000, _nbytes)
    for i in range(20):
        cache.put(f"k{i:02d}", b"x" * 97)  # 100 bytes each
    assert cache.by_bytes and cache.nbytes == 1000 and len(cache) == 10
    assert [k for k, _ in cache.items()] == [f"k{i:02d}" for i in range(10, 20)]
    cache.put("big", b"x" * 497)  # 500 bytes: five entries make room
    assert cache.nbytes == 1000 and len(cache) == 6 and "k14" not in cache and "k15" in cache


def test_by_bytes_replacing_a_value_counts_its_new_size() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(100, _nbytes)
    cache.put("a", b"x" * 9)
    cache.put("b", b"x" * 9)
    cache.put("a", b"x" * 49)
    assert cache.nbytes == 60 and cache.items() == [("b", b"x" * 9), ("a", b"x" * 49)]
    cache.put("a", b"x" * 9)
    assert cache.nbytes == 20


def test_an_item_larger_than_the_bound_is_not_kept() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(100, _nbytes)
    cache.put("a", b"x" * 9)
    cache.put("huge", b"x" * 10)
    assert not cache.put("huge", b"x" * 500)  # forgets the old value too, keeps the rest
    assert cache.get("huge") is None and cache.get("a") == b"x" * 9 and cache.nbytes == 10
    assert cache.put("exact", b"x" * 95) and cache.nbytes == 100 and list(cache.items()) == [
        ("exact", b"x" * 95)]


def test_a_cache_of_zero_entries_keeps_nothing() -> None:
    cache: BoundedCache[str, int] = BoundedCache(0)
    assert not cache.put("a", 1) and len(cache) == 0


def test_pop_and_clear() -> None:
    cache: BoundedCache[str, bytes] = BoundedCache(100, _nbytes)
    cache.put("a", b"xx")
    cache.put("b", b"yyy")
    assert cache.pop("a") == b"xx" and cache.pop("a") is None
    assert cache.nbytes == 4 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.items() == []


def test_negative_size_is_an_error() -> None:
    cache: BoundedCache[str, int] = BoundedCache(10, lambda k, v: v)
    with pytest.raises(ValueError):
        cache.put("a", -1)


def test_on_evict_sees_only_entries_dropped_to_make_room() -> None:
    evicted: list[tuple[str, bytes]] = []
    cache: BoundedCache[str, bytes] = BoundedCache(
        30, _nbytes, on_evict=lambda k, v: evicted.append((k, v)))
    cache.put("a", b"1" * 9)
    cache.put("b", b"2" * 9)
    cache.put("c", b"3" * 9)
    cache.get("a")
    cache.put("a", b"4" * 9)  # a replaced value is not an eviction
    cache.pop("c")  # nor a pop
    cache.put("d", b"5" * 28)  # 29 bytes: "b" (least recent) then "a" make room
    assert evicted == [("b", b"2" * 9), ("a", b"4" * 9)]
    cache.put("huge", b"x" * 100)  # not kept: evicts nothing
    cache.clear()  # nor a clear
    assert evicted == [("b", b"2" * 9), ("a", b"4" * 9)]


def test_resize_keeps_the_most_recent_that_fit() -> None:
    evicted: list[str] = []
    cache: BoundedCache[str, int] = BoundedCache(4, on_evict=lambda k, v: evicted.append(k))
    for i, key in enumerate("abcd"):
        cache.put(key, i)
    cache.get("a")
    cache.resize(2)  # "b" and "c" were the least recent
    assert cache.maxsize == 2 and evicted == ["b", "c"]
    assert [k for k, _ in cache.items()] == ["d", "a"]
    cache.resize(3)  # growing drops nothing and makes room
    cache.put("e", 4)
    assert [k for k, _ in cache.items()] == ["d", "a", "e"] and evicted == ["b", "c"]
    sized: BoundedCache[str, bytes] = BoundedCache(30, _nbytes)
    sized.put("x", b"1" * 19)
    sized.put("y", b"2" * 4)
    sized.resize(10)  # "x" (20 bytes) no longer fits alone
    assert [k for k, _ in sized.items()] == ["y"] and sized.nbytes == 5


def test_on_evict_may_use_the_cache() -> None:
    """The callback runs after the lock is released: it may look at the cache."""
    seen: list[int] = []
    cache: BoundedCache[int, int] = BoundedCache(
        2, on_evict=lambda k, v: seen.append(len(cache)))  # would deadlock under the lock
    for i in range(4):
        cache.put(i, i)
    assert seen == [2, 2]


def test_threads_keep_the_bound() -> None:
    cache: BoundedCache[int, bytes] = BoundedCache(10_000, lambda k, v: len(v))

    def work(base: int) -> None:
        for i in range(2000):
            cache.put(base + i, b"x" * 100)
            cache.get(base + i // 2)

    threads = [threading.Thread(target=work, args=(n * 10_000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == sum(len(v) for _, v in cache.items()) <= 10_000
    assert len(cache) == 100
