"""What Roboflow's SAM routes share: the session whose errors say what the API said, the
SAM2-style prompt (used by ``/sam2/segment_image`` and ``/sam3/visual_segment``) and the
decoding of one prediction.

From roboflow/inference (``inference/core/entities/requests/sam2.py``, ``responses/sam2.py``,
``responses/sam3.py``, ``inference/core/interfaces/http/error_handlers.py``):

- a SAM2-style prompt is {"box": {x, y, width, height} CENTRE-based, "points": [{x, y,
  positive}]} (``Sam2PromptSet.to_sam2_inputs`` subtracts half the size from x, y);
- a prediction is {"masks": polygons [[[x, y], ...], ...] (outer rings only: cv2
  RETR_EXTERNAL drops holes) or COCO RLE {"size": [h, w], "counts": str}, "confidence",
  "format": "polygon" | "rle"};
- errors: 401/403 {"message"} (key), 402 (credits), 423 (usage paused), 400 {"message"}
  (bad image or model input), 404, 422 {"detail": [{"loc", "msg", ...}]} (FastAPI's request
  validation), 500 {"message"}, 501 (a route this server does not run, e.g.
  /sam3/embed_image on a server that forwards SAM3 to Roboflow's cloud).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np

from app.core.types import Prompt
from app.predict.base import PredictorError
from app.predict.hosted.common import mask_from_polygons, mask_from_rle
from app.predict.remote.http_session import HttpSession, error_detail

DEFAULT_API_URL = "https://serverless.roboflow.com"
ENV_KEY = "API_KEY"


def validation_detail(response: httpx.Response, limit: int = 300) -> str | None:
    """FastAPI's 422 body {"detail": [{"loc": [...], "msg"}]} -> "body.prompts.0: msg; ..."."""
    try:
        body = response.json()
    except ValueError:
        return None
    errors = body.get("detail") if isinstance(body, Mapping) else None
    if not isinstance(errors, list) or not errors:
        return None
    parts = []
    for err in errors:
        if not isinstance(err, Mapping):
            continue
        loc = ".".join(str(p) for p in err.get("loc") or ())
        msg = str(err.get("msg") or err.get("type") or "invalid")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)[:limit] or None


class RoboflowSession(HttpSession):
    """An HttpSession whose errors name what Roboflow's replies mean (credits, paused
    usage, schema errors, routes a server does not offer)."""

    def status_error(self, response: httpx.Response, what: str, attempts: int) -> PredictorError:
        code = response.status_code
        try:
            route = response.request.url.path
        except RuntimeError:  # a response built by hand has no request
            route = "?"
        if code == 422:
            detail = self.redact(validation_detail(response) or error_detail(response))
            return PredictorError(f"{self.name} refused {what}: the request does not match "
                                  f"its schema (HTTP 422 from {route}): {detail}")
        detail = self.redact(error_detail(response))
        if code == 402:
            return PredictorError(f"{self.name} refused {what}: the workspace has no credits "
                                  f"left (HTTP 402): {detail}")
        if code == 423:
            return PredictorError(f"{self.name} refused {what}: API usage of this workspace is "
                                  f"paused (HTTP 423): {detail}")
        if code in (404, 405, 501):
            return PredictorError(f"{self.name} at {self.redact(self.base_url)} does not offer "
                                  f"{route} (HTTP {code}): {detail}")
        return super().status_error(response, what, attempts)


def prompt_to_roboflow(prompt: Prompt) -> dict[str, Any]:
    """One MaskLoop prompt -> one Roboflow SAM2-style prompt (its box is centre-based)."""
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


def predictions_of(reply: Any, what: str) -> list[Any]:
    """The "predictions" list of a SAM2-style reply (PredictorError naming ``what``)."""
    preds = reply.get("predictions") if isinstance(reply, Mapping) else None
    if not isinstance(preds, list):
        raise PredictorError(f"{what} lacks a 'predictions' list")
    return preds
