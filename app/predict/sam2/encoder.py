"""SAM2's image encoder, one step at a time: an encode that can pause between steps and go on
later where it stopped.

The steps are those of ``SAM2Base.forward_image`` + ``_prepare_backbone_features`` +
``no_mem_embed`` (``reference.features_from_batch``), written out: the stem (preprocessed
batch -> Hiera's patch embedding + positional embedding), each Hiera block, then the head (the
FPN neck, the decoder's high-resolution projections and ``no_mem_embed``). Written by hand
because sam2 only offers the whole forward: an ``EncodeRun`` keeps the activations between
steps, so the prediction service can answer a click between two blocks and then resume the
encode, instead of cancelling it and starting again from zero.

Hiera's positional embedding for an input size (a bicubic resize of a learned table, the
same every time) is computed once per model and size and kept (``TorchEncoderSteps``).

``EncoderSteps`` is the protocol a runtime implements (torch here; another runtime runs the
same steps from converted graphs), so the stepping, the cancel checks and the progress stay
in one place whichever runtime does the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from app.core.jobs import CancelToken, check
from app.core.types import EmbeddingKey
from app.predict.base import PredictorError
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2 import reference as ref
from app.predict.sam2.features import embeddings_from_features
from app.predict.sam2.model import Precision, inference

__all__ = ["CachedEncodeJob", "EncodeRun", "EncoderSteps", "TorchEncoderSteps", "encode_all"]


class EncoderSteps(Protocol):
    """One runtime's implementation of the encoder's steps (call inside ``inference``)."""

    runtime: str  # "torch", "onnxruntime", ...

    @property
    def n_blocks(self) -> int: ...

    def stem(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) normalised images -> (B, H, W, C) tokens with positional embedding."""
        ...

    def block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Hiera block ``index``: (B, H, W, C) -> (B, H', W', C')."""
        ...

    def is_stage_output(self, index: int) -> bool:
        """True if the output of block ``index`` feeds the neck."""
        ...

    def head(self, stage_outputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The stage outputs (B, C, H, W), finest first -> (image_embed (B, 256, 64, 64),
        [high_res_feats_0 (B, 32, 256, 256), high_res_feats_1 (B, 64, 128, 128)])."""
        ...


class TorchEncoderSteps:
    """The steps run by the sam2 modules themselves (the official arithmetic, op for op)."""

    runtime = "torch"

    def __init__(self, model: SAM2Base) -> None:
        self.model = model
        self.trunk = model.image_encoder.trunk
        self._pos: dict[tuple[int, int], torch.Tensor] = {}  # (H, W) -> (1, H, W, C)

    @property
    def n_blocks(self) -> int:
        return len(self.trunk.blocks)

    def stem(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.trunk.patch_embed(batch)
        return x + self.pos_embed((int(x.shape[1]), int(x.shape[2])))

    def pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Hiera's ``_get_pos_embed(hw)``, computed once per size (67 ms a time on a CPU)."""
        pos = self._pos.get(hw)
        if pos is None:
            pos = self.trunk._get_pos_embed(hw)
            self._pos[hw] = pos
        return pos

    def block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.trunk.blocks[index](x)
        return out

    def is_stage_output(self, index: int) -> bool:
        ends = self.trunk.stage_ends
        return index == ends[-1] or (index in ends and bool(self.trunk.return_interm_layers))

    def head(self, stage_outputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return head_from_stage_outputs(self.model, stage_outputs)


def head_from_stage_outputs(
    model: SAM2Base, stage_outputs: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The neck, ``forward_image``'s conv_s0/conv_s1, ``_prepare_backbone_features`` and
    ``no_mem_embed``, as ``reference.features_from_batch`` applies them."""
    encoder = model.image_encoder
    features, _pos = encoder.neck(stage_outputs)
    if encoder.scalp > 0:
        features = features[: -encoder.scalp]
    features = list(features)
    if model.use_high_res_features_in_sam:
        features[0] = model.sam_mask_decoder.conv_s0(features[0])
        features[1] = model.sam_mask_decoder.conv_s1(features[1])
    levels = features[-model.num_feature_levels:]
    image_embed = levels[-1]
    if model.directly_add_no_mem_embed:
        # (HW, B, C) + (1, 1, C) in the official code: the same sum, broadcast over H and W
        image_embed = image_embed + model.no_mem_embed.view(1, -1, 1, 1)
    return image_embed, list(levels[:-1])


class EncodeRun:
    """One batch of images being encoded: ``step()`` runs the next step and returns True once
    the last one is done (then ``outputs`` holds the result). Between two steps the run can
    wait as long as needed, while the same thread decodes clicks with other tensors; only
    the activations of the step reached are kept (for SAM2.1 tiny at 1024: at most ~50 MB).

    Call ``step`` inside ``inference`` (``model.inference``), on the thread that owns the
    predictor."""

    def __init__(self, steps: EncoderSteps, images: list[np.ndarray], resolution: int,
                 device: torch.device) -> None:
        self.steps = steps
        self.images = images
        self._resolution = resolution
        self._device = device
        self._next = 0  # 0 = stem, 1..n = blocks, n + 1 = head
        self._x: torch.Tensor | None = None
        self._stage_outputs: list[torch.Tensor] = []
        self.outputs: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    @property
    def total(self) -> int:
        """Steps in all: the stem, each block and the head."""
        return self.steps.n_blocks + 2

    @property
    def done(self) -> int:
        """Steps finished so far."""
        return self._next

    @property
    def finished(self) -> bool:
        return self.outputs is not None

    def step(self) -> bool:
        """Run the next step; True when the encode is finished."""
        if self.outputs is not None:
            return True
        n = self.steps.n_blocks
        i = self._next
        if i == 0:
            batch = torch.cat([ref.preprocess(im, self._resolution, self._device)
                               for im in self.images])
            self._x = self.steps.stem(batch)
        elif i <= n:
            assert self._x is not None
            self._x = self.steps.block(i - 1, self._x)
            if self.steps.is_stage_output(i - 1):
                self._stage_outputs.append(self._x.permute(0, 3, 1, 2))
        else:
            self.outputs = self.steps.head(self._stage_outputs)
            self._x = None
            self._stage_outputs = []
        self._next += 1
        return self.outputs is not None

    def release(self) -> None:
        """Drop the activations (an encode that is no longer wanted)."""
        self._x = None
        self._stage_outputs = []


def encode_all(run: EncodeRun, cancel: CancelToken | None = None,
               on_step: Callable[[int, int], None] | None = None
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run every remaining step of ``run``: ``on_step(done, total)`` is told, then ``cancel``
    checked, before each step (Cancelled stops within one step)."""
    while not run.finished:
        if on_step is not None:
            on_step(run.done, run.total)
        check(cancel)
        run.step()
    assert run.outputs is not None
    return run.outputs


class CachedEncodeJob:
    """``SAM2Predictor.start_embed``'s ``EncodeJob``: one image's ``EncodeRun`` stepped under
    the predictor's inference mode; the last step puts the embedding in ``cache``. No run:
    the embedding was cached already (no step left)."""

    def __init__(self, key: EmbeddingKey, run: EncodeRun | None, cache: EmbeddingCache,
                 precision: Precision) -> None:
        self._key = key
        self._run = run
        self._cache = cache
        self._precision = precision
        self._total = run.total if run is not None else 0
        self._finished = run is None

    @property
    def key(self) -> EmbeddingKey:
        return self._key

    @property
    def total(self) -> int:
        return self._total

    @property
    def done(self) -> int:
        return self._total if self._run is None else self._run.done

    def step(self) -> bool:
        if self._finished:
            return True
        run = self._run
        if run is None:
            raise PredictorError(f"the encode of {self._key.image_hash[:12]} was released")
        with inference(self._precision):
            if run.step():
                assert run.outputs is not None
                image_embed, high_res = run.outputs
                emb = embeddings_from_features(image_embed, high_res, run.images)[0]
                self._cache.put(self._key, emb)
                self._run, self._finished = None, True
        return self._finished

    def release(self) -> None:
        if self._run is not None:
            self._run.release()
            self._run = None
