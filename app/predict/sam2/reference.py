"""The official SAM2ImagePredictor's maths, line by line, without torchvision.

``official_features`` is ``SAM2ImagePredictor.set_image`` (with torchvision's ``ToTensor``,
``Resize((1024, 1024))`` (bilinear, antialiased since torchvision 0.17) and ``Normalize``
written with torch), and ``official_predict`` is ``SAM2ImagePredictor.predict`` +
``_prep_prompts`` + ``_predict`` + ``SAM2Transforms.postprocess_masks`` (no hole filling:
``max_hole_area=0``). They are the "raw sam2" baseline the benchmark compares the predictor
with, and the reference the tests check the predictor against. Call them under
``torch.inference_mode()`` (and the device's autocast).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base

BB_FEAT_SIZES = [(256, 256), (128, 128), (64, 64)]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


_STRIP_BYTES = 64 << 20
"""float32 pixels converted and resized at once by ``preprocess`` (larger images go in strips)."""


def preprocess(image: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> normalised float32 (1, 3, resolution, resolution) on device.

    Same as ToTensor -> Resize((r, r)) (bilinear, antialias=True) -> Normalize(mean, std).
    """
    # MPS lacks the antialiased bilinear kernel in some torch versions: resize on the CPU.
    work = torch.device("cpu") if device.type == "mps" else device
    x = resize_square(image, resolution, work)
    mean = torch.tensor(IMAGENET_MEAN, device=work).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=work).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(device)


def resize_square(image: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """``F.interpolate(ToTensor(image), (size, size), bilinear, antialias=True)`` in bounded
    memory: (1, 3, size, size) float32 in 0..1.

    torch's antialiased kernel resizes the width first, through an (H, size) float image:
    12 GB for a 1 x 1,000,000 strip. Here an image over ``_STRIP_BYTES`` as float32 is resized
    one pass at a time, the longer side first, in strips of at most ``_STRIP_BYTES``, when it
    or torch's intermediate would be larger, so no intermediate exceeds ``_STRIP_BYTES`` plus
    size x (shorter side) x 12 bytes. Width first
    (images at least as wide as tall) gives the very same numbers as the one-call resize;
    height first differs by float rounding (~2e-7)."""
    h, w = image.shape[:2]
    if h * max(w, size) * 12 <= _STRIP_BYTES:  # the image and torch's (H, size) pass
        return _resize(_to_float(image, device), (size, size))
    if h <= w:
        rows = max(1, _STRIP_BYTES // (w * 12))
        parts = [_resize(_to_float(image[i:i + rows], device), (min(rows, h - i), size))
                 for i in range(0, h, rows)]
        return _resize(torch.cat(parts, dim=2), (size, size))
    cols = max(1, _STRIP_BYTES // (h * 12))
    parts = [_resize(_to_float(image[:, j:j + cols], device), (size, min(cols, w - j)))
             for j in range(0, w, cols)]
    return _resize(torch.cat(parts, dim=3), (size, size))


def _to_float(image: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return x.permute(2, 0, 1).float().div_(255.0)[None]


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def features_from_batch(model: SAM2Base, batch: torch.Tensor) -> dict[str, object]:
    """``set_image_batch`` after the transforms: the image encoder, no_mem_embed and the
    reshape to {"image_embed": (B,256,64,64), "high_res_feats": [(B,32,256,256),
    (B,64,128,128)]}."""
    batch_size = batch.shape[0]
    backbone_out = model.forward_image(batch)
    _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    feats = [
        feat.permute(1, 2, 0).view(batch_size, -1, *feat_size)
        for feat, feat_size in zip(vision_feats[::-1], BB_FEAT_SIZES[::-1], strict=True)
    ][::-1]
    return {"image_embed": feats[-1], "high_res_feats": feats[:-1]}


def official_features(model: SAM2Base, image: np.ndarray) -> dict[str, object]:
    """``SAM2ImagePredictor.set_image(image)._features`` for one RGB uint8 image."""
    batch = preprocess(image, model.image_size, model.device)
    return features_from_batch(model, batch)


def official_predict(
    model: SAM2Base,
    features: dict[str, object],
    orig_hw: tuple[int, int],
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
    multimask_output: bool = True,
    return_logits: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SAM2ImagePredictor.predict(...)``: masks (C, H, W) float32, ious (C,), low-res
    logits (C, 256, 256)."""
    device = model.device
    resolution = model.image_size
    unnorm_coords = labels = unnorm_box = mask_t = None
    if point_coords is not None:
        assert point_labels is not None
        coords = torch.as_tensor(point_coords, dtype=torch.float, device=device)
        unnorm_coords = _transform_coords(coords, orig_hw, resolution)
        labels = torch.as_tensor(point_labels, dtype=torch.int, device=device)
        if len(unnorm_coords.shape) == 2:
            unnorm_coords, labels = unnorm_coords[None, ...], labels[None, ...]
    if box is not None:
        box_t = torch.as_tensor(box, dtype=torch.float, device=device)
        unnorm_box = _transform_coords(box_t.reshape(-1, 2, 2), orig_hw, resolution)
    if mask_input is not None:
        mask_t = torch.as_tensor(mask_input, dtype=torch.float, device=device)
        if len(mask_t.shape) == 3:
            mask_t = mask_t[None, :, :, :]

    concat_points: tuple[torch.Tensor, torch.Tensor] | None = None
    if unnorm_coords is not None and labels is not None:
        concat_points = (unnorm_coords, labels)
    if unnorm_box is not None:
        box_coords = unnorm_box.reshape(-1, 2, 2)
        box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=unnorm_box.device)
        box_labels = box_labels.repeat(unnorm_box.size(0), 1)
        if concat_points is not None:
            concat_points = (torch.cat([box_coords, concat_points[0]], dim=1),
                             torch.cat([box_labels, concat_points[1]], dim=1))
        else:
            concat_points = (box_coords, box_labels)

    sparse, dense = model.sam_prompt_encoder(points=concat_points, boxes=None, masks=mask_t)
    batched_mode = concat_points is not None and concat_points[0].shape[0] > 1
    image_embed = features["image_embed"]
    high_res = features["high_res_feats"]
    assert isinstance(image_embed, torch.Tensor) and isinstance(high_res, list)
    low_res_masks, iou_predictions, _, _ = model.sam_mask_decoder(
        image_embeddings=image_embed[-1].unsqueeze(0),
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=batched_mode,
        high_res_features=[level[-1].unsqueeze(0) for level in high_res],
    )
    masks = F.interpolate(low_res_masks.float(), orig_hw, mode="bilinear", align_corners=False)
    low_res_masks = torch.clamp(low_res_masks, -32.0, 32.0)
    if not return_logits:
        masks = masks > 0.0
    return (
        masks.squeeze(0).float().detach().cpu().numpy(),
        iou_predictions.squeeze(0).float().detach().cpu().numpy(),
        low_res_masks.squeeze(0).float().detach().cpu().numpy(),
    )


def _transform_coords(
    coords: torch.Tensor, orig_hw: tuple[int, int], resolution: int
) -> torch.Tensor:
    """``SAM2Transforms.transform_coords(normalize=True)``: pixels -> model input frame."""
    h, w = orig_hw
    coords = coords.clone()
    coords[..., 0] = coords[..., 0] / w
    coords[..., 1] = coords[..., 1] / h
    return coords * resolution
