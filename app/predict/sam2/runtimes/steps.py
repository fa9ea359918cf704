"""The encoder's steps and the mask decoder run from the exported graphs by an ``Engine``.

``GraphSet`` loads each graph lazily, once per thread count (the thread count of the calling
thread's torch, ``torch.get_num_threads()``: ``SAM2Predictor.set_threads`` sets it, a click
lowers it while other processes keep cores busy (``app.core.threads.click_threads``), and the
batched decode's pool threads run with one), so a runtime always uses the threads torch would.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from app.core.lru import BoundedCache
from app.predict.sam2.decoder import TorchMaskDecoder, select_masks
from app.predict.sam2.encoder import TorchEncoderSteps
from app.predict.sam2.runtimes.decoder_graphs import (
    IMAGE_FILE,
    IMAGE_PARTS,
    MASK_FILE,
    POINTS_FILE,
)
from app.predict.sam2.runtimes.engines import Engine, Graph
from app.predict.sam2.runtimes.graphs import HEAD_OUTPUTS, block_file

IMAGES_KEPT = 8  # images whose per-image decoder part is kept (a batched decode's wave)
_ImageParts = tuple["weakref.ref[torch.Tensor]", dict[str, np.ndarray]]


class GraphSet:
    """The graph files of one converted model, loaded by ``engine`` on first use per
    (file, thread count). Thread-safe."""

    def __init__(self, engine: Engine, folder: Path,
                 threads: Callable[[], int] = torch.get_num_threads) -> None:
        self.engine = engine
        self.folder = folder
        self.threads = threads
        self._graphs: dict[tuple[str, int], Graph] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, name: str, threads: int | None = None) -> Graph:
        n = max(1, threads if threads is not None else self.threads())
        graph = self._graphs.get((name, n))
        if graph is None:
            with self._lock:
                graph = self._graphs.get((name, n))
                if graph is None:
                    graph = self.engine.load(self.folder / name, n)
                    self._graphs[(name, n)] = graph
                    self.loads += 1
        return graph

    def drop(self, keep_threads: int | None = None) -> None:
        """Forget the loaded graphs (all, or those of other thread counts)."""
        with self._lock:
            self._graphs = {k: g for k, g in self._graphs.items() if k[1] == keep_threads}


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu", torch.float32).numpy())


class OnnxEncoderSteps:
    """``EncoderSteps`` run from the stem, block and head graphs (batches image by image)."""

    def __init__(self, model: SAM2Base, graphs: GraphSet) -> None:
        self.runtime = graphs.engine.name
        self.graphs = graphs
        self._torch = TorchEncoderSteps(model)  # for the stage layout only

    @property
    def n_blocks(self) -> int:
        return self._torch.n_blocks

    def is_stage_output(self, index: int) -> bool:
        return self._torch.is_stage_output(index)

    def _each(self, name: str, feeds: list[dict[str, np.ndarray]], release: bool = False
              ) -> list[list[np.ndarray]]:
        graph = self.graphs.get(name)
        return [graph.run(f, release) for f in feeds]

    def stem(self, batch: torch.Tensor) -> torch.Tensor:
        x = _np(batch)
        outs = self._each("stem.onnx", [{"x": x[i:i + 1]} for i in range(len(x))])
        return torch.from_numpy(np.concatenate([o[0] for o in outs]))

    def block(self, index: int, x: torch.Tensor) -> torch.Tensor:
        a = _np(x)
        outs = self._each(block_file(index), [{"x": a[i:i + 1]} for i in range(len(a))])
        return torch.from_numpy(np.concatenate([o[0] for o in outs]))

    def head(self, stage_outputs: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        arrays = [_np(t) for t in stage_outputs]
        n = len(arrays[0])
        feeds = [{f"stage_{k}": a[i:i + 1] for k, a in enumerate(arrays)} for i in range(n)]
        outs = self._each("head.onnx", feeds, release=True)  # the encode's end
        joined = [torch.from_numpy(np.concatenate([o[j] for o in outs]))
                  for j in range(len(HEAD_OUTPUTS))]
        return joined[0], joined[1:]


class OnnxMaskDecoder:
    """``MaskDecoder`` from the decoder's graphs for the prompts of one image; what the graphs
    do not cover (no prompt at all; several images' features in one call, a GPU's batching)
    runs on the torch modules.

    The per-image part (``decoder_image.onnx``) runs on an image's first decode and is kept
    for the last ``images_kept`` images (by the identity of their ``image_embed`` tensor,
    ~10 MiB each for a 64 x 64 embedding), so a click runs only ``decoder.onnx`` (or
    ``decoder_mask.onnx`` with a mask input). Thread-safe (the batched decode calls it from
    several threads)."""

    def __init__(self, model: SAM2Base, graphs: GraphSet, images_kept: int = IMAGES_KEPT
                 ) -> None:
        self.runtime = graphs.engine.name
        self.model = model
        self.graphs = graphs
        self.torch = TorchMaskDecoder(model)
        self._parts: BoundedCache[int, _ImageParts] = BoundedCache(images_kept)
        self.prepared = 0  # per-image parts computed (tests count them)

    def image_parts(self, image_embed: torch.Tensor) -> dict[str, np.ndarray]:
        """The per-image part of ``image_embed`` (1, C, h, w): kept, or computed now."""
        key = id(image_embed)
        kept = self._parts.get(key)
        if kept is not None and kept[0]() is image_embed:
            return kept[1]
        outs = self.graphs.get(IMAGE_FILE).run({"image_embed": _np(image_embed)})
        parts = dict(zip(IMAGE_PARTS, outs, strict=True))
        for old, (ref, _) in self._parts.items():  # images whose features are gone
            if ref() is None:
                self._parts.pop(old)
        self._parts.put(key, (weakref.ref(image_embed), parts))
        self.prepared += 1
        return parts

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
        if coords is None or labels is None or image_embed.shape[0] != 1:
            return self.torch.decode(image_embed, high_res, coords, labels, mask_input,
                                     multimask, repeat_image)
        feeds = {
            **self.image_parts(image_embed),
            "high_res_feats_0": _np(high_res[0]),
            "high_res_feats_1": _np(high_res[1]),
            "point_coords": _np(coords),
            "point_labels": _np(labels),
        }
        graph = POINTS_FILE
        if mask_input is not None:
            feeds["mask_input"] = _np(mask_input)
            graph = MASK_FILE
        masks, iou = self.graphs.get(graph).run(feeds)
        return select_masks(self.model, torch.from_numpy(masks), torch.from_numpy(iou),
                            multimask)
