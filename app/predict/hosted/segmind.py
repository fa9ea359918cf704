"""Segmind's ``sam-v2-image`` (``POST https://api.segmind.com/v1/sam-v2-image``, header
``x-api-key``).

Body: {image (base64 or URL), prompt (text; when given, coordinates are ignored),
coordinates "[x,y]" or "[[x,y],...]" (keep), remove_coordinates (same format, remove),
overlay_mask (False: the mask itself), base64 (True: JSON {"image": base64})}.
Reply: the mask image (image/jpeg or image/png), or JSON with a base64 image. Errors: 401
(key), 406 (not enough credits), 429, 500. No boxes and no scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np

from app.core.jobs import CancelToken, Progress, check
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import Capabilities, FindQuery, PredictorError, SourceKind
from app.predict.hosted.common import (
    HostedPredictor,
    api_key_from,
    decode_b64,
    image_b64,
    mask_from_image_bytes,
    proposals_from_masks,
    result_from_masks,
    split_components,
)
from app.predict.remote.http_session import HttpSession

DEFAULT_API_URL = "https://api.segmind.com/v1"
MODEL = "sam-v2-image"
ENV_KEY = "SEGMIND_API_KEY"


def coordinates(points: list[tuple[float, float]]) -> str:
    """Segmind's coordinate string: "[x,y]" for one point, "[[x,y],[x,y]]" for several."""
    pairs = [f"[{round(x)},{round(y)}]" for x, y in points]
    return pairs[0] if len(pairs) == 1 else f"[{','.join(pairs)}]"


class SegmindPredictor(HostedPredictor):
    """Clicks (positive and negative points) and text prompts through sam-v2-image (no
    example boxes: the API has no such prompt)."""

    provider = "Segmind"
    capabilities = Capabilities(SourceKind.HOSTED, "remote", text_prompts=True)

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        image_format: str = "jpeg",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        """``api_key`` falls back to ``settings["segmind_api_key"]`` then $SEGMIND_API_KEY."""
        key = api_key_from(api_key, ENV_KEY, "Segmind", settings, "segmind_api_key")
        url = api_url or (settings or {}).get("segmind_api_url") or DEFAULT_API_URL
        session = HttpSession(
            str(url), name="Segmind", headers={"x-api-key": key}, secrets=[key],
            timeout=timeout, retries=retries, backoff=backoff,
        )
        super().__init__(session, "segmind-sam-v2")
        self.image_format = image_format

    def _call(self, image: np.ndarray, fields: dict[str, Any], what: str) -> np.ndarray:
        h, w = image.shape[:2]
        body = {"image": image_b64(image, self.image_format), "overlay_mask": False,
                "base64": False, **fields}
        response = self.session.request("POST", f"/{MODEL}", json=body, what=what)
        return self._mask_of(response, h, w)

    def _mask_of(self, response: httpx.Response, h: int, w: int) -> np.ndarray:
        what = f"Segmind's reply to {MODEL}"
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind.startswith("image/"):
            return mask_from_image_bytes(response.content, h, w, what)
        if kind == "application/json":
            try:
                body = response.json()
            except ValueError:
                raise PredictorError(f"{what} is not valid JSON") from None
            data = body.get("image") if isinstance(body, Mapping) else None
            if not isinstance(data, str):
                raise PredictorError(f"{what} is JSON without an 'image' (base64)")
            return mask_from_image_bytes(decode_b64(data, what), h, w, what)
        raise PredictorError(f"{what} has content type {kind or 'none'!r}, not an image")

    def _predict(self, image: np.ndarray, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        if prompt.box is not None:
            raise PredictorError("Segmind's sam-v2-image takes no boxes: click instead")
        keep = [(p.x, p.y) for p in prompt.points if p.positive]
        drop = [(p.x, p.y) for p in prompt.points if not p.positive]
        if not keep:
            raise PredictorError("Segmind's sam-v2-image needs at least one positive click")
        fields: dict[str, Any] = {"prompt": "", "coordinates": coordinates(keep)}
        if drop:
            fields["remove_coordinates"] = coordinates(drop)
        mask = self._call(image, fields, "segmenting the clicked object")
        h, w = image.shape[:2]
        return result_from_masks([mask], [1.0 if mask.any() else 0.0], h, w)

    def _find(self, image: np.ndarray, query: FindQuery, cancel: CancelToken | None,
              progress: Progress | None, min_area: int = 16) -> list[MaskProposal]:
        """One request per text; each text's mask split into its connected parts, one
        proposal each (Segmind returns one mask and no score)."""
        found: list[MaskProposal] = []
        texts = [t.strip() for t in query.texts]
        for i, text in enumerate(texts):
            if progress is not None:
                progress(i, len(texts), f"finding {text!r}")
            check(cancel)
            mask = self._call(image, {"prompt": text}, f"finding {text!r}")
            parts = split_components(mask, min_area)
            found += proposals_from_masks(parts, [1.0] * len(parts), prompt=text)
        if progress is not None:
            progress(len(texts), len(texts), "done")
        return found
