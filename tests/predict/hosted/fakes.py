"""Local stand-ins for the hosted SAM APIs (Roboflow in fake_roboflow.py, fal, Segmind) on
127.0.0.1.

Each implements its API's documented request and response schema and VALIDATES every
request it gets (unknown or missing fields, wrong types: 422/400 like the real one), so a
client that misspells a field fails its test. The server, canned failures (fail_next)
and the toy "model" are in fake_common.py.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
from fake_common import (  # noqa: F401  (re-exported for the tests)
    FakeAPI,
    Invalid,
    Reply,
    Seen,
    boolean,
    bright_parts,
    check_fields,
    click_mask,
    image_from_b64,
    jpeg_bytes,
    number,
    png_bytes,
    polygons,
    rle,
)
from fake_roboflow import FakeRoboflow  # noqa: F401  (re-exported for the tests)

IMAGE_APP, AUTO_APP = "fal-ai/sam2/image", "fal-ai/sam2/auto-segment"


# -- fal -----------------------------------------------------------------------------------


class FakeFal(FakeAPI):
    """fal's queue: POST /{app} -> ids; GET .../requests/{id}/status; GET .../requests/{id}."""

    def __init__(self, api_key: str = "secret-key-123", polls_before_done: int = 2) -> None:
        super().__init__(api_key)
        self.polls_before_done = polls_before_done
        self.jobs: dict[str, dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self._ids = itertools.count(1)

    def authorized(self, seen: Seen) -> bool:
        if seen.path.startswith("/files/"):
            return True
        return seen.headers.get("authorization") == f"Key {self.api_key}"

    def handle(self, seen: Seen) -> Reply:
        m = re.fullmatch(r"/(fal-ai/sam2)/requests/([\w-]+)(/status)?", seen.path)
        if seen.method == "GET" and m:
            job = self.jobs.get(m.group(2))
            if job is None:
                return Reply.json(404, {"detail": "Request not found"})
            if m.group(3):
                return self._status(job)
            if job["polls"] <= self.polls_before_done:
                return Reply.json(400, {"detail": "Request is still in progress"})
            return Reply.json(200, job["output"])
        if seen.method == "GET" and seen.path.startswith("/files/"):
            data = self.files.get(seen.path[len("/files/"):])
            return Reply(200, data, {"Content-Type": "image/png"}) if data else \
                Reply.json(404, {"detail": "no such file"})
        if seen.method == "POST" and seen.path in (f"/{IMAGE_APP}", f"/{AUTO_APP}"):
            body = self.body(seen)
            output = self._image(body) if seen.path.endswith("/image") else self._auto(body)
            rid = f"req-{next(self._ids)}"
            self.jobs[rid] = {"polls": 0, "output": output}
            base = f"{self.url}/fal-ai/sam2/requests/{rid}"
            return Reply.json(200, {"request_id": rid, "response_url": base,
                                    "status_url": f"{base}/status",
                                    "cancel_url": f"{base}/cancel", "queue_position": 0})
        return Reply.json(404, {"detail": "Not Found"})

    def _status(self, job: dict[str, Any]) -> Reply:
        job["polls"] += 1
        if job["polls"] <= self.polls_before_done:
            state = "IN_QUEUE" if job["polls"] == 1 else "IN_PROGRESS"
            return Reply.json(202, {"status": state, "queue_position": 0,
                                    "response_url": "..."})
        return Reply.json(200, {"status": "COMPLETED", "response_url": "...", "logs": None})

    def _file(self, mask: np.ndarray, sync: bool) -> dict[str, Any]:
        data = png_bytes(mask)
        if sync:
            url = "data:image/png;base64," + base64.b64encode(data).decode()
        else:
            name = f"mask-{next(self._ids)}.png"
            self.files[name] = data
            url = f"{self.url}/files/{name}"
        h, w = mask.shape
        return {"url": url, "content_type": "image/png", "file_name": "mask.png",
                "file_size": len(data), "width": w, "height": h}

    def _input_image(self, body: dict) -> np.ndarray:
        url = body["image_url"]
        if not isinstance(url, str) or not url.startswith("data:image/"):
            raise Invalid("image_url must be a data URI in this fake")
        return image_from_b64(url)

    def _image(self, body: Any) -> dict[str, Any]:
        check_fields(body, "input", {"image_url"}, {"prompts", "box_prompts", "apply_mask",
                                                    "sync_mode", "output_format"})
        img = self._input_image(body)
        keep, drop = [], []
        for p in body.get("prompts", []):
            check_fields(p, "PointPrompt", {"x", "y", "label"}, set())
            if p["label"] not in (0, 1):
                raise Invalid("label must be 0 or 1")
            (keep if p["label"] == 1 else drop).append((number(p["x"], "x"), number(p["y"], "y")))
        box = None
        for b in body.get("box_prompts", []):
            check_fields(b, "BoxPrompt", {"x_min", "y_min", "x_max", "y_max"}, set())
            box = tuple(number(b[k], k) for k in ("x_min", "y_min", "x_max", "y_max"))
        for name in ("apply_mask", "sync_mode"):
            if name in body:
                boolean(body[name], name)
        if body.get("output_format", "png") not in ("png", "jpeg", "webp"):
            raise Invalid("output_format must be png, jpeg or webp")
        mask = click_mask(img.shape[:2], keep, drop, box)  # type: ignore[arg-type]
        return {"image": self._file(mask, bool(body.get("sync_mode")))}

    def _auto(self, body: Any) -> dict[str, Any]:
        check_fields(body, "input", {"image_url"}, {
            "sync_mode", "output_format", "points_per_side", "pred_iou_thresh",
            "stability_score_thresh", "min_mask_region_area"})
        img = self._input_image(body)
        for name in ("pred_iou_thresh", "stability_score_thresh", "points_per_side",
                     "min_mask_region_area"):
            if name in body:
                number(body[name], name)
        parts = bright_parts(img)
        sync = bool(body.get("sync_mode"))
        combined = np.any(parts, axis=0) if parts else np.zeros(img.shape[:2], bool)
        return {"combined_mask": self._file(combined, sync),
                "individual_masks": [self._file(m, sync) for m in parts]}


# -- Segmind -------------------------------------------------------------------------------


def parse_coordinates(text: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(text, str):
        raise Invalid(f"{where} must be a string such as '[834,74]'")
    try:
        value = json.loads(text)
    except ValueError:
        raise Invalid(f"{where} is not '[x,y]' or '[[x,y],...]'") from None
    pairs = [value] if value and not isinstance(value[0], list) else value
    if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise Invalid(f"{where} is not '[x,y]' or '[[x,y],...]'")
    return [(number(x, where), number(y, where)) for x, y in pairs]


class FakeSegmind(FakeAPI):
    """POST /sam-v2-image with x-api-key; answers the mask as image/jpeg."""

    invalid_status = 400

    def authorized(self, seen: Seen) -> bool:
        return seen.headers.get("x-api-key") == self.api_key

    def unauthorized(self) -> Reply:
        return Reply.json(401, {"error": "Invalid API key"})

    def invalid(self, message: str) -> Reply:
        return Reply.json(400, {"error": message})

    def handle(self, seen: Seen) -> Reply:
        if seen.method != "POST" or seen.path != "/sam-v2-image":
            return Reply.json(404, {"error": "Not Found"})
        body = check_fields(self.body(seen), "body", {"image", "prompt"}, {
            "base64", "coordinates", "overlay_mask", "remove_coordinates"})
        img = image_from_b64(body["image"])
        if not isinstance(body["prompt"], str):
            raise Invalid("prompt must be a string")
        for name in ("base64", "overlay_mask"):
            if name in body:
                boolean(body[name], name)
        if body["prompt"]:
            parts = bright_parts(img) if "bright" in body["prompt"] else []
            mask = np.any(parts, axis=0) if parts else np.zeros(img.shape[:2], bool)
        else:
            if "coordinates" not in body:
                raise Invalid("give a prompt or coordinates")
            keep = parse_coordinates(body["coordinates"], "coordinates")
            drop = (parse_coordinates(body["remove_coordinates"], "remove_coordinates")
                    if body.get("remove_coordinates") else [])
            mask = click_mask(img.shape[:2], keep, drop)
        if body.get("base64"):
            return Reply.json(200, {"image": base64.b64encode(jpeg_bytes(mask)).decode()})
        return Reply(200, jpeg_bytes(mask), {"Content-Type": "image/jpeg"})


FAKES: dict[str, Callable[[], FakeAPI]] = {
    "roboflow": FakeRoboflow, "fal": FakeFal, "segmind": FakeSegmind,
}
