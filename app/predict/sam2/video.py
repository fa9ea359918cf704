"""SAM2's video path: prompts on some frames, masks on all, through SAM2's memory (the memory
encoder and memory attention of ``SAM2Base.track_step``), driven directly.

``sam2.sam2_video_predictor.SAM2VideoPredictor`` loads the whole video up front
(``load_video_frames``: every frame resized to 1024 x 1024 float32, 12 MB a frame) and keeps
every frame's memory for the whole session. Here frames are read one at a time from a
``FrameSource`` (``app.core.sequences``), the model is the image predictor's own (no second
copy: the video path only adds ``track_step`` calls), and a run keeps the memories of the
frames its next frame can attend to (``num_maskmem`` frames, ``max_obj_ptrs_in_encoder``
object pointers), so memory does not grow with the length of the video. The steps mirror
``add_new_points_or_box`` / ``add_new_mask`` + ``propagate_in_video_preflight`` (an anchor's
memory from its low-res logits, binarized) and ``propagate_in_video`` (memories stored as
bfloat16); tests/predict/sam2/test_video_official.py checks the masks against sam2's own
video predictor.

Frame features come from the image predictor's ``EmbeddingCache`` when the frame was embedded
before (a click on it, an earlier run), else from its encoder (its runtime: ONNX Runtime or
torch), and are put back in the cache. The image path caches ``image_embed`` with
``no_mem_embed`` added (``set_image``); the video path needs it without, so it is subtracted
again (exact up to the cache's float16 rounding); the high-resolution features are the same
tensors (``forward_image``'s conv_s0/conv_s1 outputs) and the positional encodings depend
only on the sizes, so they are computed once.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from app.core.images import array_hash
from app.core.jobs import CancelToken, Progress
from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey, Prompt
from app.predict.base import Capabilities, PredictorError
from app.predict.propagation import (
    FrameResult,
    FrameSource,
    PropagationRequest,
    PropagationRun,
    anchor_mask,
    track_ends,
)
from app.predict.sam2.encoder import EncodeRun, encode_all
from app.predict.sam2.features import (
    check_image,
    embeddings_from_features,
    features_from_embedding,
    prompt_tensors,
)
from app.predict.sam2.model import inference, upscale_masks
from app.predict.sam2.predictor import SAM2Predictor

__all__ = ["SAM2Propagator", "SAM2VideoSession", "video_backbone_out"]

Out = dict[str, Any]  # one frame's compact output for one track, as sam2 keeps it


def video_backbone_out(model: Any, image_embed: torch.Tensor, high_res: list[torch.Tensor],
                       pos: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """``forward_image``'s output rebuilt from the image path's features: ``image_embed``
    (with ``no_mem_embed`` added, as cached) and the two high-resolution maps, with the
    neck's positional encodings ``pos`` (one per level)."""
    raw = image_embed
    if model.directly_add_no_mem_embed:
        raw = image_embed - model.no_mem_embed.view(1, -1, 1, 1).to(image_embed.dtype)
    return {"backbone_fpn": [*high_res, raw],
            "vision_pos_enc": [p.to(raw.dtype) for p in pos]}


class SAM2Propagator:
    """SAM2's video memory behind the ``Propagator`` interface, on a ``SAM2Predictor``'s
    model, encoder and embedding cache (the same worker thread must own both).
    ``cache_frames``: put the embeddings of the frames it encodes in the cache (on disk
    too: 8 MB a frame), so a second run over them, or a click on one, encodes nothing.
    ``offload_state_to_cpu``: keep the memories in host memory (a GPU's is smaller)."""

    def __init__(self, predictor: SAM2Predictor, *, cache_frames: bool = True,
                 offload_state_to_cpu: bool = False) -> None:
        self.predictor = predictor
        self.cache_frames = cache_frames
        self.offload_state_to_cpu = offload_state_to_cpu

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.predictor.capabilities, video=True)

    def open(self, frames: FrameSource,
             frame_hash: Callable[[int], str] | None = None) -> SAM2VideoSession:
        return SAM2VideoSession(self, frames, frame_hash)


