"""``maskloop bench --server-load`` runs, bounded, against a real ``maskloop serve`` and
prints the figures as JSON (a smoke test: the figures themselves come from real runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from app.bench.server_load import process_cpu_s
from app.cli import main


@pytest.mark.slow  # a server start and one SAM2 encode on a CPU
def test_server_load_bench_prints_its_figures(capsys) -> None:
    code = main(["bench", "--server-load", "--clickers", "2", "--encoders", "1", "--crowd", "3",
                 "--load-images", "1", "--duration", "1", "--image-size", "64x48", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    phases = result["phases"]
    assert set(phases) == {"clickers", "clickers_encoders", "crowd"}
    for phase in phases.values():
        assert phase["clicks"] > 0 and not phase["click_errors"]
        assert phase["healthz_ms"]["n"] > 0 and not phase["healthz_errors"]
    assert "encode_ms" in phases["clickers_encoders"]
    if sys.platform == "linux":  # the CPU per click is read from /proc
        for phase in phases.values():
            assert phase["server_cpu_ms_per_click"] > 0
            assert phase["client_cpu_ms_per_click"] > 0
    assert result["click_p95_with_encoders_over_alone"] is not None
    floor = result["floor"]  # SAM2.1 tiny's decoder at this CPU's GEMM peak
    assert 0 < floor["decoder_image_gflop"] < floor["click_gflop"]
    assert floor["clicks_per_s_at_peak"] == pytest.approx(
        floor["gemm_gflops_all_cores"] / floor["click_gflop"], rel=0.01)


@pytest.mark.skipif(sys.platform != "linux",
                    reason="a process's CPU time is read from Linux's /proc; elsewhere the "
                           "bench reports none")
def test_process_cpu_counts_a_busy_child_and_nothing_for_a_gone_one() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        first = process_cpu_s(child.pid)
        assert first is not None
        later = first
        deadline = time.monotonic() + 60  # a busy loop gets some CPU, even on a busy machine
        while later == first and time.monotonic() < deadline:
            time.sleep(0.05)
            later = process_cpu_s(child.pid)
        assert later is not None and later > first
    finally:
        child.kill()
        child.wait()
    assert process_cpu_s(child.pid) is None  # reaped: no /proc entry
    assert process_cpu_s(None) is None
    assert process_cpu_s(os.getpid()) is not None
