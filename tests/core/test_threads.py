"""Issue 14, threads that survive a busy laptop: OpenMP waits passively (set before torch
starts), torch gets the cores available or $MASKLOOP_THREADS, never more."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.threads import THREADS_ENV, available_cores, passive_wait, worker_threads

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
