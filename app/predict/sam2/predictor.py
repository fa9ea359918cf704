"""SAM2 run locally: the model driven directly (no SAM2ImagePredictor, no torchvision).

Encoding = ``SAM2ImagePredictor.set_image``; decoding = ``SAM2ImagePredictor.predict`` (see
``reference.py`` for the official maths line by line). Embeddings are stored as float16
in the ``EmbeddingCache``; the current image's features live on the device as tensors in the
model's dtype, converted once per image switch, so a click costs only the prompt encoder, the
mask decoder and the upscale to full resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from app.core.images import array_hash
from app.core.jobs import CancelToken, Progress, check
from app.core.lru import BoundedCache
from app.core.threads import click_threads, core_load, worker_threads
from app.core.types import LOW_RES, EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    PredictorError,
    SourceKind,
)
from app.predict.cache.file_format import Embedding
from app.predict.cache.store import EmbeddingCache
from app.predict.sam2 import reference as ref
from app.predict.sam2.decoder import MaskDecoder
from app.predict.sam2.encoder import CachedEncodeJob, EncoderSteps, EncodeRun, encode_all
from app.predict.sam2.features import (
    ImageFeatures,
    check_image,
    embeddings_from_features,
    features_from_embedding,
    prompt_tensors,
    scale_points,
)
from app.predict.sam2.model import (
    Precision,
    choose_device,
    file_sha256,
    inference,
    lazy_masks,
    load_sam2,
    precision_for,
    torch_threads,
    upscale_masks,
)
from app.predict.sam2.runtimes import LoadedRuntime, load_runtime

__all__ = ["SAM2Predictor", "load_predictor"]

FEATURES_KEPT = 4  # recent images whose device tensors are kept, unless told otherwise


class SAM2Predictor:
    """The Predictor for a local SAM2 model. Not thread-safe: one worker thread owns it."""

    def __init__(
        self,
        checkpoint: Path | str,
        config: str | None = None,
        model_id: str | None = None,
        device: str | torch.device | None = None,
        cache: EmbeddingCache | None = None,
        *,
        name: str | None = None,
        runtime: str | None = None,
    ) -> None:
        """Load ``checkpoint`` with ``config`` (guessed from the weights when None).
        ``model_id`` defaults to "custom-<sha256 prefix of the file>"; ``name`` is shown in
        ``description`` (default: the checkpoint's file name). ``runtime`` ("auto", "torch",
        "onnxruntime", "openvino"; None: $MASKLOOP_RUNTIME, else "auto") is what computes on
        a CPU (see ``app/predict/sam2/runtimes``: the first load converts the model)."""
        path = Path(checkpoint)
        model, config = load_sam2(path, config, device)
        if model_id is None:
            model_id = f"custom-{file_sha256(path)[:16]}"
        self._setup(model, model_id, cache, name or f"SAM2 {path.name}", runtime)
        self.checkpoint: Path | None = path
        self.config = config

    @classmethod
    def from_model(
        cls, model: SAM2Base, model_id: str, cache: EmbeddingCache | None = None,
        name: str | None = None, runtime: str | None = None,
    ) -> SAM2Predictor:
        """Wrap an already built model (tests and benchmarks with random weights)."""
        self = cls.__new__(cls)
        self._setup(model, model_id, cache, name or f"SAM2 {model_id}", runtime)
        self.checkpoint = None
        self.config = ""
        return self

    def _setup(
        self, model: SAM2Base, model_id: str, cache: EmbeddingCache | None, name: str,
        runtime: str | None = None,
    ) -> None:
        self.model = model
        self.device: torch.device = model.device
        if self.device.type == "cpu":
            # the cores available (or $MASKLOOP_THREADS), never more: see app/core/threads.py
            torch.set_num_threads(worker_threads())
            core_load().free_cores()  # the first sample: a click compares against it
        self.precision: Precision = precision_for(self.device)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._model_id = model_id
        self._name = name
        self._dtype = next(model.parameters()).dtype
        self._current: ImageFeatures | None = None
        # the recent images' device tensors (``features_kept``)
        self._recent: BoundedCache[EmbeddingKey, ImageFeatures] = BoundedCache(FEATURES_KEPT)
        self._upscale_buf: torch.Tensor | None = None  # (1, 1, H, W) float32, reused
        self._decode_pool: ThreadPoolExecutor | None = None  # predict_batch on a CPU
        # what computes: torch's modules, or the model converted for a CPU runtime (ONNX
        # Runtime by default; torch, with the reason logged, when that fails)
        self.runtime: LoadedRuntime = load_runtime(model, model_id, runtime)
        self.encoder: EncoderSteps = self.runtime.encoder
        self.decoder: MaskDecoder = self.runtime.decoder
        # told (steps done, steps) before each encoder step: the app shows the encode's
        # progress with it (set by the owner of the worker thread, None: nobody asks)
        self.encode_progress: Callable[[int, int], None] | None = None

    # -- Predictor protocol ----------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def description(self) -> str:
        runtime = "" if self.runtime.name == "torch" else f", {self.runtime.name}"
        return f"{self._name} on {self.device.type} ({self.precision.label}{runtime})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(SourceKind.SAM2, self.device.type, batched_decode=True, video=True,
                            exemplar_prompts=True,
                            resumable_encode=True, thread_control=True,
                            # an encoder step touches only its own EncodeRun and, once done,
                            # the (locked) cache; a decode only the decoder's state
                            decode_beside_encode=self.device.type == "cpu")

    def set_threads(self, n: int) -> None:
        """The CPU threads the next jobs use (torch's intra-op threads; a converted model's
        runtime follows them, loading its graphs for ``n`` threads on first use). No effect
        off the CPU."""
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, int(n)))

    def embed(
        self,
        image: np.ndarray,
        image_hash: str | None = None,
        cancel: CancelToken | None = None,
    ) -> EmbeddingKey:
        """Encode ``image`` unless its embedding is cached; returns its key.

        ``cancel`` is checked before the encoder and before each of its steps (every Hiera
        block and the neck), so a stale encode stops within one block and nothing is
        cached; an encoding that finished is cached, then Cancelled is raised."""
        image = check_image(image)
        key = EmbeddingKey(image_hash or array_hash(image), self._model_id)
        if self._current is not None and self._current.key == key:
            return key
        check(cancel)
        if self.cache.get(key) is not None:
            return key
        emb = self._encode([image], cancel)[0]
        self.cache.put(key, emb)
        check(cancel)
        return key

    def start_embed(self, image: np.ndarray, image_hash: str | None = None) -> CachedEncodeJob:
        """An encode of ``image`` in steps (see ``EncodeJob``); already finished (no step
        left) when the embedding is cached."""
        image = check_image(image)
        key = EmbeddingKey(image_hash or array_hash(image), self._model_id)
        cached = self.cache.contains(key)
        return CachedEncodeJob(key, None if cached else self._run([image]), self.cache,
                               self.precision)

    def embed_batch(
        self,
        images: Sequence[np.ndarray],
        hashes: Sequence[str | None] | None = None,
        cancel: CancelToken | None = None,
        batch_size: int | None = None,
    ) -> list[EmbeddingKey]:
        """Embed several images, skipping cached ones, running the encoder on batches of
        ``batch_size`` (default 4 on a GPU, 1 on a CPU) images."""
        if hashes is None:
            hashes = [None] * len(images)
        if len(hashes) != len(images):
            raise ValueError("images and hashes must have the same length")
        size = batch_size or (4 if self.device.type in ("cuda", "mps") else 1)
        checked = [check_image(im) for im in images]
        keys = [EmbeddingKey(h or array_hash(im), self._model_id)
                for im, h in zip(checked, hashes, strict=True)]
        todo = [i for i, k in enumerate(keys) if not self.cache.contains(k)]
        for start in range(0, len(todo), size):
            check(cancel)
            chunk = todo[start:start + size]
            embs = self._encode([checked[i] for i in chunk], cancel)
            for i, emb in zip(chunk, embs, strict=True):
                self.cache.put(keys[i], emb)
        check(cancel)
        return keys

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        """Decode one prompt: full-resolution masks, IoU scores and low-res logits."""
        feats = self.activate(key)
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        coords, labels = self._prompt_points(prompt, feats.orig_hw)
        mask_t = None
        if prompt.mask_input is not None:
            mask_t = torch.as_tensor(prompt.mask_input, dtype=torch.float32)
            if mask_t.numel() != LOW_RES * LOW_RES:
                raise PredictorError(
                    f"mask_input must be (1, {LOW_RES}, {LOW_RES}) logits, "
                    f"got shape {tuple(mask_t.shape)}"
                )
            mask_t = mask_t.reshape(1, 1, LOW_RES, LOW_RES).to(self.device)
        with torch_threads(self._click_threads()), inference(self.precision):
            low_res, iou = self._decode(feats, coords, labels, mask_t, prompt.multimask)
            return self._result(low_res[0].float(), iou[0].float(), feats.orig_hw)

    def prepare(self, key: EmbeddingKey) -> None:
        """Before the first click on ``key``'s image: its features converted for the decoder
        (``activate``) and the converted decoder's per-image part computed (``Preparing``)."""
        feats = self.activate(key)
        image_parts = getattr(self.decoder, "image_parts", None)
        if callable(image_parts):
            with torch_threads(self._click_threads()), inference(self.precision):
                image_parts(feats.image_embed)

    def predict_unprompted(self, key: EmbeddingKey, multimask: bool = True) -> MaskResult:
        """Decode no prompt at all (no point, no box), as the official predictor does when
        ``predict`` gets none: what Roboflow's server answers a request without prompts."""
        feats = self.activate(key)
        with torch_threads(self._click_threads()), inference(self.precision):
            low_res, iou = self._decode(feats, None, None, None, multimask)
            return self._result(low_res[0].float(), iou[0].float(), feats.orig_hw)

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None,
                           points_per_batch: int | None = None) -> list[MaskProposal]:
        """Every object of the image from a grid of single-point prompts (see everything.py),
        decoded ``points_per_batch`` points at a time (default: ``self.points_per_batch``)."""
        from app.predict.sam2.everything import segment_everything

        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        feats = self.activate(key)
        return segment_everything(
            lambda points: self.decode_points(key, points),
            feats.orig_hw,
            options,
            points_per_batch=points_per_batch or self.points_per_batch,
            cancel=cancel,
            progress=progress,
        )

    def predict_batch(self, items: Sequence[tuple[EmbeddingKey, Prompt]]) -> list[MaskResult]:
        """The masks of several prompts, on one or several images, decoded together (the
        clicks of concurrent clients; see ``batch.predict_batch``): the same results as
        ``predict`` on each."""
        from app.predict.sam2.batch import predict_batch

        return predict_batch(self, items)

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """Objects like the query's exemplars, found in the cached embedding (see
        ``findall.py``); no text (SAM2 has no text encoder)."""
        from app.predict.sam2.findall import find_like

        query.check_supported(self.capabilities, "SAM2")
        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        return find_like(self, key, query, cancel=cancel, progress=progress)

    def close(self) -> None:
        """Drop the recent images' device tensors (and CUDA's cached blocks); the model and
        the embedding cache stay usable."""
        self._current = None
        self._recent.clear()
        self._upscale_buf = None
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=True)
            self._decode_pool = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- beyond the protocol: used by segment-everything, the service and the benchmark ----

    @property
    def points_per_batch(self) -> int:
        """Points decoded at once by segment-everything: the mask decoder holds about 28 MiB
        of activations per point (the image embedding and its positional encoding repeated,
        (32, 256, 256) upscaled features; 1.8 GiB for 64 points), so 64 on a GPU and 16 on
        a CPU (0.5 GiB; 32 or 64 are only ~10% faster per point there, for 2-4x the memory
        and a coarser grain for progress and cancel)."""
        return 64 if self.device.type == "cuda" else 16

    @property
    def features_kept(self) -> int:
        """Recent images whose device tensors are kept (16 MiB each in float32)."""
        return self._recent.maxsize

    @features_kept.setter
    def features_kept(self, n: int) -> None:
        self._recent.resize(max(1, n))

    def activate(self, key: EmbeddingKey) -> ImageFeatures:
        """Make ``key``'s image current: its float16 embedding converted to device tensors
        once (then every click reuses them; the last ``features_kept`` images stay converted).
        PredictorError if it was never embedded."""
        if self._current is not None and self._current.key == key:
            return self._current
        recent = self._recent.get(key)
        if recent is not None:
            self._current = recent
            return recent
        if key.model_id != self._model_id:
            raise PredictorError(
                f"embedding {key.image_hash[:12]} was made by model {key.model_id}, "
                f"not {self._model_id}"
            )
        emb = self.cache.get(key)
        if emb is None:
            raise PredictorError(
                f"image {key.image_hash[:12]} has no embedding for {self._model_id}: embed it first"
            )
        self._current = features_from_embedding(key, emb, self.device, self._dtype)
        self._recent.put(key, self._current)
        return self._current

    def decode_points(
        self, key: EmbeddingKey, points: np.ndarray, multimask: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode N single positive points (N, 2) in pixels at once: low-res logits
        (N, C, 256, 256) float32 and IoU scores (N, C) on the device (C = 3 if multimask)."""
        feats = self.activate(key)
        h, w = feats.orig_hw
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        scaled = scale_points(pts, w, h, self.model.image_size)
        coords = torch.from_numpy(scaled[:, None, :]).to(self.device)
        labels = torch.ones((len(pts), 1), dtype=torch.int32, device=self.device)
        with inference(self.precision):
            low_res, iou = self._decode(feats, coords, labels, None, multimask)
            return low_res.float(), iou.float()

    def raw_decode(
        self, key: EmbeddingKey, prompt: Prompt
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same prompt decoded by the official predictor's code path (raw sam2 calls on
        the same tensors): the benchmark's baseline. Returns (masks float32, ious, low-res)."""
        feats = self.activate(key)
        coords = labels = box = None
        if prompt.points:
            coords = np.array([[p.x, p.y] for p in prompt.points], dtype=np.float32)
            labels = np.array([1 if p.positive else 0 for p in prompt.points], dtype=np.int32)
        if prompt.box is not None:
            b = prompt.box.normalized()
            box = np.array([b.x0, b.y0, b.x1, b.y1], dtype=np.float32)
        with inference(self.precision):
            return ref.official_predict(
                self.model, feats.as_official(), feats.orig_hw, coords, labels, box,
                prompt.mask_input, prompt.multimask,
            )

    # -- internals -------------------------------------------------------------------------

    def _run(self, images: list[np.ndarray]) -> EncodeRun:
        return EncodeRun(self.encoder, images, self.model.image_size, self.device)

    def _encode(
        self, images: list[np.ndarray], cancel: CancelToken | None = None
    ) -> list[Embedding]:
        """Run the image encoder on a batch (images may differ in size); Cancelled between
        encoder steps (stem, each Hiera block, head) when ``cancel`` is set, and
        ``encode_progress(done, total)`` told before each."""
        with inference(self.precision):
            image_embed, high_res = encode_all(self._run(images), cancel, self.encode_progress)
            return embeddings_from_features(image_embed, high_res, images)

    def _result(self, low_res: torch.Tensor, iou: torch.Tensor,
                hw: tuple[int, int]) -> MaskResult:
        """(C, 256, 256) float32 logits and (C,) scores -> a MaskResult with lazy masks
        (``lazy_masks``): the best upscaled now, here on the worker through the reused
        buffer; the others when asked for."""
        return lazy_masks(low_res, iou.cpu().numpy(), hw,
                          lambda logits: self._upscale(logits, hw))

    def _upscale(self, low_res: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
        """(C, 256, 256) logits -> (C, H, W) bool masks through the predictor's reused
        buffer (see ``upscale_masks``)."""
        masks, self._upscale_buf = upscale_masks(low_res, hw, self._upscale_buf)
        return masks

    def _click_threads(self) -> int | None:
        """A click's threads on a CPU: the job's (``set_threads``), fewer while other
        processes keep cores busy (``click_threads``; $MASKLOOP_THREADS wins). Issue 14."""
        if self.device.type != "cpu":
            return None
        return min(torch.get_num_threads(), click_threads())

    def _prompt_points(
        self, prompt: Prompt, orig_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt as (1, n, 2) coords and (1, n) labels on the device (``prompt_tensors``)."""
        return prompt_tensors(prompt, orig_hw, self.model.image_size, self.device)

    def _decode(
        self,
        feats: ImageFeatures,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder (call inside ``inference``); no coords: no prompt."""
        return self.decoder.decode(
            feats.image_embed, feats.high_res_feats, coords, labels, mask_input, multimask,
            repeat_image=coords is not None and coords.shape[0] > 1)


def load_predictor(
    checkpoint: Path | str,
    config: str | None = None,
    model_id: str | None = None,
    device: str | None = None,
    cache: EmbeddingCache | None = None,
    runtime: str | None = None,
) -> SAM2Predictor:
    """Load a SAM2 checkpoint as a Predictor (device "auto"/None picks CUDA, MPS, CPU)."""
    return SAM2Predictor(checkpoint, config, model_id, choose_device(device), cache,
                         runtime=runtime)
