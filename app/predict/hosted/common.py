"""What every hosted-API client shares: images kept locally, masks decoded from whatever the
API returns (PNG/JPEG mask images, polygons, COCO RLE), low-res logits made from a mask.

A hosted API has no embedding we can hold: ``embed`` keeps the image (a few, most recent
first) and ``predict`` uploads it with the prompt.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from app.core import rle as rle_codec
from app.core.geometry import mask_iou
from app.core.images import array_hash, sniff_format
from app.core.jobs import CancelToken, Progress, check
from app.core.lru import BoundedCache
from app.core.nms import nms
from app.core.types import LOW_RES, EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    PredictorError,
    SourceKind,
)
from app.predict.remote.http_session import HttpSession

KEPT_IMAGES = 4
LOGIT_SCALE = 10.0  # |logit| of a pixel certainly inside / outside a mask from an API


def api_key_from(explicit: str | None, env_var: str, provider: str,
                 settings: Mapping[str, Any] | None = None, setting: str | None = None) -> str:
    """The key given as argument, else from ``settings[setting]``, else ``$env_var``;
    PredictorError saying where to put it when there is none."""
    key = explicit or (settings or {}).get(setting or "") or os.environ.get(env_var)
    if not key:
        raise PredictorError(
            f"{provider} needs an API key: pass --api-key, set it in the settings, "
            f"or set the environment variable {env_var}"
        )
    return str(key)


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """RGB uint8 (H, W, 3) -> JPEG or PNG file bytes."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PredictorError(f"expected an RGB uint8 (H, W, 3) image, got {image.shape} "
                             f"{image.dtype}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PredictorError("could not encode the image for upload")
    return buf.tobytes()


def image_b64(image: np.ndarray, fmt: str = "jpeg") -> str:
    return base64.b64encode(encode_image(image, fmt)).decode("ascii")


def data_uri(image: np.ndarray, fmt: str = "jpeg") -> str:
    mime = "image/png" if fmt == "png" else "image/jpeg"
    return f"data:{mime};base64,{image_b64(image, fmt)}"


def decode_b64(text: str, what: str) -> bytes:
    """Base64 (optionally a data URI) -> bytes; PredictorError naming ``what`` if invalid."""
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise PredictorError(f"{what} is not valid base64: {exc}") from None


def mask_from_image_bytes(data: bytes, height: int, width: int, what: str) -> np.ndarray:
    """A mask image (PNG/JPEG/WebP; white object on black, or alpha) -> (H, W) bool.
    Resized (nearest) when the API returns another size."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if sniff_format(data[:16]) is None:  # OpenCV would decode any format it knows
        raise PredictorError(f"{what} is not a JPEG, PNG, WebP, BMP, TIFF or GIF image "
                             f"({len(data)} bytes)")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise PredictorError(f"{what} is not a readable image ({len(data)} bytes)")
    if img.ndim == 3 and img.shape[2] == 4 and img[..., 3].min() < 255:
        gray = img[..., 3]
    elif img.ndim == 3:
        gray = img[..., :3].max(axis=2)
    else:
        gray = img
    if gray.dtype != np.uint8:
        gray = (gray > 0).astype(np.uint8) * 255
    if gray.shape != (height, width):
        gray = cv2.resize(gray, (width, height), interpolation=cv2.INTER_NEAREST)
    return gray > 127


def mask_from_polygons(polygons: Any, height: int, width: int, what: str) -> np.ndarray:
    """Polygons [[[x, y], ...], ...] in pixels (vertices on pixel indices, as OpenCV contours)
    -> (H, W) bool; every polygon filled (holes are not representable in this format)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    try:
        rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    except (TypeError, ValueError) as exc:
        raise PredictorError(f"{what}: polygons are malformed ({exc})") from None
    rings = [np.round(r).astype(np.int32) for r in rings if len(r) >= 1]
    if rings:
        cv2.fillPoly(mask, rings, 1)
        cv2.polylines(mask, rings, True, 1)
    return mask.astype(bool)


def mask_from_rle(rle: Any, height: int, width: int, what: str) -> np.ndarray:
    """COCO RLE {"size": [h, w], "counts": str | list} -> (H, W) bool."""
    if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
        raise PredictorError(f"{what}: RLE must be an object with 'size' and 'counts'")
    try:
        mask = rle_codec.decode(rle)
    except ValueError as exc:
        raise PredictorError(f"{what}: RLE cannot be decoded ({exc})") from None
    h, w = mask.shape
    if mask.shape != (height, width):
        raise PredictorError(f"{what}: RLE mask is {w}x{h}, the image is {width}x{height}")
    return mask


