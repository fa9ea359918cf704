"""Roboflow-compatible routes: ``POST /sam2/embed_image`` and ``POST /sam2/segment_image``,
so that Roboflow's inference-sdk (``InferenceHTTPClient(...).sam2_segment_image(...)``) and
plain HTTP clients of Roboflow's inference server work unchanged against MaskLoop.

As Roboflow's server: embeddings are cached by ``image_id`` (md5 of the pixels when none is
given), the box is centre-based, each prompt gives its best candidate only, "json" masks are
outer polygons (holes dropped), "rle" is COCO compressed RLE, "binary" is an npz; low-res
logits are cached by (image_id, prompt set) when ``save_logits_to_cache`` and fed back when a
later prompt set of the same image strictly contains a cached one (``load_logits_from_cache``);
a request without prompts (inference-sdk's ``prompts=None``) gets one mask of no prompt.
Requests are bounded: at most ``--max-prompts`` prompts of at most ``--max-points`` points,
checked before the image is decoded.

The routes run on the event loop and never block it: decoding the image, fetching a URL
and encoding the masks go to the thread pool, the model's work is awaited
(``app.server.worker``), so a waiting request holds no thread. ``image_id``s are kept in the
server's cache folder too (``app.server.image_ids``): a restarted server knows them.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from app.core.types import Box as CoreBox
from app.core.types import EmbeddingKey, MaskResult, Point, Prompt
from app.server.encoding import (
    decode_base64,
    decode_image,
    mask_polygons,
    mask_rle,
    masks_npz,
    pixels_hash,
    roboflow_image_id,
)
from app.server.errors import HTTPProblem, error_responses
from app.server.schemas import (
    InferenceRequestImage,
    Sam2EmbeddingRequest,
    Sam2EmbeddingResponse,
    Sam2Prompt,
    Sam2PromptSet,
    Sam2SegmentationPrediction,
    Sam2SegmentationRequest,
    Sam2SegmentationResponse,
)
from app.server.security import fetch_url
from app.server.state import ServerState, require_key_or_body_key, state_of

router = APIRouter(dependencies=[Depends(require_key_or_body_key)], tags=["roboflow"],
                   responses=error_responses(400, 401, 408, 413, 422, 500, 504))


@router.post("/sam2/embed_image", response_model=Sam2EmbeddingResponse)
async def sam2_embed_image(body: Sam2EmbeddingRequest,
                           request: Request) -> Sam2EmbeddingResponse:
    """Embed an image and cache it under ``image_id`` (returned)."""
    st = state_of(request)
    t0 = time.perf_counter()
    _, image_id = await resolve_image(st, body.image, body.image_id)
    return Sam2EmbeddingResponse(image_id=image_id, time=time.perf_counter() - t0)


@router.post("/sam2/segment_image", response_model=Sam2SegmentationResponse)
async def sam2_segment_image(body: Sam2SegmentationRequest, request: Request,
                             response: Response) -> Response | Sam2SegmentationResponse:
    """One best mask per prompt, as polygons ("json"), COCO RLE ("rle") or an npz ("binary")."""
    st = state_of(request)
    t0 = time.perf_counter()
    unprompted = body.prompts.prompts is None  # left out or null, as inference-sdk sends
    prompts = check_prompts(st, body.prompts)
    key, image_id = await resolve_image(st, body.image, body.image_id)
    if unprompted:
        results = [await st.worker.predict_unprompted(key, body.multimask_output)]
    else:
        mask_inputs = None
        if body.load_logits_from_cache:
            mask_inputs = find_prior_logits(st, image_id, body.prompts)
        core = [to_core_prompt(p, body.multimask_output,
                               None if mask_inputs is None else mask_inputs[i])
                for i, p in enumerate(prompts)]
        results = await st.worker.predict_many(key, core)
    answer = await run_in_threadpool(_answer, st, body, results, image_id, unprompted, t0)
    if isinstance(answer, Response):
        return answer
    response.headers.update({"X-MaskLoop-Model": st.worker.model_id})
    return answer


def _answer(st: ServerState, body: Sam2SegmentationRequest, results: list[MaskResult],
            image_id: str, unprompted: bool, t0: float) -> Response | Sam2SegmentationResponse:
    """The reply to a segment request (masks encoded: polygons, RLE or an npz)."""
    best = [r.best for r in results]
    masks = np.stack([r.mask(b) for r, b in zip(results, best, strict=True)])
    scores = [float(r.scores[b]) for r, b in zip(results, best, strict=True)]
    logits = np.stack([r.low_res_logits[b] for r, b in zip(results, best, strict=True)])
    if body.save_logits_to_cache and not unprompted:
        st.rf_logits.put((image_id, prompt_set_hash(body.prompts)),
                         (body.prompts, logits.astype(np.float16)))
    model_header = {"X-MaskLoop-Model": st.worker.model_id}
    if body.format == "binary":
        return Response(masks_npz(masks, logits), media_type="application/octet-stream",
                        headers=model_header)
    if body.format == "rle":
        preds = [Sam2SegmentationPrediction(masks=mask_rle(m), confidence=s, format="rle")
                 for m, s in zip(masks, scores, strict=True)]
    else:
        preds = [Sam2SegmentationPrediction(masks=mask_polygons(m), confidence=s,
                                            format="polygon")
                 for m, s in zip(masks, scores, strict=True)]
    return Sam2SegmentationResponse(predictions=preds, time=time.perf_counter() - t0)


def check_prompts(st: ServerState, prompt_set: Sam2PromptSet) -> list[Sam2Prompt]:
    """The prompts of a request within the server's limits (none: no prompt at all);
    HTTPProblem 422 for an empty list or too many prompts or points."""
    if prompt_set.prompts is None:
        return []
    prompts = prompt_set.prompts
    limit = st.settings.max_prompts
    if not prompts:
        raise HTTPProblem(422, "give at least one prompt with a box or points (or leave "
                               "prompts out for one mask of no prompt)")
    if len(prompts) > limit:
        raise HTTPProblem(422, f"{len(prompts):,} prompts: this server takes at most {limit} "
                               "per request (--max-prompts)")
    most = max(p.num_points() for p in prompts)
    if most > st.settings.max_points:
        raise HTTPProblem(422, f"a prompt has {most:,} points: this server takes at most "
                               f"{st.settings.max_points} per prompt (--max-points)")
    return prompts


async def resolve_image(
    st: ServerState, image: InferenceRequestImage | None, image_id: str | None
) -> tuple[EmbeddingKey, str]:
    """The embedding key and image id of a request: a known ``image_id`` skips decoding."""
    if image_id:
        key = await run_in_threadpool(_known, st, image_id)
        if key is not None:
            return key, image_id
    if image is None:
        if image_id:
            raise HTTPProblem(400, f"image_id {image_id!r} is not in this server's embedding "
                                   "cache: send the image too")
        raise HTTPProblem(422, "give an image (or the image_id of an embedded one)")
    pixels, digest = await run_in_threadpool(_pixels, st, image)
    key = await st.worker.embed(pixels, digest)
    image_id = image_id or roboflow_image_id(pixels)
    await run_in_threadpool(st.rf_images.put, image_id, key)
    return key, image_id


def _known(st: ServerState, image_id: str) -> EmbeddingKey | None:
    """The key of an image_id whose embedding is still here (memory or disk)."""
    key = st.rf_key(image_id)
    return key if key is not None and st.worker.has_embedding(key) else None


def _pixels(st: ServerState, image: InferenceRequestImage) -> tuple[np.ndarray, str]:
    pixels = load_request_image(st, image)
    return pixels, pixels_hash(pixels)


def load_request_image(st: ServerState, image: InferenceRequestImage) -> np.ndarray:
    """Decode a request's image: base64 (data URI allowed) or an SSRF-checked URL."""
    kind = image.type.lower()
    if not isinstance(image.value, str) or not image.value:
        raise HTTPProblem(400, f"image value must be a non-empty string for type {kind!r}")
    if kind == "base64":
        data = decode_base64(image.value)
    elif kind == "url":
        data = fetch_url(image.value, st.url_policy)
    else:
        raise HTTPProblem(400, f"image type {image.type!r} is not supported: use 'base64' "
                               "or 'url' (pickled 'numpy'/'pil' images are unsafe)")
    return decode_image(data, st.settings.max_image_pixels)