class SAM2VideoSession:
    """Anchors and runs on one sequence (see the module text). Per track: the anchors'
    outputs (``cond_frame_outputs``) for the whole session; a run's own outputs
    (``non_cond_frame_outputs``) only for its window. Not thread-safe."""

    def __init__(self, owner: SAM2Propagator, frames: FrameSource,
                 frame_hash: Callable[[int], str] | None = None) -> None:
        self.predictor = owner.predictor
        self.model = owner.predictor.model
        self.frames = frames
        self._frame_hash = frame_hash
        self._cache_frames = owner.cache_frames
        self.device: torch.device = self.predictor.device
        self.storage = torch.device("cpu") if owner.offload_state_to_cpu else self.device
        self.length = len(frames)
        if self.length < 1:
            raise PredictorError("the sequence has no frames")
        first = check_image(frames.frame(0))
        self.hw: tuple[int, int] = (int(first.shape[0]), int(first.shape[1]))
        self._cond: dict[int, dict[int, Out]] = {}  # track -> frame -> anchor output
        self._tracked: dict[int, dict[int, bool]] = {}  # track -> frame -> reversed?
        self._features: BoundedCache[int, dict[str, list[torch.Tensor]]] = BoundedCache(2)
        self._pos: list[torch.Tensor] | None = None
        self._maskmem_pos: list[torch.Tensor] | None = None
        m = self.model
        # the run's memories older than this (in frames) can no longer be attended to
        self.window = max(m.num_maskmem * max(1, m.memory_temporal_stride_for_eval),
                          m.max_obj_ptrs_in_encoder)
        self.encoded = 0  # frames encoded by this session
        self.from_cache = 0  # frames whose features came from the embedding cache

    # -- anchors --------------------------------------------------------------------------

    def anchors(self) -> dict[int, set[int]]:
        return {t: set(frames) for t, frames in self._cond.items() if frames}

    def add_prompt(self, frame: int, track: int, prompt: Prompt) -> np.ndarray:
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        frame = self._check_frame(frame)
        coords, labels = prompt_tensors(prompt, self.hw, self.model.image_size, self.device)
        points = {"point_coords": coords, "point_labels": labels}
        prev = None
        if prompt.mask_input is not None:
            low = self.model.image_size // 4  # LOW_RES for the released models (1024)
            prev = torch.as_tensor(np.asarray(prompt.mask_input, np.float32))
            if prev.numel() != low * low:
                raise PredictorError(f"mask_input must be (1, {low}, {low}) logits, "
                                     f"got shape {tuple(prev.shape)}")
            prev = prev.reshape(1, 1, low, low).to(self.device).clamp(-32.0, 32.0)
        return self._anchor(frame, track, points, None, prev)

    def add_mask(self, frame: int, track: int, mask: np.ndarray) -> np.ndarray:
        frame = self._check_frame(frame)
        mask = anchor_mask(mask, self.hw)
        size = self.model.image_size
        m = torch.from_numpy(mask)[None, None].float().to(self.device)
        if m.shape[-2:] != (size, size):  # as add_new_mask: antialiased resize, then >= 0.5
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            m = (m >= 0.5).float()
        return self._anchor(frame, track, None, m, None)

    def remove_track(self, track: int) -> None:
        self._cond.pop(track, None)
        self._tracked.pop(track, None)

    def _anchor(self, frame: int, track: int, points: dict[str, torch.Tensor] | None,
                mask: torch.Tensor | None, prev: torch.Tensor | None) -> np.ndarray:
        """One frame's prompt decoded (with the track's memory when the frame was propagated
        before, as sam2 does for a correction), then encoded into memory like
        ``propagate_in_video_preflight``: from the low-res logits, binarized."""
        tracked = self._tracked.setdefault(track, {})
        cond = self._cond.setdefault(track, {})
        is_init = frame not in tracked
        others = {f: o for f, o in cond.items() if f != frame}
        if not is_init and not others:
            is_init = True  # nothing to remember: decode it like an image
        m = self.model
        with self._mode():
            feats = self._prepared(frame, None)
            out = m.track_step(
                frame_idx=frame, is_init_cond_frame=is_init,
                current_vision_feats=feats[1], current_vision_pos_embeds=feats[2],
                feat_sizes=feats[3], point_inputs=points, mask_inputs=mask,
                output_dict={"cond_frame_outputs": others, "non_cond_frame_outputs": {}},
                num_frames=self.length, track_in_reverse=tracked.get(frame, False),
                run_mem_encoder=False, prev_sam_mask_logits=prev if points is not None else None)
            low = out["pred_masks"]
            high = F.interpolate(low, size=(m.image_size, m.image_size), mode="bilinear",
                                 align_corners=False)
            features, pos = m._encode_new_memory(
                current_vision_feats=feats[1], feat_sizes=feats[3], pred_masks_high_res=high,
                object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
            cond[frame] = self._compact({**out, "maskmem_features": features,
                                         "maskmem_pos_enc": pos})
            return self._upscale(low)

    # -- propagation ----------------------------------------------------------------------

    def propagate(self, request: PropagationRequest, *, progress: Progress | None = None,
                  cancel: CancelToken | None = None,
                  sink: Callable[[FrameResult], object] | None = None) -> PropagationRun:
        visits = request.frames(self.length)
        ends = track_ends(request, self.anchors(), self.length)
        return PropagationRun(self._steps(request, visits, ends, cancel), len(visits),
                              progress=progress, cancel=cancel, sink=sink)

    def _steps(self, request: PropagationRequest, visits: list[int], ends: dict[int, int],
               cancel: CancelToken | None) -> Iterator[FrameResult]:
        d = request.direction
        reverse = d < 0
        memory: dict[int, dict[int, Out]] = {t: {} for t in ends}  # this run's own outputs
        lost: set[int] = set()
        m = self.model
        for index in visits:
            active = [t for t in ends if (ends[t] - index) * d >= 0 and t not in lost]
            if not active:
                return
            masks: dict[int, np.ndarray] = {}
            scores: dict[int, float] = {}
            lost_here: list[int] = []
            with self._mode():
                for t in active:
                    anchor = self._cond[t].get(index)
                    if anchor is not None:
                        out = anchor
                    else:
                        feats = self._prepared(index, cancel)
                        full = m.track_step(
                            frame_idx=index, is_init_cond_frame=False,
                            current_vision_feats=feats[1], current_vision_pos_embeds=feats[2],
                            feat_sizes=feats[3], point_inputs=None, mask_inputs=None,
                            output_dict={"cond_frame_outputs": self._cond[t],
                                         "non_cond_frame_outputs": memory[t]},
                            num_frames=self.length, track_in_reverse=reverse,
                            run_mem_encoder=True)
                        out = self._compact(full)
                        memory[t][index] = out
                        for old in [f for f in memory[t] if abs(index - f) >= self.window]:
                            del memory[t][old]
                        self._tracked.setdefault(t, {})[index] = reverse
                    score = float(torch.sigmoid(out["object_score_logits"].float()).item())
                    if (request.stop_when_lost and anchor is None
                            and score < request.lost_score):
                        lost_here.append(t)
                        continue
                    masks[t] = self._upscale(out["pred_masks"])
                    scores[t] = score
            lost.update(lost_here)
            yield FrameResult(index, masks, scores, tuple(lost_here))

    # -- frames and features --------------------------------------------------------------

    def _check_frame(self, frame: int) -> int:
        frame = int(frame)
        if not 0 <= frame < self.length:
            raise IndexError(f"frame {frame} out of range (0..{self.length - 1})")
        return frame

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        """Inference mode and autocast, with the video predictor's one setting the image
        model lacks (``binarize_mask_from_pts_for_mem_enc``: read by the memory encoder
        only, which the image path never runs); restored after."""
        m = self.model
        before = m.binarize_mask_from_pts_for_mem_enc
        m.binarize_mask_from_pts_for_mem_enc = True
        try:
            with inference(self.predictor.precision):
                yield
        finally:
            m.binarize_mask_from_pts_for_mem_enc = before

    def _key(self, index: int, rgb: np.ndarray) -> EmbeddingKey:
        name = self._frame_hash(index) if self._frame_hash is not None else array_hash(rgb)
        return EmbeddingKey(name, self.predictor.model_id)

    def _prepared(self, index: int, cancel: CancelToken | None) -> tuple[Any, ...]:
        """``_prepare_backbone_features`` of frame ``index``: (backbone_out, vision_feats,
        vision_pos_embeds, feat_sizes), from the two most recent frames', the embedding
        cache or the encoder."""
        with inference(self.predictor.precision):
            return tuple(self.model._prepare_backbone_features(self.features(index, cancel)))

    def features(self, index: int,
                 cancel: CancelToken | None = None) -> dict[str, list[torch.Tensor]]:
        """Frame ``index``'s ``forward_image`` output (``backbone_fpn``, ``vision_pos_enc``),
        rebuilt from the embedding cache or encoded (then cached); the last two are kept."""
        backbone = self._features.get(index)
        if backbone is None:
            with inference(self.predictor.precision):
                backbone = self._backbone(index, cancel)
            self._features.put(index, backbone)
        return backbone

    def _backbone(self, index: int, cancel: CancelToken | None) -> dict[str, list[torch.Tensor]]:
        rgb = check_image(self.frames.frame(index))
        if rgb.shape[:2] != self.hw:
            raise PredictorError(f"frame {index} is {rgb.shape[1]} x {rgb.shape[0]}, frame 0 "
                                 f"is {self.hw[1]} x {self.hw[0]}")
        key = self._key(index, rgb)
        cache = self.predictor.cache
        emb = cache.get(key)
        dtype = next(self.model.parameters()).dtype
        if emb is not None:
            feats = features_from_embedding(key, emb, self.device, dtype)
            image_embed, high_res = feats.image_embed, feats.high_res_feats
            self.from_cache += 1
        else:
            run = EncodeRun(self.predictor.encoder, [rgb], self.model.image_size, self.device)
            image_embed, high_res = encode_all(run, cancel)
            self.encoded += 1
            if self._cache_frames:
                cache.put(key, embeddings_from_features(image_embed, high_res, [rgb])[0])
        return video_backbone_out(self.model, image_embed, high_res,
                                  self._positions(high_res, image_embed))

    def _positions(self, high_res: list[torch.Tensor],
                   image_embed: torch.Tensor) -> list[torch.Tensor]:
        """The neck's sine positional encodings of the three levels (they depend only on the
        sizes): computed once."""
        if self._pos is None:
            encode = self.model.image_encoder.neck.position_encoding
            self._pos = [encode(torch.empty((1, 1, *x.shape[-2:]), device=self.device))
                         for x in (*high_res, image_embed)]
        return self._pos

    def _compact(self, out: Out) -> Out:
        """What a frame's output keeps, as ``_run_single_frame_inference`` keeps it: the
        memory in bfloat16 on the storage device, one shared copy of its positional
        encoding."""
        features = out["maskmem_features"]
        if features is not None:
            features = features.to(torch.bfloat16).to(self.storage)
        pos = out["maskmem_pos_enc"]
        if pos is not None:
            if self._maskmem_pos is None:
                self._maskmem_pos = [x[0:1].clone() for x in pos]
            pos = self._maskmem_pos
        return {"maskmem_features": features, "maskmem_pos_enc": pos,
                "pred_masks": out["pred_masks"].to(self.storage),
                "obj_ptr": out["obj_ptr"], "object_score_logits": out["object_score_logits"]}

    def _upscale(self, low: torch.Tensor) -> np.ndarray:
        """(1, 1, 256, 256) logits -> the frame-sized bool mask (bilinear, > 0)."""
        masks, _ = upscale_masks(low[0].float().to(self.device), self.hw)
        return masks[0]

    def close(self) -> None:
        self._cond.clear()
        self._tracked.clear()
        self._features.clear()
