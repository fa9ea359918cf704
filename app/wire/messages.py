"""The wire format between MaskLoop's server (app/server) and its client
(app/predict/remote/predictor.py).

Everything here is pure numpy/pycocotools/Pillow so that both sides share one implementation.

Envelope (``pack``/``unpack``), content type ``CONTENT_TYPE``: a container of
``app.wire.container`` (a safetensors file, the format of the embedding cache files too) of
kind "message", version ``WIRE_VERSION``: the JSON header (UTF-8) in the metadata key "header",
each binary blob a 1-D uint8 array of that name (the container keeps their order and checks a
crc32). Version 1 was a hand-written "MLW1" envelope; ``unpack`` names it when it meets one.

Routes of the server's own API (prefix ``/v1``; API key as ``Authorization: Bearer KEY`` or
``?api_key=KEY``)::

    GET  /v1/info                        -> JSON: model_id, description, sam2_version_id, limits
    HEAD /v1/images/{sha256}             -> 200 if the server has the image's embedding, 404 if not
    GET  /v1/images/{sha256}             -> JSON ImageInfo {hash, width, height, embedded}
    PUT  /v1/images/{sha256}  body=file  -> JSON ImageInfo (the file's sha256 must match)
    POST /v1/images           body=file  -> JSON ImageInfo (hash computed by the server)
    POST /v1/images/{sha256}/predict     -> envelope (``encode_prediction``); body: JSON from
                                            ``prompt_to_wire`` (a few hundred bytes)
    GET  /v1/images/{sha256}/embedding   -> envelope (``encode_embedding``): hybrid mode

The image hash is the sha256 of the image FILE's bytes (``app.core.images.content_hash``), so the
desktop client can ask ``HEAD`` before uploading anything.

Per click the client sends a prompt (points, box, multimask) and, to refine, a reference to a
previous result: ``{"result": id, "candidate": k}``; the server keeps recent results' low-res
logits, so the logits never travel unless asked for (``return_logits``) or sent explicitly
(``mask_input``, encoded with ``encode_logits``). A reference the server has forgotten gets
409; the client then resends with ``mask_input`` or without refinement.

Prediction envelope header: ``result_id``, ``size`` [h, w], ``scores``, ``best``, ``mask_codec``
("rle": COCO compressed RLE counts strings in header["masks"]; "png": 1-bit PNG blobs "mask0",
"mask1", ...), ``logits`` (null or {"codec", "shape"} with blob "logits"), ``model_id``, ``time``.

Logit codecs: see ``app.wire.codecs`` (re-exported here with the mask codecs).

Embedding envelope header: ``model_id``, ``image_hash``, ``image_size`` [h, w], ``arrays``:
[{"name", "dtype", "shape", "codec": "raw" | "zlib"}] with one array per entry: "raw" ones are
stored as typed arrays of their dtype and shape (so an uncompressed embedding message is a
safetensors file of the embedding), "zlib" ones as uint8 blobs that inflate to at most
``MAX_EMBEDDING_BYTES`` in all (float16 for SAM2: image_embed (1,256,64,64), high_res_feats_0
(1,32,256,256), high_res_feats_1 (1,64,128,128), 8 MiB raw).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.core import rle
from app.core.errors import WireError
from app.core.types import LOW_RES, Box, MaskResult, Point, Prompt
from app.wire import container
from app.wire.codecs import (
    LOGIT_CODECS,
    MASK_CODECS,
    decode_logits,
    encode_logits,
    png_decode,
    png_encode,
)

__all__ = [
    "CONTENT_TYPE", "MAX_EMBEDDING_BYTES", "WIRE_VERSION", "PredictRequest", "Refine",
    "WirePrediction", "decode_embedding", "decode_prediction", "encode_embedding",
    "encode_prediction", "pack", "prompt_from_wire", "prompt_to_wire", "unpack",
]

KIND = "message"
WIRE_VERSION = 2  # 1: the hand-written "MLW1" envelope
CONTENT_TYPE = "application/vnd.maskloop.v2"
MAX_EMBEDDING_BYTES = 256 << 20  # an embedding message's arrays, inflated (SAM2's: 8 MiB)
_V1_MAGIC = b"MLW1"


# -- envelope -------------------------------------------------------------------------------


def pack(header: Mapping[str, Any], blobs: Mapping[str, bytes] | None = None) -> bytes:
    """One message: the JSON header and the named binary blobs, in one container."""
    return _pack(header, {name: np.frombuffer(data, np.uint8)
                          for name, data in (blobs or {}).items()})


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and the named blobs of a message made by ``pack``; WireError if invalid."""
    header, arrays = _unpack(data)
    return header, {name: a.tobytes() for name, a in arrays.items()}


