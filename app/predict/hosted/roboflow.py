"""Roboflow's inference API (hosted, or a self-hosted inference server, or `maskloop serve`):
clicks and boxes through SAM2, "find all" through SAM3 concept segmentation.

- ``POST {api_url}/sam2/embed_image?api_key=...`` {image, image_id, sam2_version_id}
  -> {"image_id", "time"}: warms the server's embedding cache.
- ``POST {api_url}/sam2/segment_image?api_key=...`` {image {"type": "base64", "value"},
  image_id, prompts {"prompts": [{"box": {x, y, width, height} CENTRE-based, "points":
  [{x, y, positive}]}]}, sam2_version_id, multimask_output, format "json" | "rle",
  save_logits_to_cache, load_logits_from_cache} -> {"predictions": [{"masks": polygons |
  RLE, "confidence", "format"}], "time"}: one best mask per prompt.
- ``POST {api_url}/sam3/concept_segment?api_key=...``: texts and example boxes
  (sam3_concepts.py).

Schema: roboflow/inference ``inference/core/entities/requests/sam2.py``,
``responses/sam2.py``; errors and shared parts in roboflow_schema.py. The SAM3 click backend
(``/sam3/visual_segment``) is roboflow_sam3.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.core.jobs import CancelToken, Progress
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import Capabilities, FindQuery, PredictorError, SourceKind
from app.predict.hosted.common import HostedPredictor, api_key_from, image_b64, result_from_masks
from app.predict.hosted.roboflow_schema import (  # noqa: F401  (prompt_to_roboflow: re-export)
    DEFAULT_API_URL,
    ENV_KEY,
    RoboflowSession,
    decode_prediction,
    predictions_of,
    prompt_to_roboflow,
)
from app.predict.hosted.sam3_concepts import find_concepts

SAM2_VERSIONS = ("hiera_tiny", "hiera_small", "hiera_b_plus", "hiera_large")


class RoboflowPredictor(HostedPredictor):
    """Clicks and boxes through /sam2/segment_image; texts and example boxes ("find all
    like this") through /sam3/concept_segment."""

    provider = "Roboflow"
    capabilities = Capabilities(SourceKind.HOSTED, "remote", text_prompts=True,
                                exemplar_prompts=True)
    embed_route = "/sam2/embed_image"
    segment_route = "/sam2/segment_image"

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        sam2_version_id: str = "hiera_large",
        mask_format: str = "rle",
        image_format: str = "jpeg",
        settings: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        warm_embeddings: bool = True,
    ) -> None:
        """``api_key`` falls back to ``settings["roboflow_api_key"]`` then $API_KEY;
        ``api_url`` to a self-hosted inference server or MaskLoop's own server.
        ``mask_format`` "rle" (keeps holes) or "json" (polygons, outer rings only)."""
        if sam2_version_id not in SAM2_VERSIONS:
            raise PredictorError(f"unknown sam2_version_id {sam2_version_id!r}; use one of "
                                 f"{', '.join(SAM2_VERSIONS)}")
        if mask_format not in ("rle", "json"):
            raise PredictorError(f"mask_format must be 'rle' or 'json', not {mask_format!r}")
        key = api_key_from(api_key, ENV_KEY, "Roboflow", settings, "roboflow_api_key")
        url = api_url or (settings or {}).get("roboflow_api_url") or DEFAULT_API_URL
        session = RoboflowSession(
            str(url), name="Roboflow", params={"api_key": key}, secrets=[key],
            timeout=timeout, retries=retries, backoff=backoff,
        )
        self.version = sam2_version_id
        super().__init__(session, self.model_name())
        self.mask_format = mask_format
        self.image_format = image_format
        self.warm_embeddings = warm_embeddings
        self._uploaded: dict[EmbeddingKey, str] = {}

    def model_name(self) -> str:
        """The model id (part of every embedding key)."""
        return f"roboflow-sam2-{self.version}"

    def version_fields(self) -> dict[str, Any]:
        """The model-choosing fields of the embed and segment requests."""
        return {"sam2_version_id": self.version}

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        """Keep the image; also ask the server to embed it now (its cache is keyed by
        ``image_id`` = the content hash), so the first click is fast."""
        key = super().embed(image, image_hash, cancel)
        if self.warm_embeddings and key not in self._uploaded:
            self._warm(image, key)
        return key

    def _warm(self, image: np.ndarray, key: EmbeddingKey) -> None:
        """Have the server embed ``image`` under ``key``'s id."""
        body = {"image": self._image_field(image), "image_id": key.image_hash,
                **self.version_fields()}
        reply = self.session.json("POST", self.embed_route, json=body,
                                  what="embedding the image")
        self._uploaded[key] = self._image_id(reply)

    def _image_id(self, reply: Any) -> str:
        if not isinstance(reply, Mapping) or "image_id" not in reply:
            raise PredictorError(f"Roboflow's reply to {self.embed_route} lacks 'image_id'")
        return str(reply["image_id"])

    def _image_field(self, image: np.ndarray) -> dict[str, str]:
        return {"type": "base64", "value": image_b64(image, self.image_format)}

    def _predict(self, image: np.ndarray, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        h, w = image.shape[:2]
        body: dict[str, Any] = {
            "image": self._image_field(image),
            "image_id": self._uploaded.get(key, key.image_hash),
            "prompts": {"prompts": [prompt_to_roboflow(prompt)]},
            **self.version_fields(),
            "multimask_output": bool(prompt.multimask),
            "format": self.mask_format,
            # the server keeps low-res logits per prompt set: refinement happens there
            "save_logits_to_cache": True,
            "load_logits_from_cache": prompt.mask_input is not None,
        }
        reply = self.session.json("POST", self.segment_route, json=body,
                                  what="segmenting the image")
        what = f"Roboflow's reply to {self.segment_route}"
        decoded = [decode_prediction(p, h, w, what) for p in predictions_of(reply, what)]
        return result_from_masks([m for m, _ in decoded], [c for _, c in decoded], h, w)

    def _find(self, image: np.ndarray, query: FindQuery, cancel: CancelToken | None,
              progress: Progress | None) -> list[MaskProposal]:
        """Every instance of the query's texts and example boxes (SAM3 concepts)."""
        return find_concepts(
            self.session, image, query,
            mask_format="rle" if self.mask_format == "rle" else "polygon",
            image_format=self.image_format, cancel=cancel, progress=progress,
        )

    def close(self) -> None:
        self._uploaded.clear()
        super().close()
