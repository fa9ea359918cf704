"""Decoding many prompts at once with SAM2: the clicks of concurrent clients of a server.

``predict_batch(predictor, items)`` answers ``[(key, prompt), ...]`` (several images, any
prompts) with the ``MaskResult`` of each, as ``SAM2Predictor.predict`` would. Prompts are
grouped so that a group is one call of the prompt encoder and the mask decoder: the same
number of points (box corners included; no prompt is padded beyond what its own decode
pads, so each result is the unbatched one up to float rounding), the same ``multimask``,
all with or all without a ``mask_input``. Items of one image share its features
(``repeat_image``, and the high-res features broadcast); on a GPU a group spans images too
(their features concatenated), up to ``GPU_CHUNK`` prompts a call.

On a CPU a decoder call is split by image and into ``CPU_CHUNK`` prompts, and the calls run
on ``decode_workers`` threads with one torch thread each. Measured on a loaded 2-core CPU
with SAM2.1 tiny (1 thread, per prompt): 0.099 s alone, 0.102 s in twos, 0.116 s in fours,
0.18 s in eights (the activations outgrow the caches), while the same prompt alone on 2
torch threads took 0.63 s (the threads wait for each other at every small operator when the
machine is busy): parallel single-threaded calls use the cores, batched calls do not. In a
server on that CPU the decoder is ~93% of the CPU a click costs (0.15 s of 0.17 s, two
calls at a time), so it, not the scheduling, bounds the clicks a second there.

Runs on the thread that owns the predictor (the pool threads only run the model's
stateless decoder on tensors prepared here).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch

from app.core.types import LOW_RES, EmbeddingKey, MaskResult, Prompt
from app.predict.base import PredictorError
from app.predict.sam2.features import ImageFeatures, prompt_tensors
from app.predict.sam2.model import inference, lazy_masks

if TYPE_CHECKING:
    from app.predict.sam2.predictor import SAM2Predictor

CPU_CHUNK = 2  # prompts per decoder call on a CPU (see the module docstring)
GPU_CHUNK = 64  # prompts per decoder call on a GPU (~28 MiB of activations each)
IMAGES_AT_ONCE = 8  # images whose features one wave holds (16 MiB each in float32)

_Item = tuple[int, ImageFeatures, Prompt]  # (index in the batch, features, prompt)


def decode_workers(device: torch.device) -> int:
    """Parallel decoder calls: the CPU's torch threads (one torch thread each); 1 on a GPU."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """torch on one intra-op thread on this thread (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def predict_batch(p: SAM2Predictor, items: Sequence[tuple[EmbeddingKey, Prompt]]
                  ) -> list[MaskResult]:
    """Every item's masks (see the module docstring); PredictorError for an empty prompt, a
    bad ``mask_input`` or an image that was never embedded."""
    if not items:
        return []
    keys = list(dict.fromkeys(k for k, _ in items))
    if len(keys) > IMAGES_AT_ONCE:  # in waves, so that a few images' features are held
        results: dict[int, MaskResult] = {}
        for start in range(0, len(keys), IMAGES_AT_ONCE):
            wave = set(keys[start:start + IMAGES_AT_ONCE])
            index = [i for i, (k, _) in enumerate(items) if k in wave]
            for i, r in zip(index, predict_batch(p, [items[i] for i in index]), strict=True):
                results[i] = r
        return [results[i] for i in range(len(items))]
    return _predict_wave(p, items)


def _predict_wave(p: SAM2Predictor, items: Sequence[tuple[EmbeddingKey, Prompt]]
                  ) -> list[MaskResult]:
    # a predictor that batches keeps a wave's images converted: fewer, and every batch of
    # clicks on them would convert some again (16 MiB each, ~10-20 ms on a CPU)
    p.features_kept = max(p.features_kept, IMAGES_AT_ONCE)
    feats: dict[EmbeddingKey, ImageFeatures] = {}
    for key, prompt in items:
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        if prompt.mask_input is not None and np.asarray(prompt.mask_input).size != LOW_RES ** 2:
            raise PredictorError(f"mask_input must be (1, {LOW_RES}, {LOW_RES}) logits, got "
                                 f"shape {np.shape(prompt.mask_input)}")
        if key not in feats:
            feats[key] = p.activate(key)
    on_cpu = p.device.type == "cpu"
    chunks = _chunks([(i, feats[k], pr) for i, (k, pr) in enumerate(items)], on_cpu)
    answers: list[MaskResult | None] = [None] * len(items)
    workers = decode_workers(p.device)
    if on_cpu and workers > 1 and len(chunks) > 1:
        if p._decode_pool is None:
            p._decode_pool = ThreadPoolExecutor(workers, thread_name_prefix="maskloop-decode")
        done = list(p._decode_pool.map(lambda c: _decode_single_threaded(p, c), chunks))
    elif on_cpu:
        done = [_decode_single_threaded(p, c) for c in chunks]
    else:
        done = [_decode(p, c) for c in chunks]
    for chunk, results in zip(chunks, done, strict=True):
        for (i, _, _), result in zip(chunk, results, strict=True):
            answers[i] = result
    return [r for r in answers if r is not None]


def _chunks(items: list[_Item], on_cpu: bool) -> list[list[_Item]]:
    """Items grouped for one decoder call each (see the module docstring)."""
    groups: dict[tuple[object, ...], list[_Item]] = {}
    for item in items:
        _, f, pr = item
        shape = (len(pr.points) + (2 if pr.box is not None else 0), pr.multimask,
                 pr.mask_input is not None)
        groups.setdefault((id(f), *shape) if on_cpu else shape, []).append(item)
    size = CPU_CHUNK if on_cpu else GPU_CHUNK
    return [g[s:s + size] for g in groups.values() for s in range(0, len(g), size)]


def _decode_single_threaded(p: SAM2Predictor, chunk: list[_Item]) -> list[MaskResult]:
    with single_threaded():
        return _decode(p, chunk)


def _decode(p: SAM2Predictor, chunk: list[_Item]) -> list[MaskResult]:
    """One prompt-encoder + mask-decoder call for ``chunk`` (one group of ``_chunks``)."""
    device, res = p.device, p.model.image_size
    coords, labels, masks = [], [], []
    for _, f, pr in chunk:
        c, lab = prompt_tensors(pr, f.orig_hw, res, device)
        coords.append(c)
        labels.append(lab)
        if pr.mask_input is not None:
            m = torch.as_tensor(np.asarray(pr.mask_input, np.float32)).to(device)
            masks.append(m.reshape(1, 1, LOW_RES, LOW_RES))
    first = chunk[0][1]
    one_image = all(f is first for _, f, _ in chunk)
    if one_image:
        embed, high_res = first.image_embed, first.high_res_feats
    else:
        embed = torch.cat([f.image_embed for _, f, _ in chunk])
        high_res = [torch.cat([f.high_res_feats[level] for _, f, _ in chunk])
                    for level in range(len(first.high_res_feats))]
    multimask = chunk[0][2].multimask
    out: list[MaskResult] = []
    with inference(p.precision):
        low_res, iou = p.decoder.decode(
            embed, high_res, torch.cat(coords), torch.cat(labels),
            torch.cat(masks) if masks else None, multimask,
            repeat_image=one_image and len(chunk) > 1)
        for j, (_, f, _) in enumerate(chunk):
            # lazy: the best upscaled now, the others when a route or the window asks
            out.append(lazy_masks(low_res[j].float(), iou[j].float().cpu().numpy(),
                                  f.orig_hw))
    return out
