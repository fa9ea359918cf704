"""What every route shares: the settings, the model worker, the stores of recent results."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request

from app.core.lru import BoundedCache
from app.core.types import EmbeddingKey
from app.server.frames import FrameStore, LiveRuns
from app.server.image_ids import ImageIds
from app.server.middleware import SCOPE_AUTHENTICATED, body_key
from app.server.results import ResultStore
from app.server.schemas import Sam2PromptSet
from app.server.security import UrlPolicy, bearer_token, key_matches, unauthorized
from app.server.settings import ServerSettings
from app.server.worker import ModelWorker

__all__ = ["ServerState", "sam2_version_of", "state_of"]

_VERSION_PATTERNS = (
    ("hiera_tiny", r"hiera[_-]?t(iny)?\b|hiera_t\.|tiny"),
    ("hiera_small", r"hiera[_-]?s(mall)?\b|hiera_s\.|small"),
    ("hiera_b_plus", r"hiera[_-]?b\+|b_plus|base_plus|hiera_b\+"),
    ("hiera_large", r"hiera[_-]?l(arge)?\b|hiera_l\.|large"),
)


def sam2_version_of(*names: str | None) -> str | None:
    """Roboflow's sam2_version_id (hiera_tiny, ...) of a model id or config name, if any."""
    for name in names:
        if not name:
            continue
        for version, pattern in _VERSION_PATTERNS:
            if re.search(pattern, name.lower()):
                return version
    return None


_ENTRY_OVERHEAD = 256  # bytes of dict entry, tuple and objects around each cached value


def _logits_size(key: tuple[str, str], value: tuple[Sam2PromptSet, np.ndarray]) -> int:
    prompts, logits = value
    points = sum(len(p.points or []) + 1 for p in prompts.prompts or [])
    return len(key[0]) + int(logits.nbytes) + 200 * points + _ENTRY_OVERHEAD


@dataclass
class ServerState:
    settings: ServerSettings
    worker: ModelWorker
    results: ResultStore
    # Roboflow image_id -> embedding key (in the cache folder too, so it survives restarts);
    # (image_id, prompt-set hash) -> (prompt set, logits)
    rf_images: ImageIds = field(init=False)
    rf_logits: BoundedCache[tuple[str, str], tuple[Sam2PromptSet, np.ndarray]] = field(
        init=False)
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # uploaded files kept as frames, and the propagations under way (/v1/propagate)
    frames: FrameStore = field(init=False)
    runs: LiveRuns = field(default_factory=LiveRuns)

    def __post_init__(self) -> None:
        self.frames = FrameStore(self.settings.frame_bytes)
        self.rf_images = ImageIds(self.settings.id_bytes, self.settings.cache_dir,
                                  self.settings.id_disk_bytes)
        self.rf_logits = BoundedCache(self.settings.logits_bytes, _logits_size)

    @property
    def url_policy(self) -> UrlPolicy:
        s = self.settings
        return UrlPolicy(s.allow_private_urls, s.max_request_bytes, s.url_timeout_s,
                         s.max_redirects)

    @property
    def sam2_version(self) -> str | None:
        p = self.worker.predictor
        return sam2_version_of(p.model_id, getattr(p, "config", None))

    def rf_key(self, image_id: str) -> EmbeddingKey | None:
        """The embedding key of a Roboflow image_id (a file read after a restart)."""
        return self.rf_images.get(image_id, self.worker.model_id)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.maskloop
    return state


def _header_or_query_key(request: Request) -> str | None:
    return request.query_params.get("api_key") or bearer_token(
        request.headers.get("authorization"))


def _authenticated(request: Request) -> bool:
    """Whether ``RequestGate`` (app.server.middleware) let this request through with a key."""
    return bool(request.scope.get(SCOPE_AUTHENTICATED))


async def require_key(request: Request) -> None:
    """Dependency of the own routes: the key as ?api_key= or Authorization: Bearer (checked
    by RequestGate before the body is read; checked again here without it)."""
    expected = state_of(request).settings.api_key
    if _authenticated(request) or key_matches(expected, _header_or_query_key(request)):
        return
    raise unauthorized()


async def require_key_or_body_key(request: Request) -> None:
    """Dependency of the Roboflow routes: also accepts "api_key" in the JSON body."""
    expected = state_of(request).settings.api_key
    if expected is None or _authenticated(request):
        return
    given = _header_or_query_key(request)
    if given is None:
        given = body_key(await request.body())
    if not key_matches(expected, given):
        raise unauthorized()
