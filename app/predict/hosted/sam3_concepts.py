"""SAM3 promptable concept segmentation ("find all") through Roboflow's
``POST /sam3/concept_segment?api_key=...``.

The schema, from roboflow/inference: ``inference/core/entities/requests/sam3.py``
(``Sam3SegmentationRequest``, ``Sam3Prompt``), ``responses/sam3.py``
(``Sam3SegmentationResponse``), ``inference/core/env.py`` (``SAM3_MAX_PROMPT_BATCH_SIZE`` = 16),
``inference/models/sam3/segment_anything3.py`` (``_build_visual_query``: XYWH boxes are
top-left based) and ``docs/foundation/sam3.md``:

- request {image {"type": "base64", "value"}, image_id (optional; not sent), prompts: 1 to
  16 of {type "text" | "visual" (needs a box), text, boxes [{x, y, width, height} TOP-LEFT
  based, or {x0, y0, x1, y1}], box_labels [1 like this | 0 not like this], one per box},
  format "polygon" | "rle", output_prob_thresh in [0, 1], nms_iou_threshold in [0, 1] (NMS
  across the prompts of one request)};
- reply {prompt_results: [{prompt_index, echo {prompt_index, type, text, num_boxes},
  predictions: [{masks, confidence, format}]}], time}: every instance of each prompt.

A prompt with a text and boxes is one concept ("dogs like this one, unlike that one").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from app.core.jobs import CancelToken, Progress, check
from app.core.types import MaskProposal
from app.predict.base import Exemplar, FindQuery, PredictorError
from app.predict.hosted.common import image_b64, proposals_from_masks
from app.predict.hosted.roboflow_schema import decode_prediction
from app.predict.remote.http_session import HttpSession

ROUTE = "/sam3/concept_segment"
MAX_PROMPTS = 16  # SAM3_MAX_PROMPT_BATCH_SIZE's default: more prompts are split into requests
MASK_FORMATS = ("rle", "polygon")  # RLE keeps holes; Roboflow's polygons are outer rings only
CONTEXT = 0.5  # of the box size, kept around an exemplar pasted from another picture


@dataclass(frozen=True)
class ConceptPrompt:
    """One entry of the request's "prompts" and the name its masks get
    (``MaskProposal.prompt``)."""

    fields: dict[str, Any]
    name: str


def box_xywh(box: Sequence[float], width: int, height: int) -> dict[str, float]:
    """Corners (x0, y0, x1, y1) -> SAM3's top-left based {x, y, width, height}, clipped to
    the image; PredictorError when nothing of the box is left."""
    x0, x1 = sorted((float(box[0]), float(box[2])))
    y0, y1 = sorted((float(box[1]), float(box[3])))
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise PredictorError(f"the example box {tuple(round(v) for v in box)} lies outside the "
                             f"{width}x{height} image or is under a pixel wide")
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


def concept_prompts(query: FindQuery, exemplars: Sequence[Exemplar], width: int,
                    height: int) -> list[ConceptPrompt]:
    """The SAM3 prompts of ``query``: one per text; its exemplars (``exemplars``: the same,
    with boxes in the image sent) join every text's prompt, or form one visual prompt."""
    texts = [t.strip() for t in query.texts]
    if not texts and not query.exemplars:
        raise PredictorError("find all needs a text such as 'person' or an example box")
    if query.exemplars and not query.positives and not texts:
        raise PredictorError("find all like this needs a positive example box (or a text): "
                             "negative boxes only say what to leave out")
    if not query.exemplars:
        return [ConceptPrompt({"type": "text", "text": t}, t) for t in texts]
    boxes = [box_xywh(e.box, width, height) for e in exemplars]
    labels = [1 if e.positive else 0 for e in exemplars]
    if not texts:
        return [ConceptPrompt({"type": "visual", "boxes": boxes, "box_labels": labels},
                              FindQuery(exemplars=query.exemplars).describe())]
    return [ConceptPrompt({"type": "visual", "text": t, "boxes": boxes, "box_labels": labels},
                          FindQuery(texts=(t,), exemplars=query.exemplars).describe())
            for t in texts]


def exemplar_crop(exemplar: Exemplar, max_height: int) -> tuple[np.ndarray, tuple[float, ...]]:
    """The part of an exemplar's own picture around its box (with some context), at most
    ``max_height`` tall, and the box in that crop."""
    if exemplar.image is None:
        raise PredictorError("this example box has no picture of its own")
    ih, iw = exemplar.image.shape[:2]
    x0, x1 = sorted((exemplar.box[0], exemplar.box[2]))
    y0, y1 = sorted((exemplar.box[1], exemplar.box[3]))
    mx, my = (x1 - x0) * CONTEXT, (y1 - y0) * CONTEXT
    cx0, cy0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
    cx1, cy1 = int(min(iw, np.ceil(x1 + mx))), int(min(ih, np.ceil(y1 + my)))
    if cx1 - cx0 < 1 or cy1 - cy0 < 1:
        raise PredictorError(f"the example box {tuple(round(v) for v in exemplar.box)} lies "
                             f"outside its {iw}x{ih} picture")
    crop = exemplar.image[cy0:cy1, cx0:cx1]
    scale = min(1.0, max_height / crop.shape[0])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    box = ((x0 - cx0) * scale, (y0 - cy0) * scale, (x1 - cx0) * scale, (y1 - cy0) * scale)
    return np.ascontiguousarray(crop), box


