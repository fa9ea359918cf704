"""The floor under the runtimes' figures: SAM2's operations counted, this CPU's GEMM peak
measured, and ``maskloop bench --runtimes`` reporting both."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from app.bench.roofline import _flop_counter, count_flops, floor_ms, gemm_peak_gflops
from app.bench.runtimes import format_runtime_report
from app.cli import main


def test_cpu_attention_counts_as_the_products_it_replaces() -> None:
    # torch's counter skips the CPU attention kernel; ours counts it as q @ k^T and a @ v
    q, k, v = (torch.randn(1, 2, 300, 48) for _ in range(3))
    with torch.no_grad():
        plain = FlopCounterMode(display=False)
        with plain:
            F.scaled_dot_product_attention(q, k, v)
        ours = _flop_counter()
        with ours:
            F.scaled_dot_product_attention(q, k, v)
        by_hand = FlopCounterMode(display=False)
        with by_hand:
            torch.softmax(q @ k.transpose(-2, -1) / 48 ** 0.5, dim=-1) @ v
    assert plain.get_total_flops() == 0
    assert ours.get_total_flops() == by_hand.get_total_flops() == 2 * 2 * (2 * 300 * 300 * 48)


def test_sam2_tiny_operations() -> None:
    from app.predict.sam2.model import random_weight_sam2

    model = random_weight_sam2("tiny", "cpu")
    flops = count_flops(model)
    linear_only = FlopCounterMode(display=False)
    with torch.no_grad(), linear_only:
        model.image_encoder(torch.zeros((1, 3, 1024, 1024)))
    # the encoder's global attention (3 blocks over 64 x 64 tokens) is a quarter of its work
    assert flops.encode > 1.25 * linear_only.get_total_flops() / 1e9
    # one click decodes a few GFLOP, far less than an encode, and more than its image part
    assert 0 < flops.decoder_image < flops.click < flops.encode / 50


def test_gemm_peak_and_floor() -> None:
    rates = gemm_peak_gflops(1, seconds=0.2)
    assert rates["peak"] == max(v for k, v in rates.items() if k != "peak") > 0
    assert floor_ms(3.0, 100.0) == 30.0


@pytest.mark.slow
def test_runtime_bench_reports_the_floor(capsys) -> None:
    code = main(["bench", "--runtimes", "--json", "--runtime-threads", "1",
                 "--runtime-encodes", "1", "--runtime-decodes", "2"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    floor = result["floor"]["1"]
    assert floor["gemm_gflops"] > 0 and set(result["gflop"]) == {"encode", "decoder_image",
                                                                  "click"}
    # each runtime's rate and the floor, as ratios to torch (no timing is asserted: the
    # machine is shared; the floor is arithmetic over a measured rate)
    for row in result["rows"]:
        assert row["encode_gflops"] > 0 and row["decode_gflops"] > 0
    assert floor["encode_floor_ms"] == floor_ms(result["gflop"]["encode"], floor["gemm_gflops"])
    assert floor["encode_floor_vs_torch"] > 0 and floor["decode_floor_vs_torch"] > 0
    assert "floor x1" in format_runtime_report(result)
