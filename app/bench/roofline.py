"""The least time SAM2's arithmetic can take on this CPU: the floor under a runtime's figures.

A runtime can only reorder, fuse and vectorise SAM2's arithmetic; it cannot do less of it and
stay within the output tolerance. So the floating-point operations of an encode and of a
click, divided by the fastest rate this CPU multiplies fp32 matrices at (its sgemm peak,
measured here with the best kernel installed: torch's and ONNX Runtime's), give the shortest
encode and decode any fp32 runtime can reach. ``maskloop bench --runtimes`` and
``--server-load`` report it beside their figures, so a goal out of this CPU's reach is shown
to be, with numbers anyone can re-measure.

The operations are counted by torch's ``FlopCounterMode`` (2 per multiply-add, as the GEMM
rate is counted) while the model runs its own modules; on a CPU torch dispatches attention to
an op the counter does not list, so it is counted here with torch's own formula. Counting
needs the model and runs it once (about a second for SAM2.1 tiny).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# an (M x K) @ (K x N) product of the size that dominates SAM2's encoder (Hiera's stage-3
# projections: 4096 tokens x 384 channels -> 3 x 384) and, as much, its decoder
GEMM_SHAPE = (4096, 384, 1152)


@dataclass(frozen=True)
class ModelFlops:
    """GFLOP (1e9 floating-point operations) of one image's encode, of the decoder's part
    computed once per image, and of one click (one point, the image part given)."""

    encode: float
    decoder_image: float
    click: float


def _flop_counter() -> Any:
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def cpu_attention(query: Any, key: Any, value: Any, *_args: Any, out_shape: Any = None,
                      **_kwargs: Any) -> int:
        return int(sdpa_flop_count(query, key, value))

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={op: cpu_attention})


def count_flops(model: Any) -> ModelFlops:
    """Count ``model``'s (a sam2 ``SAM2Base`` on the CPU) operations: the encode of one image
    at the model's input size, the decoder's image part and one one-point click."""
    import torch

    from app.predict.sam2.reference import features_from_batch
    from app.predict.sam2.runtimes.decoder_graphs import ImagePart, PromptPart

    res = int(model.image_size)
    with torch.no_grad():
        counter = _flop_counter()
        with counter:
            feats = features_from_batch(model, torch.zeros((1, 3, res, res)))
        encode = counter.get_total_flops()
        image_embed: Any = feats["image_embed"]
        high_res: Any = feats["high_res_feats"]
        image = ImagePart(model).eval()
        counter = _flop_counter()
        with counter:
            parts = image(image_embed)
        decoder_image = counter.get_total_flops()
        click = PromptPart(model, with_mask=False).eval()
        coords = torch.tensor([[[res * 0.4, res * 0.55], [0.0, 0.0]]])
        labels = torch.tensor([[1.0, -1.0]])  # the pad point sam2 adds when there is no box
        counter = _flop_counter()
        with counter:
            click(*parts, high_res[0], high_res[1], coords, labels)
        per_click = counter.get_total_flops()
    return ModelFlops(encode=round(encode / 1e9, 3), decoder_image=round(decoder_image / 1e9, 3),
                      click=round(per_click / 1e9, 3))


def gemm_peak_gflops(threads: int, seconds: float = 0.6) -> dict[str, float]:
    """fp32 matrix-product rate (GFLOP/s) at ``threads`` threads, best of repeated products of
    ``GEMM_SHAPE``, for each GEMM kernel installed (torch's, ONNX Runtime's MLAS); ``peak``
    is the best of them."""
    import torch

    m, k, n = GEMM_SHAPE
    flop = 2.0 * m * k * n
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    rates: dict[str, float] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = _best_rate(lambda: torch.matmul(ta, tb), flop, seconds)
    finally:
        torch.set_num_threads(before)
    session = _ort_matmul(threads, (m, k, n))
    if session is not None:
        feeds = {"a": a, "b": b}
        rates["onnxruntime"] = _best_rate(lambda: session.run(None, feeds), flop, seconds)
    rates["peak"] = max(rates.values())
    return {key: round(value, 1) for key, value in rates.items()}


def _best_rate(fn: Any, flop: float, seconds: float) -> float:
    for _ in range(3):  # warm-up: page in, start the threads
        fn()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return flop / best / 1e9


def _ort_matmul(threads: int, shape: tuple[int, int, int]) -> Any:
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    m, k, n = shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def floor_ms(gflop: float, gflops: float) -> float:
    """The least time (ms) ``gflop`` of arithmetic takes at ``gflops`` GFLOP/s."""
    return round(1000.0 * gflop / gflops, 2)