def with_exemplar_pictures(image: np.ndarray, exemplars: Sequence[Exemplar]
                           ) -> tuple[np.ndarray, tuple[Exemplar, ...]]:
    """SAM3 takes example boxes in the searched image only: exemplars lying in other
    pictures are pasted (cropped, with context) to the right of ``image`` and their boxes
    moved there. Returns the image sent and the exemplars with boxes in it; masks are cropped
    back to ``image`` (what lies on the pastes is not in the searched image)."""
    if all(e.image is None for e in exemplars):
        return image, tuple(exemplars)
    h, w = image.shape[:2]
    pastes: list[tuple[int, np.ndarray]] = []
    moved: list[Exemplar] = []
    x = w
    for e in exemplars:
        if e.image is None:
            moved.append(e)
            continue
        if e.image.ndim != 3 or e.image.shape[2] != 3 or e.image.dtype != np.uint8:
            raise PredictorError(f"an example's picture must be RGB uint8 (H, W, 3), got "
                                 f"{e.image.shape} {e.image.dtype}")
        crop, (bx0, by0, bx1, by1) = exemplar_crop(e, h)
        pastes.append((x, crop))
        moved.append(replace(e, box=(bx0 + x, by0, bx1 + x, by1), image=None, mask=None))
        x += crop.shape[1]
    canvas = np.zeros((h, x, 3), dtype=np.uint8)
    canvas[:, :w] = image
    for px, crop in pastes:
        canvas[:crop.shape[0], px:px + crop.shape[1]] = crop
    return canvas, tuple(moved)


def proposals_of(reply: Any, prompts: Sequence[ConceptPrompt], sent: tuple[int, int],
                 kept: tuple[int, int]) -> list[MaskProposal]:
    """The proposals of one reply, each named after its prompt; masks decoded at the ``sent``
    (h, w) and cropped to the ``kept`` (h, w) top-left part."""
    what = f"Roboflow's reply to {ROUTE}"
    results = reply.get("prompt_results") if isinstance(reply, Mapping) else None
    if not isinstance(results, list):
        raise PredictorError(f"{what} lacks a 'prompt_results' list")
    (sh, sw), (kh, kw) = sent, kept
    found: list[MaskProposal] = []
    for result in results:
        index = result.get("prompt_index") if isinstance(result, Mapping) else None
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(prompts):
            raise PredictorError(f"{what}: a prompt result has no valid 'prompt_index' "
                                 f"(got {index!r} for {len(prompts)} prompt(s))")
        preds = result.get("predictions")
        if not isinstance(preds, list):
            raise PredictorError(f"{what}: the result of prompt {index} lacks 'predictions'")
        decoded = [decode_prediction(p, sh, sw, what) for p in preds]
        masks = [np.ascontiguousarray(m[:kh, :kw]) for m, _ in decoded]
        found += proposals_from_masks(masks, [c for _, c in decoded], prompt=prompts[index].name)
    return found


def find_concepts(session: HttpSession, image: np.ndarray, query: FindQuery, *,
                  mask_format: str = "rle",
                  image_format: str = "jpeg", cancel: CancelToken | None = None,
                  progress: Progress | None = None) -> list[MaskProposal]:
    """Every instance of ``query``'s concepts in ``image``: at most 16 prompts a request
    (more are split; ``cancel`` is checked and ``progress`` told between requests). Returns
    the proposals as the API gave them (``finish_proposals`` filters and sorts)."""
    if mask_format not in MASK_FORMATS:
        raise PredictorError(f"mask format must be one of {', '.join(MASK_FORMATS)}, "
                             f"not {mask_format!r}")
    for name, value in (("score threshold", query.score_threshold),
                        ("NMS IoU", query.nms_iou)):
        if not 0.0 <= value <= 1.0:
            raise PredictorError(f"find all's {name} must lie in [0, 1], not {value}")
    h, w = image.shape[:2]
    sent, exemplars = with_exemplar_pictures(image, query.exemplars)
    prompts = concept_prompts(query, exemplars, sent.shape[1], sent.shape[0])
    image_field = {"type": "base64", "value": image_b64(sent, image_format)}
    batches = [prompts[i:i + MAX_PROMPTS] for i in range(0, len(prompts), MAX_PROMPTS)]
    found: list[MaskProposal] = []
    for done, batch in enumerate(batches):
        if progress is not None:
            progress(done, len(batches), f"finding {', '.join(p.name for p in batch)}"[:200])
        check(cancel)
        body = {
            "image": image_field,
            "prompts": [p.fields for p in batch],
            "format": mask_format,
            "output_prob_thresh": query.score_threshold,
            "nms_iou_threshold": query.nms_iou,
        }
        names = ", ".join(p.name for p in batch)
        reply = session.json("POST", ROUTE, json=body, what=f"finding {names[:120]!r}")
        found += proposals_of(reply, batch, sent.shape[:2], (h, w))
    if progress is not None:
        progress(len(batches), len(batches), "done")
    return found
