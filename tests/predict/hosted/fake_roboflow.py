"""A local stand-in for Roboflow's inference API on 127.0.0.1: /sam2/embed_image,
/sam2/segment_image, /sam3/embed_image, /sam3/visual_segment and /sam3/concept_segment
(api_key in the query).

It checks every request against the schema of roboflow/inference
(``inference/core/entities/requests/sam2.py`` and ``sam3.py``: field names, types, the
validators of ``Sam3Prompt`` and ``Sam3SegmentationRequest``, at most 16 prompts) and answers
422 {"detail": [{"loc", "msg", "type"}]} as FastAPI does. It is stricter than the real
server in one way: an unknown field is a 422 here, where pydantic would drop it silently, so
that a misspelt field fails its test instead of being ignored.

The "model" (fake_common.py): a text containing "bright" selects every bright blob; example
boxes select the bright blobs whose colour is nearest a positive example's colour (and not
a negative one's); with a text and boxes, both must hold. Confidence falls with the colour
distance.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from fake_common import (
    FakeAPI,
    Invalid,
    Reply,
    Seen,
    boolean,
    bright_parts,
    check_fields,
    click_mask,
    image_from_b64,
    number,
    polygons,
    rle,
)
from pycocotools import mask as coco_mask

SAM2_VERSIONS = ("hiera_tiny", "hiera_small", "hiera_large", "hiera_b_plus")
BASE_FIELDS = {"id", "api_key", "usage_billable", "start", "source", "source_info",
               "disable_model_monitoring", "model_id"}  # BaseRequest's, and model_id
MAX_PROMPTS = 16  # SAM3_MAX_PROMPT_BATCH_SIZE
COLOUR_TOLERANCE = 12.0  # the fake's "like this": mean colours this close (0..255)


class FakeRoboflow(FakeAPI):
    """Roboflow's SAM2 and SAM3 routes. ``sam3_remote``: answer /sam3/embed_image with 501
    as a server forwarding SAM3 to Roboflow's cloud does."""

    def __init__(self, api_key: str = "secret-key-123", sam3_remote: bool = False) -> None:
        super().__init__(api_key)
        self.sam3_remote = sam3_remote
        self.embedded: set[str] = set()
        self._ids = itertools.count(1)

    def authorized(self, seen: Seen) -> bool:
        return seen.query.get("api_key") == self.api_key

    def unauthorized(self) -> Reply:
        return Reply.json(401, {"message": "Unauthorized access to roboflow API - check API "
                                           "key and make sure the key is valid"})

    def invalid(self, message: str) -> Reply:
        return Reply.json(422, {"detail": [{"type": "value_error", "loc": ["body"],
                                            "msg": message}]})

    def handle(self, seen: Seen) -> Reply:
        if seen.method != "POST":
            return Reply.json(405, {"detail": "Method Not Allowed"})
        body = self.body(seen)
        if seen.path in ("/sam2/embed_image", "/sam3/embed_image"):
            return self._embed(body, sam3=seen.path.startswith("/sam3"))
        if seen.path == "/sam2/segment_image":
            return self._segment(body, best_only=False)
        if seen.path == "/sam3/visual_segment":
            return self._segment(body, best_only=True)
        if seen.path == "/sam3/concept_segment":
            return self._concept(body)
        return Reply.json(404, {"detail": "Not Found"})

    # -- SAM2-style routes (also /sam3/visual_segment and /sam3/embed_image) ---------------

    def _version(self, body: dict) -> None:
        v = body.get("sam2_version_id")
        if v is not None and v not in SAM2_VERSIONS:
            raise Invalid(f"unknown sam2_version_id {v!r}")

    def _image(self, image: Any) -> np.ndarray:
        check_fields(image, "image", {"type", "value"}, set())
        if image["type"] != "base64":
            raise Invalid("this fake takes base64 images only")
        return image_from_b64(image["value"])

    def _embed(self, body: Any, sam3: bool) -> Reply:
        check_fields(body, "body", set(), {"image", "image_id", "sam2_version_id",
                                           *BASE_FIELDS})
        if sam3 and self.sam3_remote:
            return Reply.json(501, {"detail": "SAM3 embedding is not supported in remote "
                                              "execution mode."})
        self._version(body)
        if "image" in body:
            self._image(body["image"])
        image_id = body.get("image_id") or f"img-{next(self._ids)}"
        self.embedded.add(image_id)
        return Reply.json(200, {"image_id": image_id, "time": 0.01})

    def _prompt_list(self, value: Any) -> list[Any]:
        """Sam2SegmentationRequest's prompts: {"prompts": [...]}, a flat list or one prompt."""
        if value is None:
            return []
        if isinstance(value, list):
            return value
        if isinstance(value, dict) and "prompts" in value:
            check_fields(value, "prompts", set(), {"prompts"})
            inner = value["prompts"]
            if inner is not None and not isinstance(inner, list):
                raise Invalid("prompts.prompts must be a list")
            return inner or []
        return [value]

    def _segment(self, body: Any, best_only: bool) -> Reply:
        check_fields(body, "body", {"image"}, {
            "format", "image_id", "prompts", "mask_input", "mask_input_format",
            "multimask_output", "use_mask_input_cache", "save_logits_to_cache",
            "load_logits_from_cache", "sam2_version_id", *BASE_FIELDS})
        self._version(body)
        img = self._image(body["image"])
        fmt = body.get("format", "json")
        if fmt not in ("json", "rle", "binary"):
            raise Invalid(f"unknown format {fmt!r}")
        for name in ("multimask_output", "save_logits_to_cache", "load_logits_from_cache"):
            if name in body:
                boolean(body[name], name)
        preds = []
        for i, prompt in enumerate(self._prompt_list(body.get("prompts"))):
            check_fields(prompt, f"prompts[{i}]", set(), {"box", "points"})
            box = None
            if prompt.get("box") is not None:
                b = check_fields(prompt["box"], "box", {"x", "y", "width", "height"}, set())
                cx, cy = number(b["x"], "box.x"), number(b["y"], "box.y")
                bw, bh = number(b["width"], "box.width"), number(b["height"], "box.height")
                box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)  # centre-based
            keep, drop = [], []
            for p in prompt.get("points") or []:
                check_fields(p, "point", {"x", "y", "positive"}, set())
                xy = (number(p["x"], "point.x"), number(p["y"], "point.y"))
                (keep if boolean(p["positive"], "point.positive") else drop).append(xy)
            mask = click_mask(img.shape[:2], keep, drop, box)
            if fmt == "rle":
                preds.append({"masks": rle(mask), "confidence": 0.9, "format": "rle"})
            else:
                preds.append({"masks": polygons(mask), "confidence": 0.9, "format": "polygon"})
        if best_only:  # SAM3 PVS: "multiple prompts in one request return one prediction"
            preds = preds[:1]
        return Reply.json(200, {"predictions": preds, "time": 0.02})

    # -- /sam3/concept_segment -------------------------------------------------------------

    def _concept(self, body: Any) -> Reply:
        check_fields(body, "body", {"image", "prompts"}, {
            "format", "image_id", "output_prob_thresh", "nms_iou_threshold", *BASE_FIELDS})
        img = self._image(body["image"])
        fmt = body.get("format", "polygon")
        if fmt not in ("polygon", "json", "rle"):
            raise Invalid(f"unknown format {fmt!r}")
        thresh = unit(body.get("output_prob_thresh", 0.5), "output_prob_thresh")
        nms_iou = body.get("nms_iou_threshold")
        if nms_iou is not None:
            nms_iou = unit(nms_iou, "nms_iou_threshold")
        prompts = body["prompts"]
        if not isinstance(prompts, list) or not prompts:
            raise Invalid("At least one prompt is required")
        if len(prompts) > MAX_PROMPTS:
            raise Invalid(f"Exceeded SAM3_MAX_PROMPT_BATCH_SIZE={MAX_PROMPTS}: "
                          f"got {len(prompts)}")
        found = [self._find(img, prompt, i, thresh) for i, prompt in enumerate(prompts)]
        if nms_iou is not None:
            found = cross_prompt_nms(found, nms_iou)
        results = []
        for i, (prompt, hits) in enumerate(zip(prompts, found, strict=True)):
            preds = [{"masks": rle(m) if fmt == "rle" else polygons(m), "confidence": c,
                      "format": "rle" if fmt == "rle" else "polygon"} for m, c in hits]
            results.append({"prompt_index": i, "echo": {
                "prompt_index": i, "type": prompt.get("type"), "text": prompt.get("text"),
                "num_boxes": len(prompt.get("boxes") or [])}, "predictions": preds})
        return Reply.json(200, {"prompt_results": results, "time": 0.05})

    def _find(self, img: np.ndarray, prompt: Any, i: int,
              thresh: float) -> list[tuple[np.ndarray, float]]:
        """Validate one Sam3Prompt and run the fake model on it."""
        where = f"prompts[{i}]"
        check_fields(prompt, where, set(), {"type", "text", "output_prob_thresh", "boxes",
                                            "box_labels"})
        kind, text = prompt.get("type"), prompt.get("text")
        if kind not in (None, "text", "visual"):
            raise Invalid(f"{where}.type must be 'text' or 'visual'")
        if text is not None and not isinstance(text, str):
            raise Invalid(f"{where}.text must be a string")
        boxes = [exemplar_box(b, f"{where}.boxes[{j}]")
                 for j, b in enumerate(prompt.get("boxes") or [])]
        if kind == "visual" and not boxes:
            raise Invalid("Visual prompt requires at least one box")
        labels = prompt.get("box_labels")
        if boxes and labels is None:
            raise Invalid(f"{where}: box_labels are required with boxes")
        if labels is not None:
            if not isinstance(labels, list) or len(labels) != len(boxes):
                raise Invalid("box_labels must match boxes length when provided")
            if any(v not in (0, 1) or isinstance(v, float) for v in labels):
                raise Invalid(f"{where}.box_labels must be 0/1 or booleans")
        if "output_prob_thresh" in prompt and prompt["output_prob_thresh"] is not None:
            thresh = unit(prompt["output_prob_thresh"], f"{where}.output_prob_thresh")
        if not text and not boxes:
            return []
        parts = bright_parts(img)
        if text:
            parts = parts if "bright" in text else []
        hits = [(m, 0.8) for m in parts]
        if boxes:
            hits = like_exemplars(img, parts, boxes, [bool(v) for v in labels or []])
        return [(m, c) for m, c in hits if c >= thresh]


