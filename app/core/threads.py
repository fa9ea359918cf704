"""How many CPU threads torch's work gets, and how they wait (no torch here: this runs first).

torch's OpenMP threads spin while they wait for each other by default, so one busy neighbour
process makes two threads far slower than one (issue 14: a decode took 812 ms instead of
111 ms). ``passive_wait`` asks OpenMP to sleep instead; it only works when set before torch
(OpenMP) starts, so the entry points call it before anything imports torch.

Even waiting passively, a thread that shares its core with a busy process makes the others
wait for it at every operator: ``click_threads`` gives a click only the cores that other
processes left idle lately (``CoreLoad``: deltas of /proc/stat's per-CPU counters minus this
process's own CPU time, sampled at most every ``LOAD_INTERVAL`` s, never waited for).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

THREADS_ENV = "MASKLOOP_THREADS"  # overrides the thread count chosen from the cores
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy; True if it was set now.
    Call it before torch is imported (it has no effect afterwards)."""
    if os.environ.get(WAIT_POLICY_ENV):
        return False
    os.environ[WAIT_POLICY_ENV] = "PASSIVE"
    return True


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return max(1, len(_affinity()))


def threads_override(environ: dict[str, str] | None = None) -> int | None:
    """$MASKLOOP_THREADS when it is a positive integer, else None."""
    env = os.environ if environ is None else environ
    raw = env.get(THREADS_ENV, "").strip()
    try:
        value = int(raw) if raw else 0
    except ValueError:
        value = 0
    return value if value > 0 else None


def worker_threads(environ: dict[str, str] | None = None) -> int:
    """torch's intra-op thread count for the prediction worker: $MASKLOOP_THREADS when it is
    a positive integer, else every available core (never more: oversubscribed threads wait
    for each other)."""
    override = threads_override(environ)
    return available_cores() if override is None else override


def click_threads(environ: dict[str, str] | None = None) -> int:
    """The threads a click should run on now: $MASKLOOP_THREADS when set (it always wins),
    else the available cores that other processes left idle lately (``CoreLoad``)."""
    override = threads_override(environ)
    return core_load().free_cores() if override is None else override


LOAD_INTERVAL = 0.5  # s: CoreLoad reads /proc/stat at most this often
STAT_PATH = "/proc/stat"


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _affinity() -> list[int]:
    """The CPU numbers this process may run on (all of them where the OS has no affinity)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return sorted(affinity(0))
        except OSError:
            pass
    return list(range(os.cpu_count() or 1))


class CoreLoad:
    """How many of ``cpus`` other processes left idle since the previous sample.

    A sample reads the per-CPU lines of ``stat_path`` (Linux's /proc/stat: jiffies per state)
    for ``cpus`` and this process's CPU time (``own_seconds``); between two samples the
    others' share is the busy time (all but idle and iowait; steal counts as busy) minus this
    process's, in cores; a core counts as taken when others used at least half of it. The
    free cores are those not taken; when every core is taken, all of them (threads on cores
    shared alike keep pace with each other; it is a thread on a busy core among idle ones
    that the others wait for).
    ``free_cores`` samples at most every ``interval`` s and never waits: within the interval,
    while another thread samples, or where there is no /proc/stat it answers the last figure
    (every core before a first window). Thread-safe."""

    def __init__(self, cpus: Iterable[int] | None = None, *, stat_path: str = STAT_PATH,
                 interval: float = LOAD_INTERVAL,
                 own_seconds: Callable[[], float] = _own_cpu_seconds,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cpus = {f"cpu{c}" for c in (_affinity() if cpus is None else cpus)}
        self.stat_path = stat_path
        self.interval = interval
        self._own_seconds = own_seconds
        self._clock = clock
        self._hz = _clock_ticks()
        self._lock = threading.Lock()
        self._last: tuple[float, int, int, float] | None = None  # clock, busy, all, own
        self._free = len(self.cpus)
        self.samples = 0  # /proc/stat reads (tests count them)
        self.others = 0.0  # the others' cores in the last window

    def free_cores(self) -> int:
        last = self._last
        if last is not None and self._clock() - last[0] < self.interval:
            return self._free
        if not self._lock.acquire(blocking=False):
            return self._free
        try:
            self._sample()
        finally:
            self._lock.release()
        return self._free

    def _sample(self) -> None:
        now = self._clock()
        last = self._last
        if last is not None and now - last[0] < self.interval:
            return  # another thread sampled meanwhile
        ticks = self._read()
        own = self._own_seconds()
        self.samples += 1
        if ticks is None:
            self._last = (now, 0, 0, own)
            return
        busy, total = ticks
        self._last = (now, busy, total, own)
        if last is None or total <= last[2]:
            return
        n = len(self.cpus)
        window = (total - last[2]) / self._hz / n  # seconds each CPU was counted
        others = ((busy - last[1]) / self._hz - (own - last[3])) / window
        self.others = max(0.0, others)
        taken = int(self.others + 0.5)
        # every core shared alike: all threads (they keep pace, and get more of the CPU)
        self._free = n - taken if taken < n else n

    def _read(self) -> tuple[int, int] | None:
        """(busy, all) jiffies of ``cpus`` summed; None without a readable /proc/stat."""
        try:
            with open(self.stat_path, encoding="ascii") as f:
                lines = f.readlines()
        except (OSError, ValueError):
            return None
        busy = total = 0
        found = 0
        for line in lines:
            fields = line.split()
            if not fields or fields[0] not in self.cpus:
                continue
            try:  # user nice system idle iowait irq softirq steal (guest is in user)
                values = [int(v) for v in fields[1:9]]
            except ValueError:
                return None
            found += 1
            all_ = sum(values)
            total += all_
            busy += all_ - sum(values[3:5])
        return (busy, total) if found else None


def _clock_ticks() -> int:
    try:
        return int(os.sysconf("SC_CLK_TCK")) or 100
    except (AttributeError, ValueError, OSError):
        return 100


_load: CoreLoad | None = None
_load_lock = threading.Lock()


def core_load() -> CoreLoad:
    """The process's one ``CoreLoad`` over the cores it may use."""
    global _load
    if _load is None:
        with _load_lock:
            if _load is None:
                _load = CoreLoad()
    return _load
