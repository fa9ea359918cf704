"""SAM2's prompt encoder + mask decoder as three graphs: one part computed once per image,
two computed per click (issue 14: a click decodes less).

In the decoder's ``TwoWayTransformer`` the first block's image side does not depend on the
prompt: the image tokens ``src = image_embed + dense`` with sam2's no-mask embedding as
``dense``, the keys and values of its cross-attention tokens -> image (``k_proj(src + pe)``,
``v_proj(src)``) and the queries of its cross-attention image -> tokens
(``q_proj(src + pe)``): three (4096 x 256) @ (256 x 128) products, ~13% of a click on ONNX
Runtime, and the more prompts a call decodes (sam2 repeats the image per prompt) the more.

- ``decoder_image.onnx``: image_embed (1, C, h, w) -> ``IMAGE_PARTS``: src (1, hw, C) and
  the three projections split into heads (1, heads, hw, C / downsample / heads).
- ``decoder.onnx``: the image parts, the high-res features and B prompts of N points (padded
  with one not-a-point as sam2's prompt encoder pads them when there is no box) -> all four
  mask tokens' logits (B, 4, 4h, 4w) and IoU scores (B, 4).
- ``decoder_mask.onnx``: the same with a mask input (B or 1, 1, 4h, 4w). The prompt encoder's
  mask embedding ends in a 1x1 convolution (16 -> C channels), a linear map, so the mask's
  share of each projection is a (hw x 16) @ (16 x 128) product with the two weights
  multiplied beforehand (in float64), added to the image part minus the no-mask embedding's
  share.

The rest is sam2's own modules (the later transformer blocks, the final attention, the
upscaling, the hypernetworks, the IoU head; its ``LayerNorm2d``s computed as one channels-last
layer norm each, ~10% of a click less), so the arithmetic is torch's up to rounding;
``check.py`` holds every graph to ``TOLERANCE`` at conversion. The multimask / single-mask
choice is made after the graph by sam2's code (``decoder.select_masks``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

IMAGE_FILE = "decoder_image.onnx"
POINTS_FILE = "decoder.onnx"
MASK_FILE = "decoder_mask.onnx"
IMAGE_PARTS = ("src", "k0", "v0", "q0")
PROMPT_INPUTS = (*IMAGE_PARTS, "high_res_feats_0", "high_res_feats_1", "point_coords",
                 "point_labels")


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads), as sam2's ``Attention._separate_heads``."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _attend(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
            ) -> torch.Tensor:
    """sam2's ``Attention`` after its three projections: q, k, v split into heads (a batch
    of 1 broadcasts) -> scaled dot-product attention -> heads recombined -> out_proj."""
    scale = 1.0 / math.sqrt(int(q.shape[-1]))
    weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * scale, dim=-1)
    out = torch.matmul(weights, v)
    b, h, n, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


def _layer_norm_2d(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """sam2's ``LayerNorm2d`` (over the channels of (B, C, H, W)) as one layer norm over the
    last axis of the channels-last tensor: a runtime's mean over a strided axis costs ~10x
    more than its fused layer norm plus the two transposes."""
    y = F.layer_norm(x.permute(0, 2, 3, 1), (int(norm.weight.shape[0]),), norm.weight,
                     norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2)


class ImagePart(nn.Module):
    """image_embed -> the prompt-independent parts of the first transformer block (without
    mask input)."""

    pe: torch.Tensor

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        prompt_encoder = model.sam_prompt_encoder
        layer: Any = model.sam_mask_decoder.transformer.layers[0]
        self.to_image: Any = layer.cross_attn_token_to_image
        self.to_tokens: Any = layer.cross_attn_image_to_token
        self.no_mask: Any = prompt_encoder.no_mask_embed
        with torch.no_grad():
            pe = prompt_encoder.get_dense_pe()
            self.register_buffer("pe", pe.flatten(2).permute(0, 2, 1).contiguous().clone())

    def forward(self, image_embed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        src = image_embed + self.no_mask.weight.reshape(1, -1, 1, 1)
        src = src.flatten(2).permute(0, 2, 1)
        keyed = src + self.pe
        heads = self.to_image.num_heads
        return (src, _heads(self.to_image.k_proj(keyed), heads),
                _heads(self.to_image.v_proj(src), heads),
                _heads(self.to_tokens.q_proj(keyed), self.to_tokens.num_heads))


class PromptPart(nn.Module):
    """The image parts + prompts (+ a mask input when ``with_mask``) -> all mask tokens'
    logits and IoU scores (sam2's ``MaskDecoder.predict_masks`` with the first block's
    image side given)."""

    pe: torch.Tensor
    dense_w: torch.Tensor
    dense_b: torch.Tensor
    k_w: torch.Tensor
    k_b: torch.Tensor
    v_w: torch.Tensor
    v_b: torch.Tensor
    q_w: torch.Tensor
    q_b: torch.Tensor

    def __init__(self, model: SAM2Base, with_mask: bool) -> None:
        super().__init__()
        self.prompt_encoder: Any = model.sam_prompt_encoder
        self.decoder: Any = model.sam_mask_decoder
        self.transformer: Any = self.decoder.transformer
        self.with_mask = with_mask
        layer = self.transformer.layers[0]
        with torch.no_grad():
            pe = self.prompt_encoder.get_dense_pe()
            self.register_buffer("pe", pe.flatten(2).permute(0, 2, 1).contiguous().clone())
            if with_mask:
                self._mask_weights(layer)

    def _mask_weights(self, layer: Any) -> None:
        """The last 1x1 convolution of the mask embedding folded into each projection
        (float64 products), and the no-mask embedding's share to take away."""
        down = self.prompt_encoder.mask_downscaling
        conv = down[-1]
        if len(down) != 7 or tuple(conv.kernel_size) != (1, 1):
            raise ValueError("the prompt encoder's mask embedding is not sam2's")
        w = conv.weight.detach().double().flatten(1)  # (C, 16)
        b = conv.bias.detach().double()
        nm = self.prompt_encoder.no_mask_embed.weight.detach().double()[0]
        self.register_buffer("dense_w", w.t().float().contiguous())  # (16, C)
        self.register_buffer("dense_b", (b - nm).float())
        for name, proj in (("k", layer.cross_attn_token_to_image.k_proj),
                           ("v", layer.cross_attn_token_to_image.v_proj),
                           ("q", layer.cross_attn_image_to_token.q_proj)):
            pw = proj.weight.detach().double()  # (D, C)
            self.register_buffer(f"{name}_w", (pw @ w).t().float().contiguous())  # (16, D)
            self.register_buffer(f"{name}_b", (pw @ (b - nm)).float())

    def _tokens(self, coords: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The output tokens followed by the prompt's point embeddings, and the index of the
        IoU token (as ``predict_masks``)."""
        d = self.decoder
        sparse = self.prompt_encoder._embed_points(coords, labels, pad=True)
        if d.pred_obj_scores:
            out = torch.cat([d.obj_score_token.weight, d.iou_token.weight,
                             d.mask_tokens.weight], dim=0)
            s = 1
        else:
            out = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)
            s = 0
        out = out.unsqueeze(0).expand(sparse.size(0), -1, -1)
        return torch.cat((out, sparse), dim=1), s

    def forward(self, src: torch.Tensor, k0: torch.Tensor, v0: torch.Tensor, q0: torch.Tensor,
                high_res_feats_0: torch.Tensor, high_res_feats_1: torch.Tensor,
                point_coords: torch.Tensor, point_labels: torch.Tensor,
                *mask_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, s = self._tokens(point_coords, point_labels)
        if self.with_mask:
            src, k0, v0, q0 = self._with_mask(mask_input[0], src, k0, v0, q0)
        queries, keys = self._first_block(tokens, src, k0, v0, q0)
        t = self.transformer
        for layer in t.layers[1:]:
            queries, keys = layer(queries=queries, keys=keys, query_pe=tokens, key_pe=self.pe)
        attn = t.final_attn_token_to_image(q=queries + tokens, k=keys + self.pe, v=keys)
        hs = t.norm_final_attn(queries + attn)
        return self._masks(hs, keys, s, src.shape[-1], [high_res_feats_0, high_res_feats_1])

    def _with_mask(self, mask: torch.Tensor, src: torch.Tensor, k0: torch.Tensor,
                   v0: torch.Tensor, q0: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The image parts with the mask's embedding in place of the no-mask one."""
        down = self.prompt_encoder.mask_downscaling
        hidden = mask
        for conv, norm, act in (down[0:3], down[3:6]):
            hidden = act(_layer_norm_2d(norm, conv(hidden)))  # (B, 16, h, w) in the end
        hidden = hidden.flatten(2).permute(0, 2, 1)
        layer = self.transformer.layers[0]
        heads = layer.cross_attn_token_to_image.num_heads
        return (src + (torch.matmul(hidden, self.dense_w) + self.dense_b),
                k0 + _heads(torch.matmul(hidden, self.k_w) + self.k_b, heads),
                v0 + _heads(torch.matmul(hidden, self.v_w) + self.v_b, heads),
                q0 + _heads(torch.matmul(hidden, self.q_w) + self.q_b,
                            layer.cross_attn_image_to_token.num_heads))

    def _first_block(self, tokens: torch.Tensor, src: torch.Tensor, k0: torch.Tensor,
                     v0: torch.Tensor, q0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sam2's ``TwoWayAttentionBlock.forward`` of the first block, its image side given."""
        layer = self.transformer.layers[0]
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=tokens, k=tokens, v=tokens)
        else:
            q = tokens + tokens
            queries = tokens + layer.self_attn(q=q, k=q, v=tokens)
        queries = layer.norm1(queries)
        to_image = layer.cross_attn_token_to_image
        q = _heads(to_image.q_proj(queries + tokens), to_image.num_heads)
        queries = layer.norm2(queries + _attend(to_image, q, k0, v0))
        queries = layer.norm3(queries + layer.mlp(queries))
        to_tokens = layer.cross_attn_image_to_token
        keyed = queries + tokens
        k = _heads(to_tokens.k_proj(keyed), to_tokens.num_heads)
        v = _heads(to_tokens.v_proj(queries), to_tokens.num_heads)
        keys = layer.norm4(src + _attend(to_tokens, q0, k, v))
        return queries, keys

    def _masks(self, hs: torch.Tensor, keys: torch.Tensor, s: int, channels: int,
               high_res: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rest of ``predict_masks``: upscaling, hypernetworks, IoU head."""
        d = self.decoder
        h, w = self.prompt_encoder.image_embedding_size
        b = keys.shape[0]
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1:(s + 1 + d.num_mask_tokens), :]
        src = keys.transpose(1, 2).reshape(b, channels, h, w)
        if not d.use_high_res_features:
            upscaled = d.output_upscaling(src)
        else:
            dc1, ln1, act1, dc2, act2 = d.output_upscaling
            feat_s0, feat_s1 = high_res
            upscaled = act1(_layer_norm_2d(ln1, dc1(src) + feat_s1))
            upscaled = act2(dc2(upscaled) + feat_s0)
        hyper_in = torch.stack([d.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                                for i in range(d.num_mask_tokens)], dim=1)
        b, c, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, uh * uw)).view(b, -1, uh, uw)
        return masks, d.iou_prediction_head(iou_token_out)
