"""What every route shares: the settings, the model worker, the stores of recent results."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from fastapi import Request

from app.core.types import EmbeddingKey
from app.server.schemas import Sam2PromptSet
from app.server.security import UrlPolicy, bearer_token, key_matches, unauthorized
from app.server.settings import ServerSettings
from app.server.worker import ModelWorker, ResultStore

K = TypeVar("K")
V = TypeVar("V")

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


class BoundedMap(Generic[K, V]):
    """A small thread-safe LRU dict bounded by entry count."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._items.items())


@dataclass
class ServerState:
    settings: ServerSettings
    worker: ModelWorker
    results: ResultStore
    # Roboflow image_id -> embedding key; (image_id, prompt-set hash) -> (prompt set, logits)
    rf_images: BoundedMap[str, EmbeddingKey] = field(
        default_factory=lambda: BoundedMap(4096))
    rf_logits: BoundedMap[tuple[str, str], tuple[Sam2PromptSet, np.ndarray]] = field(
        default_factory=lambda: BoundedMap(256))
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex)

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
        return self.rf_images.get(image_id)


def state_of(request: Request) -> ServerState:
    return request.app.state.maskloop  # type: ignore[no-any-return]


def _header_or_query_key(request: Request) -> str | None:
    return request.query_params.get("api_key") or bearer_token(
        request.headers.get("authorization"))


async def require_key(request: Request) -> None:
    """Dependency of the own routes: the key as ?api_key= or Authorization: Bearer."""
    expected = state_of(request).settings.api_key
    if not key_matches(expected, _header_or_query_key(request)):
        raise unauthorized()


async def require_key_or_body_key(request: Request) -> None:
    """Dependency of the Roboflow routes: also accepts "api_key" in the JSON body."""
    expected = state_of(request).settings.api_key
    if expected is None:
        return
    given = _header_or_query_key(request)
    if given is None:
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        given = body.get("api_key") if isinstance(body, dict) else None
        given = given if isinstance(given, str) else None
    if not key_matches(expected, given):
        raise unauthorized()