def _pack(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> bytes:
    raw = json.dumps(dict(header), separators=(",", ":"), allow_nan=False)  # strict JSON
    return container.encode(KIND, WIRE_VERSION, arrays, {"header": raw})


def _unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of a message (writable, owning their memory)."""
    if bytes(data[:4]) == _V1_MAGIC:
        raise WireError(f"a wire version 1 message: this client reads version {WIRE_VERSION} "
                        "(update the server or the client so that both are the same release)")
    try:
        got = container.decode(data, KIND, WIRE_VERSION)
    except container.ContainerError as exc:
        raise WireError(str(exc)) from None
    try:
        header = json.loads(got.meta["header"])
        if not isinstance(header, dict):
            raise TypeError(f"the header is a {type(header).__name__}, not an object")
    except (KeyError, ValueError, TypeError) as exc:
        raise WireError(f"bad message header: {exc}") from None
    return header, got.arrays


# -- prompts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refine:
    """Refine candidate ``candidate`` of the server's earlier result ``result``."""

    result: int
    candidate: int


@dataclass(frozen=True)
class PredictRequest:
    """One click's request to ``POST /v1/images/{hash}/predict``."""

    prompt: Prompt
    refine: Refine | None = None
    return_logits: bool = False
    mask_codec: str = "rle"
    logits_codec: str = "q8z"


def prompt_to_wire(req: PredictRequest) -> dict[str, Any]:
    """The JSON body of a predict request: points as [x, y, 1|0], box as [x0, y0, x1, y1]."""
    p = req.prompt
    body: dict[str, Any] = {"points": [[_num(q.x), _num(q.y), 1 if q.positive else 0]
                                       for q in p.points]}
    if p.box is not None:
        b = p.box
        body["box"] = [_num(b.x0), _num(b.y0), _num(b.x1), _num(b.y1)]
    if not p.multimask:
        body["multimask"] = False
    if req.refine is not None:
        body["refine"] = {"result": int(req.refine.result),
                          "candidate": int(req.refine.candidate)}
    elif p.mask_input is not None:
        data = encode_logits(np.asarray(p.mask_input).reshape(1, LOW_RES, LOW_RES), "q8z")
        body["mask_input"] = {"codec": "q8z", "data": _b64(data)}
    if req.return_logits:
        body["return_logits"] = True
        if req.logits_codec != "q8z":
            body["logits_codec"] = req.logits_codec
    if req.mask_codec != "rle":
        body["mask_codec"] = req.mask_codec
    return body


def prompt_from_wire(body: Mapping[str, Any]) -> PredictRequest:
    """Parse ``prompt_to_wire``'s JSON (WireError on anything malformed)."""
    try:
        points = tuple(Point(float(x), float(y), bool(int(lab)))
                       for x, y, lab in body.get("points") or [])
        box = None
        if body.get("box") is not None:
            x0, y0, x1, y1 = (float(v) for v in body["box"])
            box = Box(x0, y0, x1, y1)
        refine = None
        if body.get("refine") is not None:
            refine = Refine(int(body["refine"]["result"]), int(body["refine"]["candidate"]))
        mask_input = None
        if body.get("mask_input") is not None:
            mi = body["mask_input"]
            mask_input = decode_logits(_unb64(str(mi["data"])), str(mi.get("codec", "q8z")),
                                       (1, LOW_RES, LOW_RES))
        mask_codec = str(body.get("mask_codec", "rle"))
        logits_codec = str(body.get("logits_codec", "q8z"))
        multimask = bool(body.get("multimask", True))
        return_logits = bool(body.get("return_logits", False))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad predict request: {exc}") from exc
    if mask_codec not in MASK_CODECS:
        raise WireError(f"unknown mask_codec {mask_codec!r}; use one of {', '.join(MASK_CODECS)}")
    if logits_codec not in LOGIT_CODECS:
        raise WireError(f"unknown logits_codec {logits_codec!r}")
    if not all(np.isfinite([c for q in points for c in (q.x, q.y)])):
        raise WireError("point coordinates must be finite numbers")
    if box is not None and not all(np.isfinite([box.x0, box.y0, box.x1, box.y1])):
        raise WireError("box coordinates must be finite numbers")
    if mask_input is not None and not np.isfinite(mask_input).all():
        raise WireError("mask_input logits must be finite numbers")
    prompt = Prompt(points=points, box=box, mask_input=mask_input, multimask=multimask)
    return PredictRequest(prompt, refine, return_logits, mask_codec, logits_codec)


# -- predictions ----------------------------------------------------------------------------


@dataclass
class WirePrediction:
    """A decoded prediction: full-resolution masks, scores, and the logits if they were sent."""

    result_id: int
    masks: np.ndarray  # (N, H, W) bool
    scores: np.ndarray  # (N,) float32
    low_res_logits: np.ndarray | None  # (N, 256, 256) float32 or None
    model_id: str = ""
    time: float = 0.0

    def to_mask_result(self) -> MaskResult:
        """As a MaskResult (zero logits when the server did not send them)."""
        logits = self.low_res_logits
        if logits is None:
            logits = np.zeros((len(self.scores), LOW_RES, LOW_RES), dtype=np.float32)
        return MaskResult(self.masks, self.scores, logits)


def encode_prediction(
    result: MaskResult,
    result_id: int,
    *,
    mask_codec: str = "rle",
    logits_codec: str | None = None,
    model_id: str = "",
    time: float = 0.0,
) -> bytes:
    """A MaskResult as an envelope; logits only when ``logits_codec`` is given."""
    n, h, w = result.masks.shape
    header: dict[str, Any] = {
        "wire": WIRE_VERSION, "result_id": int(result_id), "size": [int(h), int(w)],
        "scores": [round(float(s), 6) for s in result.scores], "best": result.best,
        "mask_codec": mask_codec, "model_id": model_id, "time": round(float(time), 6),
        "logits": None,
    }
    blobs: dict[str, bytes] = {}
    if mask_codec == "rle":
        header["masks"] = [rle.encode_json(m)["counts"] for m in result.masks]
    elif mask_codec == "png":
        for i, m in enumerate(result.masks):
            blobs[f"mask{i}"] = png_encode(m)
    else:
        raise WireError(f"unknown mask codec {mask_codec!r}")
    if logits_codec is not None:
        header["logits"] = {"codec": logits_codec, "shape": list(result.low_res_logits.shape)}
        blobs["logits"] = encode_logits(result.low_res_logits, logits_codec)
    return pack(header, blobs)


def _rle_mask(h: int, w: int, counts: object) -> np.ndarray:
    """One mask of an "rle" prediction: compressed counts (a string) of an (h, w) mask."""
    if not isinstance(counts, str):
        raise WireError(f"bad RLE mask: counts must be a string, not {type(counts).__name__}")
    try:
        return rle.decode({"size": [h, w], "counts": counts})
    except ValueError as exc:
        raise WireError(str(exc)) from exc


def decode_prediction(data: bytes) -> WirePrediction:
    """``encode_prediction``'s bytes back to masks, scores and (maybe) logits."""
    header, blobs = unpack(data)
    try:
        h, w = (int(v) for v in header["size"])
        scores = np.asarray(header["scores"], dtype=np.float32)
        codec = header["mask_codec"]
        if codec == "rle":
            masks = [_rle_mask(h, w, c) for c in header["masks"]]
        elif codec == "png":
            masks = [png_decode(blobs[f"mask{i}"]) for i in range(len(scores))]
        else:
            raise WireError(f"unknown mask codec {codec!r}")
        logits = None
        if header.get("logits"):
            li = header["logits"]
            logits = decode_logits(blobs["logits"], li["codec"], li["shape"])
        stacked = (np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool))
        return WirePrediction(int(header["result_id"]), stacked, scores, logits,
                              str(header.get("model_id", "")), float(header.get("time", 0.0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"bad prediction message: {exc}") from exc


# -- embeddings (hybrid mode) ---------------------------------------------------------------


def encode_embedding(
    arrays: Mapping[str, np.ndarray],
    image_size: tuple[int, int],
    *,
    model_id: str,
    image_hash: str,
    compress: bool = False,
) -> bytes:
    """An image's embedding arrays as an envelope (zlib per array when ``compress``)."""
    entries = []
    blobs: dict[str, np.ndarray] = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.asarray(a).dtype.newbyteorder("<"), order="C")  # as sent
        entries.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape),
                        "codec": "zlib" if compress else "raw"})
        if compress:
            blobs[name] = np.frombuffer(zlib.compress(a.reshape(-1).view(np.uint8).data, 1),
                                        np.uint8)
        else:
            blobs[name] = a
    header = {"wire": WIRE_VERSION, "model_id": model_id, "image_hash": image_hash,
              "image_size": [int(image_size[0]), int(image_size[1])], "arrays": entries}
    return _pack(header, blobs)


