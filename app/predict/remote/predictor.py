"""The client of MaskLoop's own server (``maskloop serve``), in two modes.

- ``mode="server"``: the server encodes and decodes. Each image is uploaded once (a ``HEAD``
  first: nothing is sent when the server already has it); per click the client sends a
  prompt of a few hundred bytes and receives the candidates as COCO RLE with their scores
  (app/wire/messages.py). Refinement refers to the server's earlier result by id, so the
  low-res logits never travel (unless ``return_logits``).
- ``mode="hybrid"``: the server encodes; the client fetches the float16 embedding once per
  image and decodes every click LOCALLY with the SAM2 decoder (needs torch and the same
  checkpoint here): no network per click.

Connection check on creation (``GET /healthz``, ``GET /v1/info``); retries with backoff on
connection errors, 5xx and 429 (Retry-After honoured); API key sent as a Bearer header and
never logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from app.core.errors import WireError
from app.core.images import array_hash
from app.core.jobs import CancelToken, Progress, check
from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey, MaskProposal, MaskResult, Prompt
from app.predict.base import (
    Capabilities,
    EverythingOptions,
    FindQuery,
    PredictorError,
    SourceKind,
)
from app.predict.hosted.common import encode_image, logits_from_mask
from app.predict.remote.http_session import HttpSession, WireStats
from app.wire import codecs
from app.wire import messages as wire

if TYPE_CHECKING:
    import httpx

    from app.predict.sam2.predictor import SAM2Predictor

log = logging.getLogger(__name__)

MODES = ("server", "hybrid")
KEPT_UPLOADS = 4  # encoded images kept to re-upload after a server restart
KEPT_RESULTS = 64  # logits fingerprints -> (server result id, candidate)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/octet-stream"


def _fingerprint(logits: np.ndarray) -> bytes:
    a = np.ascontiguousarray(np.asarray(logits, dtype=np.float32).reshape(-1))
    return hashlib.blake2b(a.data, digest_size=16).digest()


class RemotePredictor:
    """A Predictor backed by a MaskLoop server. Not thread-safe (one worker owns it)."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        mode: str = "server",
        *,
        timeout: float = 30.0,
        embed_timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        decoder: SAM2Predictor | str | Path | None = None,
        upload_format: str = "png",
        mask_codec: str = "rle",
        return_logits: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Connect to the server at ``url`` (PredictorError if it cannot be reached or
        rejects the key). Hybrid mode decodes with ``decoder`` (a SAM2Predictor or a
        checkpoint path); None finds the server's registry model installed here.
        ``embed_timeout`` bounds an upload (the server encodes before it answers)."""
        if mode not in MODES:
            raise PredictorError(f"unknown remote mode {mode!r}; use one of: {', '.join(MODES)}")
        if upload_format not in ("png", "jpeg"):
            raise PredictorError(f"upload_format must be 'png' or 'jpeg', not {upload_format!r}")
        if mask_codec not in codecs.MASK_CODECS:
            raise PredictorError(f"mask_codec must be one of {', '.join(codecs.MASK_CODECS)}")
        self.url = url.rstrip("/")
        self.mode = mode
        self.upload_format = upload_format
        self.mask_codec = mask_codec
        self.return_logits = return_logits
        self.embed_timeout = max(timeout, embed_timeout)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.session = HttpSession(
            self.url, name="server", headers=headers, secrets=[api_key], timeout=timeout,
            retries=retries, backoff=backoff, transport=transport,
        )
        self._server_hash: dict[str, str] = {}  # key.image_hash -> hash the server knows
        self._sizes: dict[str, tuple[int, int]] = {}  # key.image_hash -> (h, w)
        self._uploads = BoundedCache[str, bytes](KEPT_UPLOADS)  # server hash -> file bytes
        self._results = BoundedCache[bytes, tuple[int, int]](KEPT_RESULTS)
        self.last_server_time = 0.0  # seconds the server spent on the last click
        try:
            self.info = self._connect()
            self._model_id = str(self.info.get("model_id") or "remote")
            self.decoder: SAM2Predictor | None = None
            if mode == "hybrid":
                self.decoder = self._make_decoder(decoder)
        except BaseException:
            self.session.close()
            raise

    def __repr__(self) -> str:
        return f"RemotePredictor({self.url!r}, mode={self.mode!r})"

    # -- connection -----------------------------------------------------------------------

    def _connect(self) -> Mapping[str, Any]:
        self.session.request("GET", "/healthz", what="the health check",
                             retries=min(1, self.session.retries))
        info = self.session.json("GET", "/v1/info", what="the server info")
        if not isinstance(info, Mapping) or "model_id" not in info:
            raise PredictorError(f"{self.url} answered /v1/info without a model_id: is it a "
                                 "MaskLoop server?")
        return info

    def _make_decoder(self, decoder: SAM2Predictor | str | Path | None) -> SAM2Predictor:
        from app.predict.models.registry import REGISTRY, installed_checkpoint
        from app.predict.sam2.predictor import SAM2Predictor

        if isinstance(decoder, SAM2Predictor):
            made = decoder
        elif decoder is not None:
            made = SAM2Predictor(decoder, device="cpu")
        else:
            spec = next((s for s in REGISTRY.values() if s.model_id == self._model_id), None)
            path = installed_checkpoint(spec.name) if spec is not None else None
            if spec is None or path is None:
                raise PredictorError(
                    f"hybrid mode decodes locally and needs the server's model "
                    f"({self._model_id}) here: run 'maskloop models download "
                    f"{spec.name if spec else 'NAME'}', pass its checkpoint, or use server mode"
                )
            made = SAM2Predictor(path, spec.config, spec.model_id, "cpu",
                                 name=f"SAM2.1 {spec.name}")
        if made.model_id != self._model_id:
            raise PredictorError(
                f"hybrid mode needs the server's model locally: the server runs "
                f"{self._model_id}, the local decoder is {made.model_id}"
            )
        return made

    # -- Predictor protocol ---------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def description(self) -> str:
        where = "decoding here" if self.mode == "hybrid" else "on the server"
        return f"{self.info.get('description') or self._model_id} at {self.url} ({where})"

    @property
    def capabilities(self) -> Capabilities:
        """Exemplar prompts in hybrid mode (found here, on the fetched embedding); video
        when the server propagates (``app.predict.remote.propagation``)."""
        return Capabilities(SourceKind.REMOTE, "remote", exemplar_prompts=self.mode == "hybrid",
                            video=bool(self.info.get("propagate")))

    @property
    def stats(self) -> WireStats:
        """Requests and bytes on the wire since this predictor was created."""
        return self.session.stats

    def embed(self, image: np.ndarray, image_hash: str | None = None,
              cancel: CancelToken | None = None) -> EmbeddingKey:
        """Make sure the server has the image's embedding (uploading the image only when
        it lacks it); hybrid mode also fetches the embedding once."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PredictorError(
                f"expected an RGB uint8 (H, W, 3) image, got {image.shape} {image.dtype}"
            )
        check(cancel)
        name = image_hash or array_hash(image)
        key = EmbeddingKey(name, self._model_id)
        h, w = image.shape[:2]
        self._sizes[name] = (h, w)
        if self.mode == "hybrid" and self._local_has(key):
            return key
        if name not in self._server_hash or not self._server_has(self._server_hash[name]):
            if image_hash is not None and _SHA256.match(image_hash) and \
                    self._server_has(image_hash):
                self._server_hash[name] = image_hash
            else:
                self._server_hash[name] = self._upload(image)
        check(cancel)
        if self.mode == "hybrid":
            self._fetch_embedding(key)
        check(cancel)
        return key

    def embed_file(self, path: str | Path, cancel: CancelToken | None = None) -> EmbeddingKey:
        """Like ``embed`` for an image file: its own bytes go up (a JPEG is far smaller than
        the PNG ``embed`` makes), keyed by their sha256 (``content_hash``), so the server
        decodes it exactly as ``load_image`` does here (EXIF orientation applied)."""
        check(cancel)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PredictorError(f"cannot read image {path}: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        if not self._server_has(digest):
            self._put(digest, data, None)
        info = self.session.json("GET", f"/v1/images/{digest}", what="asking for the image")
        try:
            self._sizes[digest] = (int(info["height"]), int(info["width"]))
        except (KeyError, TypeError, ValueError):
            raise PredictorError("server's image info lacks its width and height") from None
        self._server_hash[digest] = digest
        key = EmbeddingKey(digest, self._model_id)
        check(cancel)
        if self.mode == "hybrid":
            self._fetch_embedding(key)
        return key

    def predict(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        if prompt.is_empty():
            raise PredictorError("empty prompt: give at least one point or a box")
        if key.model_id != self._model_id:
            raise PredictorError(f"embedding of {key.image_hash[:12]} was made by "
                                 f"{key.model_id}, not {self._model_id}")
        if self.decoder is not None:
            self._fetch_embedding(key)
            return self.decoder.predict(key, prompt)
        return self._predict_on_server(key, prompt)

    def segment_everything(self, image: EmbeddingKey | np.ndarray,
                           options: EverythingOptions = EverythingOptions(), *,
                           cancel: CancelToken | None = None,
                           progress: Progress | None = None) -> list[MaskProposal]:
        """Hybrid mode runs it locally on the fetched embedding; server mode does not offer
        it (it would take a thousand round trips)."""
        if self.decoder is None:
            raise PredictorError("segment everything needs hybrid mode with a remote server "
                                 "(--remote-mode hybrid), or a local model")
        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        self._fetch_embedding(key)
        return self.decoder.segment_everything(
            key, options, cancel=cancel, progress=progress)

    def find_all(self, image: EmbeddingKey | np.ndarray, query: FindQuery, *,
                 cancel: CancelToken | None = None,
                 progress: Progress | None = None) -> list[MaskProposal]:
        """Hybrid mode finds objects like the query's exemplars locally on the fetched
        embeddings (an exemplar in another picture: that picture is encoded by the server
        and fetched too); server mode offers no find all, and neither understands text."""
        if self.decoder is None and query.exemplars:
            raise PredictorError("find all like this needs hybrid mode with a remote server "
                                 "(--remote-mode hybrid), or a local model")
        query.check_supported(self.capabilities, "MaskLoop's server")
        assert self.decoder is not None
        key = image if isinstance(image, EmbeddingKey) else self.embed(image, cancel=cancel)
        self._fetch_embedding(key)
        for e in query.exemplars:
            if e.image is not None:
                self.embed(np.asarray(e.image), cancel=cancel)
        return self.decoder.find_all(key, query, cancel=cancel, progress=progress)

    def close(self) -> None:
        self._uploads.clear()
        self._results.clear()
        if self.decoder is not None:
            self.decoder.close()
        self.session.close()

    # -- images ---------------------------------------------------------------------------

    def _server_has(self, server_hash: str) -> bool:
        response = self.session.request("HEAD", f"/v1/images/{server_hash}", ok=(200, 404),
                                        what="asking for the image")
        return response.status_code == 200

    def _upload(self, image: np.ndarray) -> str:
        """Upload the image (PNG: lossless) under the sha256 of the uploaded bytes, unless
        the server already has those bytes from an earlier session."""
        data = encode_image(image, self.upload_format)
        digest = hashlib.sha256(data).hexdigest()
        if not self._server_has(digest):
            self._put(digest, data, image.shape[:2])
        self._uploads.put(digest, data)
        return digest

    def _put(self, digest: str, data: bytes, size: tuple[int, ...] | None) -> None:
        mime = _mime(data)
        info = self.session.json("PUT", f"/v1/images/{digest}", content=data,
                                 headers={"Content-Type": mime}, timeout=self.embed_timeout,
                                 what="uploading the image")
        if size is not None and isinstance(info, Mapping) and "width" in info and \
                "height" in info:
            got = (int(info["height"]), int(info["width"]))
            if got != tuple(size[:2]):
                raise PredictorError(f"the server read the image as {got[1]}x{got[0]}, "
                                     f"not {size[1]}x{size[0]}")

    def _reupload(self, key: EmbeddingKey) -> bool:
        """After a 404 (server restarted or evicted the image): upload again if we can."""
        digest = self._server_hash.get(key.image_hash)
        data = self._uploads.get(digest or "")
        if digest is None or data is None:
            return False
        self._put(digest, data, self._sizes.get(key.image_hash, (0, 0)))
        return True

    def _server_path(self, key: EmbeddingKey) -> str:
        digest = self._server_hash.get(key.image_hash)
        if digest is None:
            raise PredictorError(f"image {key.image_hash[:12]} was not embedded on "
                                 f"{self.url}: embed it first")
        return f"/v1/images/{digest}"

    # -- hybrid ---------------------------------------------------------------------------

    def _local_has(self, key: EmbeddingKey) -> bool:
        assert self.decoder is not None
        return self.decoder.cache.contains(key)

    def _fetch_embedding(self, key: EmbeddingKey) -> None:
        """Download the float16 embedding once into the local decoder's cache."""
        from app.predict.cache.file_format import Embedding

        if self._local_has(key):
            return
        path = self._server_path(key) + "/embedding"
        response = self.session.request("GET", path, ok=(200, 404), timeout=self.embed_timeout,
                                        what="fetching the embedding")
        if response.status_code == 404 and self._reupload(key):
            response = self.session.request("GET", path, timeout=self.embed_timeout,
                                            what="fetching the embedding")
        elif response.status_code == 404:
            raise self.session.status_error(response, "fetching the embedding", 1)
        try:
            arrays, size, header = wire.decode_embedding(response.content)
        except WireError as exc:
            raise PredictorError(f"server sent a bad embedding: {exc}") from None
        if header.get("model_id") not in (None, self._model_id):
            raise PredictorError(f"server sent an embedding of model {header.get('model_id')}, "
                                 f"expected {self._model_id}")
        assert self.decoder is not None
        self.decoder.cache.put(key, Embedding(arrays, size))

    # -- server mode ----------------------------------------------------------------------

    def _predict_on_server(self, key: EmbeddingKey, prompt: Prompt) -> MaskResult:
        refine = None
        if prompt.mask_input is not None:
            ref = self._results.get(_fingerprint(prompt.mask_input))
            refine = wire.Refine(*ref) if ref is not None else None
        fresh = wire.PredictRequest(prompt, None, self.return_logits, self.mask_codec)
        request = wire.PredictRequest(prompt, refine, self.return_logits, self.mask_codec)
        response = self._post_predict(key, request)
        if response.status_code == 409:  # the server forgot that result: send the logits
            log.info("server forgot result %s; sending the mask input itself", refine)
            request = fresh
            response = self._post_predict(key, request)
        if response.status_code == 404 and self._reupload(key):
            # a restarted server lost the image, and with it every earlier result: the
            # click goes again as a fresh one (its mask input itself, not a result id)
            request = fresh
            response = self._post_predict(key, request)
        if response.status_code != 200:
            raise self.session.status_error(response, "the click", 1)
        try:
            pred = wire.decode_prediction(response.content)
        except WireError as exc:
            raise PredictorError(f"server sent a bad prediction: {exc}") from None
        self.last_server_time = pred.time
        return self._as_result(key, pred)

    def _post_predict(self, key: EmbeddingKey, request: wire.PredictRequest) -> httpx.Response:
        return self.session.request(
            "POST", self._server_path(key) + "/predict", json=wire.prompt_to_wire(request),
            ok=(200, 404, 409), what="the click",
        )

    def _as_result(self, key: EmbeddingKey, pred: wire.WirePrediction) -> MaskResult:
        n = len(pred.scores)
        size = self._sizes.get(key.image_hash)
        if pred.masks.shape[0] != n or (size is not None and pred.masks.shape[1:] != size):
            raise PredictorError(f"server sent masks of shape {pred.masks.shape} for "
                                 f"{n} scores and an image of size {size}")
        logits = pred.low_res_logits
        if logits is None:  # stand-ins: refinement refers to the server's own logits
            logits = np.stack([logits_from_mask(m) for m in pred.masks]) if n else \
                np.zeros((0, 256, 256), dtype=np.float32)
        result = MaskResult(pred.masks, pred.scores.astype(np.float32), logits)
        for i in range(n):
            self._results.put(_fingerprint(result.logits_for(i)), (pred.result_id, i))
        return result
