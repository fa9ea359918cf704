"""Roboflow's inference API (hosted, or a self-hosted inference server, or `maskloop serve`).

- ``POST {api_url}/sam2/embed_image?api_key=...`` {image, image_id, sam2_version_id}
  -> {"image_id", "time"}: warms the server's embedding cache.
- ``POST {api_url}/sam2/segment_image?api_key=...`` {image {"type": "base64", "value"},
  image_id, prompts {"prompts": [{"box": {x, y, width, height} CENTRE-based, "points":
  [{x, y, positive}]}]}, sam2_version_id, multimask_output, format "json" | "rle",
  save_logits_to_cache, load_logits_from_cache} -> {"predictions": [{"masks": polygons |
  RLE, "confidence", "format"}], "time"}: one best mask per prompt.
- ``POST {api_url}/sam3/concept_segment?api_key=...`` {image, prompts: [{"type": "text",
  "text"}], format, output_prob_thresh} -> {"prompt_results": [{"prompt_index", "echo",
  "predictions": [{"masks", "confidence", "format"}]}], "time"}: every matching instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import Capabilities, PredictorError, SourceKind
from app.predict.hosted.common import (
    HostedPredictor,
    api_key_from,
    as_image,
    image_b64,
    mask_from_polygons,
    mask_from_rle,
    proposals_from_masks,
    result_from_masks,
)
from app.predict.remote.http_session import HttpSession

DEFAULT_API_URL = "https://serverless.roboflow.com"
SAM2_VERSIONS = ("hiera_tiny", "hiera_small", "hiera_b_plus", "hiera_large")
ENV_KEY = "API_KEY"


def prompt_to_roboflow(prompt: Prompt) -> dict[str, Any]:
    """One MaskLoop prompt -> one Roboflow SAM2 prompt (its box is centre-based)."""
    out: dict[str, Any] = {}
    if prompt.box is not None:
        b = prompt.box.normalized()
        out["box"] = {"x": (b.x0 + b.x1) / 2, "y": (b.y0 + b.y1) / 2,
                      "width": b.width, "height": b.height}
    if prompt.points:
        out["points"] = [{"x": p.x, "y": p.y, "positive": bool(p.positive)}
                         for p in prompt.points]
    return out


def decode_prediction(pred: Any, height: int, width: int, what: str) -> tuple[np.ndarray, float]:
    """One Roboflow prediction {"masks", "confidence", "format"} -> (mask, confidence)."""
    if not isinstance(pred, Mapping) or "masks" not in pred:
        raise PredictorError(f"{what}: a prediction lacks 'masks'")
    try:
        confidence = float(pred.get("confidence", 0.0))
    except (TypeError, ValueError):
        raise PredictorError(f"{what}: 'confidence' is not a number") from None
    masks = pred["masks"]
    fmt = pred.get("format") or ("rle" if isinstance(masks, Mapping) else "polygon")
    if fmt == "rle" or isinstance(masks, Mapping):
        return mask_from_rle(masks, height, width, what), confidence
    if fmt in ("polygon", "json") and isinstance(masks, list):
        return mask_from_polygons(masks, height, width, what), confidence
    raise PredictorError(f"{what}: unknown mask format {fmt!r}")


class RoboflowPredictor(HostedPredictor):
    """Clicks and boxes through /sam2/segment_image; text through /sam3/concept_segment."""

    provider = "Roboflow"
    capabilities = Capabilities(SourceKind.HOSTED, "remote", text_prompts=True)

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        sam2_version_id: str = "hiera_large",
        mask_format: str = "rle",
        image_format: str = "jpeg",
        text_threshold: float = 0.5,
        settings: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        warm_embeddings: bool = True,
    ) -> None:
        """``api_key`` falls back to ``settings["roboflow_api_key"]`` then $API_KEY;
        ``api_url`` to a self-hosted inference server or MaskLoop's own server."""
        if sam2_version_id not in SAM2_VERSIONS:
            raise PredictorError(f"unknown sam2_version_id {sam2_version_id!r}; use one of "
                                 f"{', '.join(SAM2_VERSIONS)}")
        if mask_format not in ("rle", "json"):
            raise PredictorError(f"mask_format must be 'rle' or 'json', not {mask_format!r}")
        key = api_key_from(api_key, ENV_KEY, "Roboflow", settings, "roboflow_api_key")
        url = api_url or (settings or {}).get("roboflow_api_url") or DEFAULT_API_URL
        session = HttpSession(
            str(url), name="Roboflow", params={"api_key": key}, secrets=[key],
            timeout=timeout, retries=retries, backoff=backoff,
        )
        super().__init__(session, f"roboflow-sam2-{sam2_version_id}")
        self.version = sam2_version_id
        self.mask_format = mask_format
        self.image_format = image_format
        self.text_threshold = text_threshold
        self.warm_embeddings = warm_embeddings
        self._uploaded: dict[EmbeddingKey, str] = {}

    def embed(self, image: np.ndarray, image_hash: str | None = None, cancel=None) -> EmbeddingKey:
        """Keep the image; also ask the server to embed it now (its cache is keyed by
        ``image_id`` = the content hash), so the first click is fast."""
        key = super().embed(image, image_hash, cancel)
        if self.warm_embeddings and key not in self._uploaded:
            body = {"image": self._image_field(image), "image_id": key.image_hash,
                    "sam2_version_id": self.version}
            reply = self.session.json("POST", "/sam2/embed_image", json=body,
                                      what="embedding the image")
            if not isinstance(reply, Mapping) or "image_id" not in reply:
                raise PredictorError("Roboflow's reply to /sam2/embed_image lacks 'image_id'")
            self._uploaded[key] = str(reply["image_id"])
        return key

    def _image_field(self, image: np.ndarray) -> dict[str, str]:
        return {"type": "base64", "value": image_b64(image, self.image_format)}

    def _predict(self, image: np.ndarray, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        h, w = image.shape[:2]
        body: dict[str, Any] = {
            "image": self._image_field(image),
            "image_id": self._uploaded.get(key, key.image_hash),
            "prompts": {"prompts": [prompt_to_roboflow(prompt)]},
            "sam2_version_id": self.version,
            "multimask_output": bool(prompt.multimask),
            "format": self.mask_format,
            # the server keeps low-res logits per prompt set: refinement happens there
            "save_logits_to_cache": True,
            "load_logits_from_cache": prompt.mask_input is not None,
        }
        reply = self.session.json("POST", "/sam2/segment_image", json=body,
                                  what="segmenting the image")
        what = "Roboflow's reply to /sam2/segment_image"
        preds = reply.get("predictions") if isinstance(reply, Mapping) else None
        if not isinstance(preds, list):
            raise PredictorError(f"{what} lacks a 'predictions' list")
        decoded = [decode_prediction(p, h, w, what) for p in preds]
        return result_from_masks([m for m, _ in decoded], [c for _, c in decoded], h, w)

    def find_all(self, image: EmbeddingKey | np.ndarray, text: str) -> list[MaskProposal]:
        """Every instance of ``text`` through SAM3 concept segmentation."""
        if not text.strip():
            raise PredictorError("find all needs a text such as 'person'")
        arr = as_image(self, image)
        h, w = arr.shape[:2]
        body = {
            "image": self._image_field(arr),
            "prompts": [{"type": "text", "text": text.strip()}],
            "format": "rle" if self.mask_format == "rle" else "polygon",
            "output_prob_thresh": self.text_threshold,
        }
        reply = self.session.json("POST", "/sam3/concept_segment", json=body,
                                  what=f"finding {text.strip()!r}")
        what = "Roboflow's reply to /sam3/concept_segment"
        results = reply.get("prompt_results") if isinstance(reply, Mapping) else None
        if not isinstance(results, list):
            raise PredictorError(f"{what} lacks a 'prompt_results' list")
        masks, scores = [], []
        for result in results:
            preds = result.get("predictions") if isinstance(result, Mapping) else None
            if not isinstance(preds, list):
                raise PredictorError(f"{what}: a prompt result lacks 'predictions'")
            for p in preds:
                mask, conf = decode_prediction(p, h, w, what)
                masks.append(mask)
                scores.append(conf)
        return proposals_from_masks(masks, scores)

    def close(self) -> None:
        self._uploaded.clear()
        super().close()
