"""fal.ai's SAM2 apps through fal's queue protocol (``Authorization: Key $FAL_KEY``).

- ``fal-ai/sam2/image``: {image_url (a data URI is fine), prompts [{x, y, label 1|0}],
  box_prompts [{x_min, y_min, x_max, y_max}], apply_mask, sync_mode, output_format}
  -> {"image": {url, content_type, width, height, ...}}: one mask image.
- ``fal-ai/sam2/auto-segment``: {image_url, points_per_side, pred_iou_thresh,
  stability_score_thresh, min_mask_region_area, sync_mode}
  -> {"combined_mask": File, "individual_masks": [File, ...]}.
- Queue: ``POST {queue}/{app}`` -> {request_id, status_url, response_url, ...};
  ``GET status_url`` -> {"status": IN_QUEUE | IN_PROGRESS | COMPLETED, ...};
  ``GET response_url`` -> the app's output. File URLs may be data URIs (sync_mode) or
  links, which are fetched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from app.core.jobs import CancelToken, check
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import Capabilities, EverythingOptions, PredictorError, SourceKind
from app.predict.hosted.common import (
    HostedPredictor,
    api_key_from,
    data_uri,
    decode_b64,
    mask_from_image_bytes,
    proposals_from_masks,
    result_from_masks,
)
from app.predict.remote.http_session import HttpSession

DEFAULT_QUEUE_URL = "https://queue.fal.run"
IMAGE_APP = "fal-ai/sam2/image"
AUTO_APP = "fal-ai/sam2/auto-segment"
ENV_KEY = "FAL_KEY"
STATUSES = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


def prompt_to_fal(prompt: Prompt) -> dict[str, Any]:
    """MaskLoop prompt -> fal's ``prompts`` and ``box_prompts`` fields."""
    body: dict[str, Any] = {
        "prompts": [{"x": p.x, "y": p.y, "label": 1 if p.positive else 0}
                    for p in prompt.points],
        "box_prompts": [],
    }
    if prompt.box is not None:
        b = prompt.box.normalized()
        body["box_prompts"] = [{"x_min": b.x0, "y_min": b.y0, "x_max": b.x1, "y_max": b.y1}]
    return body


class FalPredictor(HostedPredictor):
    """Clicks and boxes through fal-ai/sam2/image; segment everything through auto-segment."""

    provider = "fal"
    capabilities = Capabilities(SourceKind.HOSTED, "remote")

    def __init__(
        self,
        api_key: str | None = None,
        queue_url: str | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        image_format: str = "jpeg",
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        poll_interval: float = 0.25,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``api_key`` falls back to ``settings["fal_key"]`` then $FAL_KEY."""
        key = api_key_from(api_key, ENV_KEY, "fal", settings, "fal_key")
        url = queue_url or (settings or {}).get("fal_queue_url") or DEFAULT_QUEUE_URL
        session = HttpSession(
            str(url), name="fal", headers={"Authorization": f"Key {key}"}, secrets=[key],
            timeout=timeout, retries=retries, backoff=backoff, sleep=sleep,
        )
        super().__init__(session, "fal-sam2")
        self.image_format = image_format
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self._sleep = sleep

    # -- the queue protocol ---------------------------------------------------------------

    def run(self, app: str, payload: Mapping[str, Any],
            cancel: CancelToken | None = None) -> Mapping[str, Any]:
        """Submit ``payload`` to ``app``, poll its status until COMPLETED, return its output."""
        submitted = self.session.json("POST", f"/{app}", json=dict(payload),
                                      what=f"submitting to {app}")
        if not isinstance(submitted, Mapping) or not submitted.get("request_id"):
            raise PredictorError(f"fal's reply to submitting {app} lacks 'request_id'")
        rid = str(submitted["request_id"])
        base = f"/{'/'.join(app.split('/')[:2])}/requests/{rid}"
        status_url = str(submitted.get("status_url") or f"{base}/status")
        response_url = str(submitted.get("response_url") or base)
        waited = 0.0
        while True:
            check(cancel)
            status = self.session.json("GET", status_url, ok=(200, 202),
                                       what=f"the status of {app} {rid}")
            state = status.get("status") if isinstance(status, Mapping) else None
            if state not in STATUSES:
                raise PredictorError(f"fal sent an unknown status {state!r} for {app} {rid}")
            if state == "COMPLETED":
                if isinstance(status, Mapping) and status.get("error"):
                    raise PredictorError(f"fal: {app} failed: {status['error']}")
                break
            if waited >= self.max_wait:
                raise PredictorError(f"fal: {app} request {rid} still {state} after "
                                     f"{self.max_wait:.0f} s")
            self._sleep(self.poll_interval)
            waited += self.poll_interval
        output = self.session.json("GET", response_url, what=f"the result of {app} {rid}")
        if not isinstance(output, Mapping):
            raise PredictorError(f"fal's result of {app} is not a JSON object")
        return output

    def _file_bytes(self, file: Any, what: str) -> bytes:
        """A fal File {"url", ...} -> its bytes (a data URI decoded, a link fetched)."""
        url = file.get("url") if isinstance(file, Mapping) else None
        if not isinstance(url, str) or not url:
            raise PredictorError(f"{what} lacks a file 'url'")
        if url.startswith("data:"):
            return decode_b64(url, what)
        if not url.startswith(("http://", "https://")):
            raise PredictorError(f"{what} has an unsupported url {url[:40]!r}")
        return self.session.request("GET", url, what=f"downloading {what}").content

    # -- Predictor ------------------------------------------------------------------------

    def _predict(self, image: np.ndarray, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        h, w = image.shape[:2]
        payload = {"image_url": data_uri(image, self.image_format), **prompt_to_fal(prompt),
                   "apply_mask": False, "sync_mode": True, "output_format": "png"}
        output = self.run(IMAGE_APP, payload)
        what = f"fal's result of {IMAGE_APP}"
        mask = mask_from_image_bytes(self._file_bytes(output.get("image"), what), h, w, what)
        # fal gives no score: report 1.0 for a non-empty mask
        return result_from_masks([mask], [1.0 if mask.any() else 0.0], h, w)

    def _everything(self, image: np.ndarray, options: EverythingOptions) -> list[MaskProposal]:
        h, w = image.shape[:2]
        min_area = options.min_mask_region_area
        payload = {"image_url": data_uri(image, self.image_format), "sync_mode": True,
                   "output_format": "png", **asdict(options)}
        output = self.run(AUTO_APP, payload)
        what = f"fal's result of {AUTO_APP}"
        files = output.get("individual_masks")
        if not isinstance(files, list):
            raise PredictorError(f"{what} lacks an 'individual_masks' list")
        masks = [mask_from_image_bytes(self._file_bytes(f, what), h, w, what) for f in files]
        return proposals_from_masks(masks, [1.0] * len(masks), min_area)
