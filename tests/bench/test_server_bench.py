"""``maskloop bench --server-load`` runs, bounded, against a real ``maskloop serve`` and
prints the figures as JSON (a smoke test: the figures themselves come from real runs)."""

from __future__ import annotations

import json

import pytest

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
    assert result["click_p95_with_encoders_over_alone"] is not None