def to_core_prompt(p: Sam2Prompt, multimask: bool, mask_input: np.ndarray | None) -> Prompt:
    """A Roboflow prompt (centre-based box) as a core Prompt (corner box)."""
    box = None
    if p.box is not None:
        b = p.box
        box = CoreBox(b.x - b.width / 2, b.y - b.height / 2,
                      b.x + b.width / 2, b.y + b.height / 2).normalized()
    points = tuple(Point(q.x, q.y, q.positive) for q in p.points or [])
    mi = None if mask_input is None else np.asarray(mask_input, np.float32).reshape(1, 256, 256)
    return Prompt(points=points, box=box, mask_input=mi, multimask=multimask)


def prompt_set_hash(prompts: Sam2PromptSet) -> str:
    return hashlib.md5(prompts.model_dump_json().encode()).hexdigest()[:12]


def find_prior_logits(
    st: ServerState, image_id: str, prompts: Sam2PromptSet
) -> np.ndarray | None:
    """Cached logits of the largest earlier prompt set of this image that is a strict subset
    of ``prompts`` (one with one point fewer wins at once), as Roboflow's server does; used
    only when it has one entry per prompt."""
    n_prompts = len(prompts.prompts or [])
    wanted = prompts.num_points() - 1
    best: np.ndarray | None = None
    best_size = -1
    for (cached_id, _), (cached_set, logits) in reversed(st.rf_logits.items()):
        if cached_id != image_id:
            continue
        if logits.shape[0] != n_prompts or not is_strict_subset(cached_set, prompts):
            continue
        size = cached_set.num_points()
        if size == wanted:
            return logits.astype(np.float32)
        if size > best_size:
            best, best_size = logits.astype(np.float32), size
    return best


def is_strict_subset(sub: Sam2PromptSet, sup: Sam2PromptSet) -> bool:
    """Every prompt of ``sub`` matches a distinct prompt of ``sup`` with the same box and a
    subset of its points, and the sets differ."""
    if sub == sup:
        return False
    remaining = list(sup.prompts or [])
    for ps in sub.prompts or []:
        pts = {(q.x, q.y, q.positive) for q in ps.points or []}
        for i, pp in enumerate(remaining):
            if ps.box == pp.box and pts <= {(q.x, q.y, q.positive) for q in pp.points or []}:
                del remaining[i]
                break
        else:
            return False
    return True