def unit(v: Any, where: str) -> float:
    """A number in [0, 1] (the validators of the thresholds)."""
    x = number(v, where)
    if not 0.0 <= x <= 1.0:
        raise Invalid(f"{where} must be between 0.0 and 1.0")
    return x


def exemplar_box(b: Any, where: str) -> tuple[float, float, float, float]:
    """Sam3Prompt.Box {x, y, width, height} (TOP-LEFT based) or BoxXYXY -> corners."""
    if isinstance(b, dict) and set(b) == {"x", "y", "width", "height"}:
        x, y = number(b["x"], f"{where}.x"), number(b["y"], f"{where}.y")
        return (x, y, x + number(b["width"], where), y + number(b["height"], where))
    if isinstance(b, dict) and set(b) == {"x0", "y0", "x1", "y1"}:
        x0, y0, x1, y1 = (number(b[k], f"{where}.{k}") for k in ("x0", "y0", "x1", "y1"))
        return (x0, y0, x1, y1)
    raise Invalid(f"{where} must be {{x, y, width, height}} or {{x0, y0, x1, y1}}")


def like_exemplars(img: np.ndarray, parts: list[np.ndarray],
                   boxes: list[tuple[float, float, float, float]],
                   positive: list[bool]) -> list[tuple[np.ndarray, float]]:
    """The parts whose mean colour is nearest a positive box's (within the tolerance)."""
    h, w = img.shape[:2]
    colours = []
    for x0, y0, x1, y1 in boxes:
        region = img[max(0, int(y0)):min(h, int(np.ceil(y1))),
                     max(0, int(x0)):min(w, int(np.ceil(x1)))].reshape(-1, 3).astype(float)
        bright = region[region.max(axis=1) > 128]
        colours.append((bright if len(bright) else region).mean(axis=0))
    hits = []
    for part in parts:
        colour = img[part].astype(float).mean(axis=0)
        dists = [float(np.abs(colour - c).max()) for c in colours]
        best = int(np.argmin(dists))
        if positive[best] and dists[best] <= COLOUR_TOLERANCE:
            hits.append((part, round(0.95 - dists[best] / 100, 4)))
    return hits


def cross_prompt_nms(found: list[list[tuple[np.ndarray, float]]],
                     iou: float) -> list[list[tuple[np.ndarray, float]]]:
    """Greedy NMS over the masks of every prompt (by pycocotools mask IoU), as the server."""
    flat = [(i, m, c) for i, hits in enumerate(found) for m, c in hits]
    flat.sort(key=lambda t: -t[2])
    rles = [coco_mask.encode(np.asfortranarray(m.astype(np.uint8))) for _, m, _ in flat]
    keep: list[int] = []
    for j in range(len(flat)):
        if all(coco_mask.iou([rles[j]], [rles[k]], [0])[0][0] <= iou for k in keep):
            keep.append(j)
    out: list[list[tuple[np.ndarray, float]]] = [[] for _ in found]
    for j in keep:
        i, m, c = flat[j]
        out[i].append((m, c))
    return out
