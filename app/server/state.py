"""What every route shares: the settings, the model worker, the stores of recent results."""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
from fastapi import Request

from app.core.types import EmbeddingKey
from app.server.middleware import SCOPE_AUTHENTICATED, body_key
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


class BytesLRU(Generic[K, V]):
    """A thread-safe LRU dict bounded by bytes: ``size_of(key, value)`` of every entry adds
    up to at most ``max_bytes`` (an entry larger than that alone is not kept)."""

    def __init__(self, max_bytes: int, size_of: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(key, value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return [(k, v) for k, (v, _) in self._items.items()]

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes


_ENTRY_OVERHEAD = 256  # bytes of dict entry, tuple and objects around each cached value


def _id_size(image_id: str, _: EmbeddingKey) -> int:
    return len(image_id) + 2 * 64 + _ENTRY_OVERHEAD  # the id, the key's hash and model id


def _logits_size(key: tuple[str, str], value: tuple[Sam2PromptSet, np.ndarray]) -> int:
    prompts, logits = value
    points = sum(len(p.points or []) + 1 for p in prompts.prompts or [])
    return len(key[0]) + int(logits.nbytes) + 200 * points + _ENTRY_OVERHEAD


@dataclass
class ServerState:
    settings: ServerSettings
    worker: ModelWorker
    results: ResultStore
    # Roboflow image_id -> embedding key; (image_id, prompt-set hash) -> (prompt set, logits)
    rf_images: BytesLRU[str, EmbeddingKey] = field(init=False)
    rf_logits: BytesLRU[tuple[str, str], tuple[Sam2PromptSet, np.ndarray]] = field(init=False)
    server_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.rf_images = BytesLRU(self.settings.id_bytes, _id_size)
        self.rf_logits = BytesLRU(self.settings.logits_bytes, _logits_size)

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
