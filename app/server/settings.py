"""The server's settings: limits, the API key, the URL policy (one frozen value)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_BYTES = 2 * 1024**3  # about 256 SAM2 embeddings (8 MiB each)
DEFAULT_LOGITS_BYTES = 64 * 1024**2  # recent results' low-res logits (float16)


@dataclass(frozen=True)
class ServerSettings:
    """What ``maskloop serve`` was started with. ``api_key`` None: no authentication."""

    api_key: str | None = None
    allow_private_urls: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    cache_bytes: int = DEFAULT_CACHE_BYTES
    logits_bytes: int = DEFAULT_LOGITS_BYTES
    request_timeout_s: float = 120.0  # waiting for the model (queue + work)
    url_timeout_s: float = 15.0  # fetching an image URL
    max_redirects: int = 3
