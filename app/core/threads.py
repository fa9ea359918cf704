"""How many CPU threads torch's work gets, and how they wait (no torch here: this runs first).

torch's OpenMP threads spin while they wait for each other by default, so one busy neighbour
process makes two threads far slower than one (issue 14: a decode took 812 ms instead of
111 ms). ``passive_wait`` asks OpenMP to sleep instead; it only works when set before torch
(OpenMP) starts, so the entry points call it before anything imports torch.
"""

from __future__ import annotations

import os

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
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def worker_threads(environ: dict[str, str] | None = None) -> int:
    """torch's intra-op thread count for the prediction worker: $MASKLOOP_THREADS when it is
    a positive integer, else every available core (never more: oversubscribed threads wait
    for each other)."""
    env = os.environ if environ is None else environ
    raw = env.get(THREADS_ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value > 0:
            return value
    return available_cores()
