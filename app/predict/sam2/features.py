"""SAM2's data at the edges of the model: cached float16 arrays <-> device tensors, and pixel
prompts -> the model's input frame.

The current image's features live on the device in the model's dtype (``ImageFeatures``);
the ``EmbeddingCache`` holds them as float16 numpy arrays (``Embedding``). These helpers
convert between the two and check what comes in, so ``SAM2Predictor`` only drives the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from app.core.types import EmbeddingKey, Prompt
from app.predict.base import PredictorError
from app.predict.cache.file_format import Embedding

ARRAY_NAMES = ("image_embed", "high_res_feats_0", "high_res_feats_1")
_F16_MAX = 65504.0


@dataclass
class ImageFeatures:
    """The current image's features on the device (the official predictor's ``_features``)."""

    key: EmbeddingKey
    image_embed: torch.Tensor  # (1, 256, 64, 64)
    high_res_feats: list[torch.Tensor]  # [(1, 32, 256, 256), (1, 64, 128, 128)]
    orig_hw: tuple[int, int]

    def as_official(self) -> dict[str, object]:
        return {"image_embed": self.image_embed, "high_res_feats": self.high_res_feats}


def features_from_embedding(
    key: EmbeddingKey, emb: Embedding, device: torch.device, dtype: torch.dtype
) -> ImageFeatures:
    """A cached embedding as device tensors in ``dtype``; PredictorError if it lacks an array."""
    tensors = []
    for name in ARRAY_NAMES:
        if name not in emb.arrays:
            raise PredictorError(f"embedding of image {key.image_hash[:12]} lacks {name!r}")
        tensors.append(torch.from_numpy(emb.arrays[name]).to(device, dtype))
    h, w = emb.image_size
    return ImageFeatures(key, tensors[0], tensors[1:], (int(h), int(w)))


def embeddings_from_features(
    image_embed: torch.Tensor, high_res: list[torch.Tensor], images: list[np.ndarray]
) -> list[Embedding]:
    """The encoder's batched outputs as one float16 ``Embedding`` per image of ``images``."""
    arrays = [_to_f16(t) for t in (image_embed, *high_res)]
    copy = len(images) > 1  # each embedding owns its memory (the LRU counts bytes)
    return [
        Embedding(
            {name: a[i:i + 1].copy() if copy else a
             for name, a in zip(ARRAY_NAMES, arrays, strict=True)},
            (int(im.shape[0]), int(im.shape[1])),
        )
        for i, im in enumerate(images)
    ]


def prompt_tensors(
    prompt: Prompt, orig_hw: tuple[int, int], resolution: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box corners (labels 2, 3) then points (1 positive, 0 negative), scaled to the
    model's input frame: (1, n, 2) float32 and (1, n) int32."""
    xy: list[tuple[float, float]] = []
    lab: list[int] = []
    if prompt.box is not None:
        b = prompt.box.normalized()
        xy += [(b.x0, b.y0), (b.x1, b.y1)]
        lab += [2, 3]
    for p in prompt.points:
        xy.append((p.x, p.y))
        lab.append(1 if p.positive else 0)
    h, w = orig_hw
    scaled = scale_points(np.array(xy, dtype=np.float32), w, h, resolution)
    coords = torch.from_numpy(scaled[None]).to(device)
    labels = torch.tensor([lab], dtype=torch.int32, device=device)
    return coords, labels


def scale_points(xy: np.ndarray, w: int, h: int, resolution: int) -> np.ndarray:
    """Pixels -> the model's input frame, as SAM2Transforms.transform_coords: x / w * 1024."""
    out = np.empty_like(xy, dtype=np.float32)
    out[..., 0] = xy[..., 0] / np.float32(w)
    out[..., 1] = xy[..., 1] / np.float32(h)
    out *= np.float32(resolution)
    return out


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` itself if it is a non-empty uint8 RGB (H, W, 3) array, else PredictorError."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise PredictorError(f"expected an RGB image (H, W, 3), got shape {shape}")
    if image.dtype != np.uint8:
        raise PredictorError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise PredictorError(f"image is empty: shape {image.shape}")
    return image


def _to_f16(t: torch.Tensor) -> np.ndarray:
    """Device tensor -> contiguous float16 numpy array (clamped to float16's range)."""
    t = t.float().clamp(-_F16_MAX, _F16_MAX).to(torch.float16).contiguous()
    return t.cpu().numpy()
