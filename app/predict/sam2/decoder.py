"""SAM2's prompt encoder + mask decoder behind one call, so that a runtime other than torch can
do the arithmetic (``app/predict/sam2/runtimes``) while the predictor, the batched decode and
segment-everything stay the same.

``MaskDecoder.decode`` takes the prompt as the prompt encoder does (coords (B, N, 2) in the
model's input frame, labels (B, N): 1 positive, 0 negative, 2/3 box corners; None: no prompt),
an optional (B, 1, 256, 256) mask input, and returns (B, C, 256, 256) low-res logits and (B, C)
IoU scores, C = 3 when ``multimask`` else 1 (chosen as sam2 chooses:
``dynamic_multimask_via_stability``).
"""

from __future__ import annotations

from typing import Protocol

import torch
from sam2.modeling.sam2_base import SAM2Base

__all__ = ["MaskDecoder", "TorchMaskDecoder", "select_masks"]


class MaskDecoder(Protocol):
    """One runtime's prompt encoder + mask decoder (call inside ``inference``)."""

    runtime: str

    def decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
        repeat_image: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class TorchMaskDecoder:
    """The sam2 modules themselves (the official arithmetic)."""

    runtime = "torch"

    def __init__(self, model: SAM2Base) -> None:
        self.model = model
        self._dense_pe: torch.Tensor | None = None

    def dense_pe(self) -> torch.Tensor:
        if self._dense_pe is None:
            self._dense_pe = self.model.sam_prompt_encoder.get_dense_pe()
        return self._dense_pe

    def decode(
        self,
        image_embed: torch.Tensor,
        high_res: list[torch.Tensor],
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
        repeat_image: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        points = None if coords is None or labels is None else (coords, labels)
        sparse, dense = model.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        low_res, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=repeat_image,
            high_res_features=high_res,
        )
        return low_res, iou


def select_masks(model: SAM2Base, masks: torch.Tensor, iou: torch.Tensor, multimask: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """All the decoder's mask tokens ((B, 4, 256, 256), (B, 4)) -> the output ``MaskDecoder.
    forward`` chooses for ``multimask`` (its own code: multimask tokens 1..3, else token 0 or,
    with ``dynamic_multimask_via_stability``, the best multimask one when token 0 is unstable)."""
    decoder = model.sam_mask_decoder
    if multimask:
        return masks[:, 1:, :, :], iou[:, 1:]
    if decoder.dynamic_multimask_via_stability and not decoder.training:
        out: tuple[torch.Tensor, torch.Tensor] = decoder._dynamic_multimask_via_stability(
            masks, iou)
        return out
    return masks[:, 0:1, :, :], iou[:, 0:1]
