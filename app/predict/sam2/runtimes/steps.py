"""The encoder's steps and the mask decoder run from the exported graphs by an ``Engine``.

``GraphSet`` loads each graph lazily, once per thread count (the thread count of the calling
thread's torch, ``torch.get_num_threads()``: ``SAM2Predictor.set_threads`` sets it, and the
batched decode's pool threads run with one), so a runtime always uses the threads torch would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from app.predict.sam2.decoder import TorchMaskDecoder, select_masks
from app.predict.sam2.encoder import TorchEncoderSteps
from app.predict.sam2.runtimes.engines import Engine, Graph
from app.predict.sam2.runtimes.graphs import HEAD_OUTPUTS, block_file


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
    """``MaskDecoder`` from ``decoder.onnx`` for the prompts of one image; what the graph does
    not cover (no prompt at all; several images' features in one call, a GPU's batching) runs
    on the torch modules."""

    def __init__(self, model: SAM2Base, graphs: GraphSet) -> None:
        self.runtime = graphs.engine.name
        self.model = model
        self.graphs = graphs
        self.torch = TorchMaskDecoder(model)
        side = 4 * int(model.sam_prompt_encoder.image_embedding_size[0])
        self._no_mask = np.zeros((1, 1, side, side), np.float32)

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
            "image_embed": _np(image_embed),
            "high_res_feats_0": _np(high_res[0]),
            "high_res_feats_1": _np(high_res[1]),
            "point_coords": _np(coords),
            "point_labels": _np(labels),
            "mask_input": self._no_mask if mask_input is None else _np(mask_input),
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
        }
        masks, iou = self.graphs.get("decoder.onnx").run(feeds)
        return select_masks(self.model, torch.from_numpy(masks), torch.from_numpy(iou),
                            multimask)
