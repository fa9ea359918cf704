"""SAM3 on Roboflow for everything: clicks and boxes through promptable visual segmentation
(PVS), texts and example boxes through concept segmentation (sam3_concepts.py).

- ``POST {api_url}/sam3/embed_image?api_key=...`` {image, image_id} -> {"image_id",
  "time"}: warms the PVS embedding cache. A server that forwards SAM3 to Roboflow's cloud
  answers 501 ("not supported in remote execution mode"): then each click uploads the image.
- ``POST {api_url}/sam3/visual_segment?api_key=...``: the SAM2 request (``Sam2SegmentationRequest``
  {image, image_id, prompts {"prompts": [{"box": {x, y, width, height} CENTRE-based,
  "points": [{x, y, positive}]}]}, multimask_output, format "json" | "rle",
  save_logits_to_cache, load_logits_from_cache}) -> {"predictions": [...], "time"}: the
  single best mask (multimask_output only sets how many the model weighs); one prompt a
  request.

Schema: roboflow/inference ``inference/core/interfaces/http/http_api.py`` (the routes take
``Sam2EmbeddingRequest`` / ``Sam2SegmentationRequest`` and set model_id to
sam3/sam3_interactive), ``inference/models/sam3/visual_segmentation.py`` and
``docs/foundation/sam3.md`` ("the PVS box is center-anchored XYWH, unlike concept
segmentation boxes which are top-left anchored").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from app.core.types import EmbeddingKey
from app.predict.base import PredictorError
from app.predict.hosted.roboflow import RoboflowPredictor

NOT_OFFERED = (404, 501)  # the server runs no PVS embedding route: click without warming


class RoboflowSam3Predictor(RoboflowPredictor):
    """Clicks and boxes through /sam3/visual_segment; texts and example boxes through
    /sam3/concept_segment."""

    provider = "Roboflow SAM3"
    embed_route = "/sam3/embed_image"
    segment_route = "/sam3/visual_segment"

    def __init__(self, api_key: str | None = None, api_url: str | None = None, *,
                 settings: Mapping[str, Any] | None = None, **options: Any) -> None:
        """As ``RoboflowPredictor`` (same key and URL settings), without a SAM2 version."""
        if "sam2_version_id" in options:
            raise PredictorError("Roboflow SAM3 has no sam2_version_id (it runs one model)")
        super().__init__(api_key, api_url, settings=settings, **options)

    def model_name(self) -> str:
        return "roboflow-sam3"

    def version_fields(self) -> dict[str, Any]:
        return {}  # the routes choose the model themselves

    def _warm(self, image: np.ndarray, key: EmbeddingKey) -> None:
        """Warm the server's PVS embedding cache, where it has one (else stop trying)."""
        body = {"image": self._image_field(image), "image_id": key.image_hash}
        response = self.session.request("POST", self.embed_route, json=body,
                                        ok=(200, *NOT_OFFERED), what="embedding the image")
        if response.status_code in NOT_OFFERED:
            self.warm_embeddings = False  # every click sends the image anyway
            return
        try:
            reply = response.json()
        except ValueError:
            reply = None
        self._uploaded[key] = self._image_id(reply)
