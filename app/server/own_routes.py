"""MaskLoop's own routes for the desktop client, designed for bytes and latency (the wire
format is documented in ``app.wire.messages``): upload each image once, keyed by the sha256 of
its file; per click a few hundred bytes of JSON in, a compact envelope out; or (hybrid mode)
fetch the float16 embedding once and decode clicks on the client.

A predict body has at most ``--max-points`` points, finite coordinates (box too) and, when
it sends ``mask_input``, logits of exactly (1, 256, 256) finite values.

Uploads and clicks run on the event loop and await the model (``app.server.worker``: clicks
are decoded in batches, before encodes); decoding images and encoding masks go to the
thread pool. Embeddings are kept in the server's cache folder (the app's file format), so a
restarted server still has them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from app import __version__
from app.core import images
from app.core.types import MaskResult
from app.server.encoding import decode_image
from app.server.errors import HTTPProblem, error_responses
from app.server.state import ServerState, require_key, state_of
from app.wire.messages import (
    CONTENT_TYPE,
    WIRE_VERSION,
    encode_embedding,
    encode_prediction,
    prompt_from_wire,
)

router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)], tags=["maskloop"],
                   responses=error_responses(401, 404, 408, 422, 500))
_IMAGE_ERRORS = error_responses(400, 413, 504)

_HASH = re.compile(r"^[0-9a-f]{64}$")


@router.get("/info")
def info(request: Request) -> dict[str, Any]:
    """The model, the limits and the wire version (the client's connection check)."""
    st = state_of(request)
    s = st.settings
    return {
        "name": "MaskLoop Server", "version": __version__, "wire": WIRE_VERSION,
        "model_id": st.worker.model_id, "description": st.worker.predictor.description,
        "sam2_version_id": st.sam2_version, "hybrid": st.worker.cache is not None,
        "max_image_pixels": s.max_image_pixels, "max_request_bytes": s.max_request_bytes,
        "max_image_side": images.MAX_SIDE, "max_image_aspect": images.MAX_ASPECT,
        "max_points": s.max_points, "max_prompts": s.max_prompts,
        "propagate": _can_propagate(st), "max_propagate_frames": s.max_propagate_frames,
        "max_tracks": s.max_tracks,
    }


def _can_propagate(st: ServerState) -> bool:
    """Whether the server's backend follows objects through a sequence (/v1/propagate)."""
    return bool(st.worker.predictor.capabilities.video)


@router.head("/images/{image_hash}")
@router.get("/images/{image_hash}")
def image_info(image_hash: str, request: Request) -> dict[str, Any]:
    """200 with the image's size if its embedding is here, else 404 (upload it)."""
    st = state_of(request)
    key = st.worker.key_for(_checked_hash(image_hash))
    if not st.worker.has_embedding(key):
        raise HTTPProblem(404, f"image {image_hash[:16]} is not on this server: PUT it")
    return _image_info(st, image_hash, time_s=0.0)


@router.put("/images/{image_hash}", responses=_IMAGE_ERRORS)
async def put_image(image_hash: str, request: Request) -> dict[str, Any]:
    """Upload an image file (body: its bytes) and embed it; the sha256 must match."""
    st = state_of(request)
    _checked_hash(image_hash)
    data = await request.body()
    actual = await run_in_threadpool(_sha256, data)
    if actual != image_hash:
        raise HTTPProblem(422, f"the body's sha256 is {actual}, not {image_hash}")
    return await _embed_file(st, image_hash, data)


@router.post("/images", responses=_IMAGE_ERRORS)
async def post_image(request: Request) -> dict[str, Any]:
    """Upload an image file (body: its bytes); the server computes its sha256."""
    st = state_of(request)
    data = await request.body()
    image_hash = await run_in_threadpool(_sha256, data)
    return await _embed_file(st, image_hash, data)


@router.post("/images/{image_hash}/predict", responses=error_responses(409, 504))
async def predict(image_hash: str, request: Request) -> Response:
    """One click: JSON prompt in (``app.wire.messages.prompt_to_wire``), envelope out."""
    st = state_of(request)
    _checked_hash(image_hash)
    raw = await request.body()
    try:
        req = prompt_from_wire(json.loads(raw or b"{}"))
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise HTTPProblem(422, f"bad predict request: {exc}") from exc
    if len(req.prompt.points) > st.settings.max_points:
        raise HTTPProblem(422, f"{len(req.prompt.points):,} points: this server takes at "
                               f"most {st.settings.max_points} per prompt (--max-points)")
    t0 = time.perf_counter()
    prompt = req.prompt
    if req.refine is not None:
        mask_input = st.results.logits(req.refine.result, req.refine.candidate, image_hash)
        prompt = dataclasses.replace(prompt, mask_input=mask_input)
    result = await st.worker.predict(st.worker.key_for(image_hash), prompt)
    content = await run_in_threadpool(_encode_result, st, image_hash, req, result, t0)
    return Response(content, media_type=CONTENT_TYPE)


@router.get("/images/{image_hash}/embedding", responses=error_responses(501))
def embedding(image_hash: str, request: Request, compress: bool = False) -> Response:
    """Hybrid mode: the image's float16 embedding (``app.wire.messages.encode_embedding``)."""
    st = state_of(request)
    key = st.worker.key_for(_checked_hash(image_hash))
    if st.worker.cache is None:
        raise HTTPProblem(501, f"the {st.worker.model_id} backend has no embedding to send")
    emb = st.worker.embedding(key)
    if emb is None:
        raise HTTPProblem(404, f"image {image_hash[:16]} is not on this server: PUT it")
    content = encode_embedding(emb.arrays, emb.image_size, model_id=key.model_id,
                               image_hash=image_hash, compress=compress)
    return Response(content, media_type=CONTENT_TYPE)


def _encode_result(st: ServerState, image_hash: str, req: Any, result: MaskResult,
                   t0: float) -> bytes:
    rid = st.results.add(image_hash, result.low_res_logits)
    return encode_prediction(
        result, rid, mask_codec=req.mask_codec,
        logits_codec=req.logits_codec if req.return_logits else None,
        model_id=st.worker.model_id, time=time.perf_counter() - t0,
    )


async def _embed_file(st: ServerState, image_hash: str, data: bytes) -> dict[str, Any]:
    t0 = time.perf_counter()
    image = await run_in_threadpool(_image_unless_embedded, st, image_hash, data)
    st.frames.put(image_hash, data)  # a frame /v1/propagate may read (app.server.frames)
    if image is not None:
        await st.worker.embed(image, image_hash)
    return await run_in_threadpool(_image_info, st, image_hash, time.perf_counter() - t0)


def _image_unless_embedded(st: ServerState, image_hash: str, data: bytes) -> Any:
    """The decoded image, or None when its embedding is here already (memory or disk)."""
    key = st.worker.key_for(image_hash)
    if st.worker.has_embedding(key) and st.worker.image_size(key) is not None:
        return None
    return decode_image(data, st.settings.max_image_pixels)


def _image_info(st: ServerState, image_hash: str, time_s: float) -> dict[str, Any]:
    key = st.worker.key_for(image_hash)
    size = st.worker.image_size(key)
    h, w = size if size is not None else (None, None)
    return {"hash": image_hash, "width": w, "height": h, "embedded": True,
            "model_id": key.model_id, "time": time_s}


def _checked_hash(image_hash: str) -> str:
    if not _HASH.match(image_hash):
        raise HTTPProblem(422, "the image hash must be the sha256 of the file: 64 lowercase "
                               f"hex digits, not {image_hash[:80]!r}")
    return image_hash


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