def decode_embedding(data: bytes) -> tuple[dict[str, np.ndarray], tuple[int, int], dict[str, Any]]:
    """(arrays, (h, w), header) from ``encode_embedding``'s bytes; the arrays are writable and
    own their memory (torch wants that)."""
    header, blobs = _unpack(data)
    arrays: dict[str, np.ndarray] = {}
    budget = MAX_EMBEDDING_BYTES
    try:
        for e in header["arrays"]:
            name, dtype = str(e["name"]), np.dtype(e["dtype"])
            shape = tuple(int(v) for v in e["shape"])
            blob = blobs[name]
            if e.get("codec") == "zlib":
                if dtype.hasobject or min(shape, default=0) < 0:
                    raise ValueError(f"array {name!r}: bad dtype or shape")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > budget:
                    raise ValueError(f"the arrays inflate to more than {MAX_EMBEDDING_BYTES:,} "
                                     "bytes")
                budget -= nbytes
                a = np.frombuffer(_inflate(blob.data, nbytes), dtype=dtype).reshape(shape).copy()
            else:
                a = blob  # a typed array: the container checked its shape against its bytes
                if a.dtype != dtype or a.shape != shape:
                    raise ValueError(f"array {name!r} is {a.dtype} {a.shape}, the header says "
                                     f"{dtype} {shape}")
            arrays[name] = a
        h, w = (int(v) for v in header["image_size"])
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise WireError(f"bad embedding message: {exc}") from exc
    return arrays, (h, w), header


def _inflate(data: memoryview, nbytes: int) -> bytes:
    """zlib ``data`` that must inflate to exactly ``nbytes`` (never more is allocated)."""
    d = zlib.decompressobj()
    out = d.decompress(data, nbytes + 1)  # + 1: a limit of 0 would mean none
    if len(out) != nbytes or not d.eof:
        raise ValueError(f"a zlib array does not inflate to its {nbytes:,} bytes")
    return out


def _num(v: float) -> float | int:
    """Short JSON numbers: integers stay integers, others keep 2 decimals (1/100 pixel)."""
    r = round(float(v), 2)
    return int(r) if r.is_integer() else r


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise WireError(f"bad base64: {exc}") from exc
