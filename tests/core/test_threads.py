"""Issue 14, threads that survive a busy laptop: OpenMP waits passively (set before torch
starts), torch gets the cores available or $MASKLOOP_THREADS, never more, and a click only
the cores other processes leave idle (read from /proc/stat files written here, and from the
real one with a real busy process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core.threads import (
    THREADS_ENV,
    CoreLoad,
    available_cores,
    click_threads,
    passive_wait,
    threads_override,
    worker_threads,
)

ROOT = Path(__file__).resolve().parents[2]
PROBE = ("import os, sys; {imports}; "
         "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")


def probe(imports: str, **env: str) -> str:
    """What a fresh interpreter sees after ``imports``: the wait policy, torch imported."""
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environ.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], env=environ,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("imports", [
    "import app.cli",
    "import app.__main__",
    "sys.path.insert(0, 'packaging'); import entry",  # the PyInstaller entry point
])
def test_entry_points_set_passive_waiting_before_torch_is_imported(imports: str) -> None:
    assert probe(imports) == "PASSIVE False"


def test_a_wait_policy_the_user_chose_is_kept() -> None:
    assert probe("import app.cli", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"


def test_passive_wait_sets_the_policy_only_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert passive_wait() and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert not passive_wait()
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert not passive_wait() and os.environ["OMP_WAIT_POLICY"] == "active"


def test_worker_threads_follow_the_cores_or_the_override() -> None:
    cores = available_cores()
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert worker_threads({}) == cores
    assert worker_threads({THREADS_ENV: "3"}) == 3
    assert worker_threads({THREADS_ENV: " 1 "}) == 1
    for bad in ("0", "-2", "many", ""):
        assert worker_threads({THREADS_ENV: bad}) == cores


def test_the_sam2_predictor_sets_torchs_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from app.predict.sam2.model import random_weight_sam2
    from app.predict.sam2.predictor import SAM2Predictor

    before = torch.get_num_threads()
    model = random_weight_sam2("tiny", "cpu")
    try:
        monkeypatch.setenv(THREADS_ENV, "1")
        SAM2Predictor.from_model(model, "random-tiny")
        assert torch.get_num_threads() == 1
        monkeypatch.delenv(THREADS_ENV)
        SAM2Predictor.from_model(model, "random-tiny")
        assert torch.get_num_threads() == available_cores()
    finally:
        torch.set_num_threads(before)


# -- the cores other processes leave idle (CoreLoad, click_threads) ---------------------------

STAT = ("cpu  {a} 0 {b} {c} 0 0 0 0 0 0\n"
        "cpu0 {u0} 0 0 {i0} 0 0 0 0 0 0\n"
        "cpu1 {u1} 0 0 {i1} 5 0 0 {s1} 0 0\n"
        "intr 1 2 3\n")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write_stat(path: Path, u0: int, i0: int, u1: int, i1: int, s1: int = 0) -> None:
    path.write_text(STAT.format(a=u0 + u1, b=0, c=i0 + i1, u0=u0, i0=i0, u1=u1, i1=i1, s1=s1))


def make_load(tmp_path: Path, cpus: tuple[int, ...] = (0, 1)
              ) -> tuple[CoreLoad, Path, Clock, list[float]]:
    stat = tmp_path / "stat"
    write_stat(stat, 1000, 9000, 1000, 9000)
    clock, own = Clock(), [0.0]
    load = CoreLoad(cpus, stat_path=str(stat), own_seconds=lambda: own[0], clock=clock)
    return load, stat, clock, own


def test_a_core_another_process_keeps_busy_is_not_free(tmp_path: Path) -> None:
    load, stat, clock, own = make_load(tmp_path)
    hz = os.sysconf("SC_CLK_TCK")
    assert load.free_cores() == 2 and load.samples == 1  # no window yet: every core
    write_stat(stat, 1000 + hz, 9000, 1000, 9000 + hz)  # 1 s: cpu0 busy, cpu1 idle
    clock.now += 1.0
    assert load.free_cores() == 1 and load.others == pytest.approx(1.0)
    # the next second this process itself kept cpu0 busy: nobody else did
    write_stat(stat, 1000 + 2 * hz, 9000, 1000, 9000 + 2 * hz)
    own[0] += 1.0
    clock.now += 1.0
    assert load.free_cores() == 2 and load.others == pytest.approx(0.0)
    # steal (time a hypervisor gave elsewhere) is busy too; iowait is idle
    write_stat(stat, 1000 + 2 * hz, 9000 + hz, 1000, 9000 + 2 * hz, s1=hz)
    clock.now += 1.0
    assert load.free_cores() == 1


def test_the_load_is_read_at_most_every_interval(tmp_path: Path) -> None:
    load, stat, clock, _ = make_load(tmp_path)
    hz = os.sysconf("SC_CLK_TCK")
    load.free_cores()
    write_stat(stat, 1000 + hz, 9000, 1000, 9000 + hz)  # cpu0 busy
    clock.now += load.interval / 2
    assert load.free_cores() == 2 and load.samples == 1  # not read again yet
    clock.now += load.interval
    assert load.free_cores() == 1 and load.samples == 2


def test_when_every_core_is_busy_every_core_is_used(tmp_path: Path) -> None:
    load, stat, clock, _ = make_load(tmp_path)
    hz = os.sysconf("SC_CLK_TCK")
    load.free_cores()
    write_stat(stat, 1000 + hz, 9000, 1000 + hz, 9000)  # others kept both cores busy
    clock.now += 1.0
    assert load.free_cores() == 2 and load.others == pytest.approx(2.0)


def test_only_the_cores_this_process_may_use_count(tmp_path: Path) -> None:
    load, stat, clock, _ = make_load(tmp_path, cpus=(1,))
    hz = os.sysconf("SC_CLK_TCK")
    load.free_cores()
    write_stat(stat, 1000 + hz, 9000, 1000, 9000 + hz)  # only cpu0, not ours, was busy
    clock.now += 1.0
    assert load.free_cores() == 1 and load.others == pytest.approx(0.0)


def test_without_proc_stat_every_core_is_free(tmp_path: Path) -> None:
    load = CoreLoad((0, 1, 2), stat_path=str(tmp_path / "missing"), clock=Clock())
    assert load.free_cores() == 3


def test_click_threads_follow_the_idle_cores_unless_overridden() -> None:
    assert click_threads({THREADS_ENV: "3"}) == 3
    assert 1 <= click_threads({}) <= available_cores()
    assert threads_override({THREADS_ENV: "2"}) == 2 and threads_override({}) is None


@pytest.mark.skipif(not Path("/proc/stat").is_file() or available_cores() < 2,
                    reason="the busy neighbour is found in Linux's /proc/stat, and on one "
                           "core there is no idle core to tell apart")
def test_a_real_busy_neighbour_takes_a_core() -> None:
    load = CoreLoad(interval=0.0)
    load.free_cores()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        load.free_cores()  # the window starts with the neighbour running
        busy_until = time.monotonic() + 1.0
        while time.monotonic() < busy_until:
            time.sleep(0.05)
        assert 1 <= load.free_cores() <= available_cores()
        assert load.others >= 0.5  # (more where other programs run too)
    finally:
        busy.kill()
        busy.wait()
