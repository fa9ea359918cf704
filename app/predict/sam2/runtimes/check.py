"""Does a runtime compute what torch computes? Each graph on a fixed input against the sam2
modules: the encoder's steps chained as ``EncodeRun`` chains them (so a step's deviation
includes what the steps before it added), then the decoder on torch's features for every kind
of prompt (one point, several points, a box, a box and a point, a mask input, a batch of
prompts on one image), multimask and single-mask output (sam2's
``dynamic_multimask_via_stability`` choice included)."""

from __future__ import annotations

import torch
from sam2.modeling.sam2_base import SAM2Base

from app.predict.sam2.decoder import MaskDecoder, TorchMaskDecoder
from app.predict.sam2.encoder import EncoderSteps, TorchEncoderSteps

TOLERANCE = 1e-4  # max abs difference allowed between a runtime's outputs and torch's


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _encode(steps: EncoderSteps, batch: torch.Tensor) -> list[torch.Tensor]:
    """Every step's output: stem, each block, then the head's three outputs."""
    outs = [steps.stem(batch)]
    stage: list[torch.Tensor] = []
    for i in range(steps.n_blocks):
        outs.append(steps.block(i, outs[-1]))
        if steps.is_stage_output(i):
            stage.append(outs[-1].permute(0, 3, 1, 2))
    image_embed, high_res = steps.head(stage)
    return [*outs, image_embed, *high_res]


def check_encoder(model: SAM2Base, steps: EncoderSteps, seed: int = 0
                  ) -> tuple[dict[str, float], torch.Tensor, list[torch.Tensor]]:
    """Max abs difference of each encoder step's output from torch's on a fixed input, and
    torch's features of that input (image_embed, [high_res_feats_0, high_res_feats_1])."""
    res = int(model.image_size)
    gen = torch.Generator().manual_seed(seed)
    batch = torch.randn((1, 3, res, res), generator=gen)
    with torch.inference_mode():
        ref = _encode(TorchEncoderSteps(model), batch)
        got = _encode(steps, batch)
    names = (["stem"] + [f"block_{i:02d}" for i in range(steps.n_blocks)]
             + ["image_embed", "high_res_feats_0", "high_res_feats_1"])
    diffs = {n: _diff(a, b) for n, a, b in zip(names, got, ref, strict=True)}
    return diffs, ref[-3], ref[-2:]


def prompt_cases(res: int, low: int, seed: int = 0
                 ) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(name, coords (B, N, 2), labels (B, N), mask input or None): the decoder checks."""
    gen = torch.Generator().manual_seed(seed)

    def pts(b: int, n: int) -> torch.Tensor:
        return torch.rand((b, n, 2), generator=gen) * res

    box = torch.tensor([[[0.2 * res, 0.25 * res], [0.7 * res, 0.8 * res]]])
    mask = torch.randn((1, 1, low, low), generator=gen) * 8.0
    i32 = torch.int32
    return [
        ("one point", pts(1, 1), torch.ones((1, 1), dtype=i32), None),
        ("several points", pts(1, 4), torch.tensor([[1, 0, 1, 0]], dtype=i32), None),
        ("box", box, torch.tensor([[2, 3]], dtype=i32), None),
        ("box and point", torch.cat([box, pts(1, 1)], 1), torch.tensor([[2, 3, 1]], dtype=i32),
         None),
        ("mask input", pts(1, 2), torch.tensor([[1, 0]], dtype=i32), mask),
        ("batch of prompts", pts(3, 2), torch.tensor([[1, 1], [1, 0], [0, 1]], dtype=i32),
         None),
    ]


def check_decoder(model: SAM2Base, decoder: MaskDecoder, image_embed: torch.Tensor,
                  high_res: list[torch.Tensor], seed: int = 0) -> dict[str, float]:
    """Max abs difference of the logits and IoU scores from torch's for every prompt case,
    multimask and single-mask."""
    reference = TorchMaskDecoder(model)
    res = int(model.image_size)
    low = 4 * int(image_embed.shape[-1])
    out: dict[str, float] = {}
    with torch.inference_mode():
        for name, coords, labels, mask in prompt_cases(res, low, seed):
            for multimask in (True, False):
                repeat = coords.shape[0] > 1
                want = reference.decode(image_embed, high_res, coords, labels, mask, multimask,
                                        repeat)
                got = decoder.decode(image_embed, high_res, coords, labels, mask, multimask,
                                     repeat)
                kind = "multimask" if multimask else "single mask"
                out[f"decoder {name}, {kind}: logits"] = _diff(got[0], want[0])
                out[f"decoder {name}, {kind}: iou"] = _diff(got[1], want[1])
    return out


def check_runtime(model: SAM2Base, steps: EncoderSteps, decoder: MaskDecoder
                  ) -> dict[str, float]:
    """Every check's max abs difference from torch (``TOLERANCE`` is the bar)."""
    diffs, image_embed, high_res = check_encoder(model, steps)
    diffs.update(check_decoder(model, decoder, image_embed, high_res))
    return diffs