def logits_from_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (256, 256) float32 logits (the image squashed to SAM's low-res frame)."""
    frac = cv2.resize(mask.astype(np.float32), (LOW_RES, LOW_RES), interpolation=cv2.INTER_AREA)
    return ((frac - 0.5) * (2 * LOGIT_SCALE)).astype(np.float32)


def result_from_masks(masks: Sequence[np.ndarray], scores: Sequence[float],
                      height: int, width: int) -> MaskResult:
    """A MaskResult from full-resolution masks (an empty mask when the API gave none)."""
    if not masks:
        masks, scores = [np.zeros((height, width), dtype=bool)], [0.0]
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    return MaskResult(
        masks=stack,
        scores=np.asarray(scores, dtype=np.float32),
        low_res_logits=np.stack([logits_from_mask(m) for m in stack]),
    )


def bbox_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def proposals_from_masks(masks: Sequence[np.ndarray], scores: Sequence[float],
                         min_area: int = 0, prompt: str = "") -> list[MaskProposal]:
    """MaskProposals (largest first), dropping masks smaller than ``min_area`` pixels;
    ``prompt`` says what found them (a text, an exemplar; empty for segment everything)."""
    out = [MaskProposal(mask=m, score=float(s), stability=float(s), bbox=bbox_of(m),
                        prompt=prompt)
           for m, s in zip(masks, scores, strict=True) if int(m.sum()) >= max(1, min_area)]
    out.sort(key=lambda p: -int(p.mask.sum()))
    return out


def finish_proposals(proposals: Sequence[MaskProposal], query: FindQuery) -> list[MaskProposal]:
    """What ``find_all`` returns: proposals scoring at least ``query.score_threshold``,
    overlaps above ``query.nms_iou`` suppressed (also across separate API requests), best
    first (larger first among equal scores), at most ``query.max_results``."""
    kept = [p for p in proposals if p.score >= query.score_threshold and p.mask.any()]
    kept.sort(key=lambda p: (-p.score, -int(p.mask.sum())))
    if len(kept) > 1:
        order = nms([p.score for p in kept],
                    lambda i, rest: np.array([proposal_iou(kept[i], kept[j]) for j in rest]),
                    query.nms_iou)
        kept = [kept[int(i)] for i in order]
    return kept[:max(0, query.max_results)]


def proposal_iou(a: MaskProposal, b: MaskProposal) -> float:
    """The masks' IoU, counted inside the union of their boxes only (0 when the boxes are
    apart): many proposals on a large image stay cheap to compare."""
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    if ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0:
        return 0.0
    x0, y0 = int(min(ax0, bx0)), int(min(ay0, by0))
    x1, y1 = int(np.ceil(max(ax1, bx1))), int(np.ceil(max(ay1, by1)))
    return mask_iou(a.mask[y0:y1, x0:x1], b.mask[y0:y1, x0:x1])


def split_components(mask: np.ndarray, min_area: int = 1) -> list[np.ndarray]:
    """The connected parts (8-connected) of a mask, each as its own (H, W) bool mask."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == i for i in range(1, n) if int((labels == i).sum()) >= min_area]


class HostedPredictor:
    """Base of the hosted clients: keeps embedded images locally, by key.

    Subclasses set ``provider`` and implement ``_predict`` (and optionally ``_everything``
    and ``find_all``)."""

    provider = "hosted API"
    capabilities = Capabilities(SourceKind.HOSTED, "remote")

    def __init__(self, session: HttpSession, model_id: str) -> None:
        self.session = session
        self._model_id = model_id
        self._images = BoundedCache[EmbeddingKey, np.ndarray](KEPT_IMAGES)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.session.redact(self.session.base_url)!r})"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def description(self) -> str:
        return f"{self.provider} ({self._model_id})"

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        """Keep ``image`` locally; it is uploaded with each request (no network here)."""
        check(cancel)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PredictorError(
                f"expected an RGB uint8 (H, W, 3) image, got {image.shape} {image.dtype}"
            )
        key = EmbeddingKey(image_hash or array_hash(image), self._model_id)
        self._images.put(key, image)
        return key

    def image_of(self, key: EmbeddingKey) -> np.ndarray:
        image = self._images.get(key)
        if image is None:
            raise PredictorError(
                f"image {key.image_hash[:12]} was not given to {self.provider}: embed it first"
            )
        return image

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        return self._predict(self.image_of(key), key, prompt)

    def _predict(self, image: np.ndarray, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        raise NotImplementedError

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        """Every object, where the API offers it (else PredictorError)."""
        arr = self.image_of(image) if isinstance(image, EmbeddingKey) else image
        check(cancel)
        return self._everything(arr, options)

    def _everything(self, image: np.ndarray, options: EverythingOptions) -> list[MaskProposal]:
        text = self.capabilities.text_prompts
        hint = "; use 'find all' with a text prompt instead" if text else ""
        raise PredictorError(f"{self.provider} offers no 'segment everything'{hint}")

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """Every instance ``query`` asks for, where the API understands its kind of prompt
        (``capabilities``); best first, each with the prompt that found it."""
        self.check_query(query)
        arr = as_image(self, image)
        check(cancel)
        return finish_proposals(self._find(arr, query, cancel, progress), query)

    def check_query(self, query: FindQuery) -> None:
        """PredictorError unless this API takes every kind of prompt in ``query``."""
        if not query.texts and not query.exemplars:
            raise PredictorError("find all needs a text such as 'person' or an example box")
        if any(not t.strip() for t in query.texts):
            raise PredictorError("find all got an empty text prompt")
        if query.texts and not self.capabilities.text_prompts:
            raise PredictorError(f"{self.provider} does not understand text prompts")
        if query.exemplars and not self.capabilities.exemplar_prompts:
            raise PredictorError(f"{self.provider} takes no example boxes ('find all like "
                                 f"this'); give a text instead")

    def _find(self, image: np.ndarray, query: FindQuery, cancel: CancelToken | None,
              progress: Progress | None) -> list[MaskProposal]:
        """The API's proposals for ``query`` (filtered and sorted by ``find_all``)."""
        raise PredictorError(f"{self.provider} offers no 'find all'")

    def close(self) -> None:
        self._images.clear()
        self.session.close()


def as_image(predictor: HostedPredictor, image: EmbeddingKey | np.ndarray) -> np.ndarray:
    return predictor.image_of(image) if isinstance(image, EmbeddingKey) else image
