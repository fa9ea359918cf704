"""The loaded SAM2 model as ONNX graphs, one per encoder step plus the decoder's graphs.

The encoder is exported step by step, exactly as ``TorchEncoderSteps`` runs it, so a runtime
runs the same steps and ``EncodeRun`` can still pause between two blocks:

- ``stem.onnx``: (1, 3, R, R) normalised image -> (1, H, W, C) tokens (patch embedding + the
  positional embedding for that size, a constant in the graph);
- ``block_NN.onnx``: Hiera block NN, (1, H, W, C) -> (1, H', W', C');
- ``head.onnx``: the stage outputs (1, C, H, W), finest first -> image_embed, high_res_feats_0,
  high_res_feats_1 (the neck, conv_s0/conv_s1 and no_mem_embed);
- ``decoder_image.onnx``, ``decoder.onnx``, ``decoder_mask.onnx``: prompt encoder + mask
  decoder, split into what is computed once per image and what each click computes, without
  and with a mask input (see ``decoder_graphs.py``).

Shapes come from the loaded model (any size, or a user's checkpoint). The graphs have a batch
of 1 (a batch of images runs image by image). Exported with torch's TorchScript exporter
(``dynamo=False``: no torch._dynamo at run time, and faster graphs than dynamo's here).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from sam2.modeling.sam2_base import SAM2Base

from app.predict.sam2.encoder import TorchEncoderSteps, head_from_stage_outputs
from app.predict.sam2.runtimes.decoder_graphs import (
    IMAGE_FILE,
    IMAGE_PARTS,
    MASK_FILE,
    POINTS_FILE,
    PROMPT_INPUTS,
    ImagePart,
    PromptPart,
)

OPSET = 17
HEAD_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1")


def block_file(index: int) -> str:
    return f"block_{index:02d}.onnx"


class _Stem(torch.nn.Module):
    def __init__(self, steps: TorchEncoderSteps, hw: tuple[int, int]) -> None:
        super().__init__()
        self.patch_embed = steps.trunk.patch_embed
        with torch.no_grad():
            self.register_buffer("pos", steps.trunk._get_pos_embed(hw).detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(x) + self.pos


class _Head(torch.nn.Module):
    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(self, *stage_outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image_embed, high_res = head_from_stage_outputs(self.model, list(stage_outputs))
        return (image_embed, *high_res)


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path,
            inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]] | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                          do_constant_folding=True)


def export_graphs(model: SAM2Base, folder: Path) -> list[str]:
    """Write every graph of ``model`` into ``folder``; returns the file names."""
    steps = TorchEncoderSteps(model)
    device = torch.device("cpu")
    res = int(model.image_size)
    files: list[str] = []
    with torch.no_grad():
        x = torch.zeros((1, 3, res, res), device=device)
        tokens = steps.trunk.patch_embed(x)
        stem = _Stem(steps, (int(tokens.shape[1]), int(tokens.shape[2]))).eval()
        _export(stem, (x,), folder / "stem.onnx", ["x"], ["tokens"])
        files.append("stem.onnx")
        cur = stem(x)
        stage_outputs: list[torch.Tensor] = []
        for i in range(steps.n_blocks):
            block = steps.trunk.blocks[i]
            _export(block, (cur,), folder / block_file(i), ["x"], ["y"])
            files.append(block_file(i))
            cur = block(cur)
            if steps.is_stage_output(i):
                stage_outputs.append(cur.permute(0, 3, 1, 2).contiguous())
        names = [f"stage_{k}" for k in range(len(stage_outputs))]
        _export(_Head(model).eval(), tuple(stage_outputs), folder / "head.onnx", names,
                list(HEAD_OUTPUTS))
        files.append("head.onnx")
        image_embed, high_res = head_from_stage_outputs(model, stage_outputs)
        files += _export_decoder(model, folder, image_embed, high_res)
    return files


def _export_decoder(model: SAM2Base, folder: Path, image_embed: torch.Tensor,
                    high_res: list[torch.Tensor]) -> list[str]:
    """The decoder's three graphs (see ``decoder_graphs.py``), traced on ``image_embed``."""
    res = int(model.image_size)
    low = 4 * int(image_embed.shape[-1])  # the mask input's side (256 for 1024)
    image = ImagePart(model).eval()
    _export(image, (image_embed,), folder / IMAGE_FILE, ["image_embed"], list(IMAGE_PARTS))
    parts = image(image_embed)
    points = (*parts, high_res[0], high_res[1], torch.full((2, 3, 2), res / 2.0),
              torch.tensor([[1.0, 0.0, 1.0], [2.0, 3.0, 1.0]]))
    prompts = {"point_coords": {0: "prompts", 1: "points"},
               "point_labels": {0: "prompts", 1: "points"},
               "masks": {0: "prompts"}, "iou_predictions": {0: "prompts"}}
    outputs = ["masks", "iou_predictions"]
    _export(PromptPart(model, with_mask=False).eval(), points, folder / POINTS_FILE,
            list(PROMPT_INPUTS), outputs, prompts)
    _export(PromptPart(model, with_mask=True).eval(), (*points, torch.zeros((2, 1, low, low))),
            folder / MASK_FILE, [*PROMPT_INPUTS, "mask_input"], outputs,
            {**prompts, "mask_input": {0: "mask_batch"}})
    return [IMAGE_FILE, POINTS_FILE, MASK_FILE]
