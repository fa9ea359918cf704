"""The server's settings: limits, the API key, the URL policy (one frozen value)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_BYTES = 2 * 1024**3  # about 256 SAM2 embeddings (8 MiB each)
DEFAULT_DISK_CACHE_BYTES = 20 * 1024**3  # about 2,500 SAM2 embeddings on disk
DEFAULT_ID_DISK_BYTES = 64 * 1024**2  # Roboflow image ids on disk (about 250,000)
DEFAULT_LOGITS_BYTES = 64 * 1024**2  # recent results' low-res logits (float16)
DEFAULT_ID_BYTES = 4 * 1024**2  # Roboflow image ids -> embedding keys
DEFAULT_MAX_PROMPTS = 64  # prompts in one /sam2/segment_image request
DEFAULT_MAX_POINTS = 64  # points in one prompt
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_URL_TIMEOUT_S = 15.0
MAX_IMAGE_ID_LENGTH = 256  # characters of a Roboflow image_id
DEFAULT_MAX_PROPAGATE_FRAMES = 10_000  # frames one /v1/propagate request may name
DEFAULT_MAX_TRACKS = 64  # tracks one /v1/propagate request may follow
DEFAULT_FRAME_BYTES = 1024**3  # uploaded files kept for propagation (encoded bytes)
DEFAULT_FRAME_WAIT_S = 120.0  # a propagation waits this long for its next frame's upload


@dataclass(frozen=True)
class ServerSettings:
    """What ``maskloop serve`` was started with. ``api_key`` None: no authentication.

    Every limit bounds the memory or the model time one request can take: pixels (and, in
    ``app.core.images``, the sides and aspect of an image), request bytes, prompts and points,
    and deadlines for the request's headers, its body and a fetched image URL (each a total,
    not per read); caches are bounded by bytes, in memory and in ``cache_dir``."""

    api_key: str | None = None
    allow_private_urls: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    cache_bytes: int = DEFAULT_CACHE_BYTES
    logits_bytes: int = DEFAULT_LOGITS_BYTES
    id_bytes: int = DEFAULT_ID_BYTES
    max_prompts: int = DEFAULT_MAX_PROMPTS
    max_points: int = DEFAULT_MAX_POINTS
    request_timeout_s: float = 120.0  # waiting for the model (queue + work)
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S  # request line and headers, in all
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S  # the request body, in all
    url_timeout_s: float = DEFAULT_URL_TIMEOUT_S  # fetching an image URL, in all
    max_redirects: int = 3
    # embeddings (the app's file format) and image ids on disk; None: in memory only
    cache_dir: Path | None = None
    disk_cache_bytes: int = DEFAULT_DISK_CACHE_BYTES
    id_disk_bytes: int = DEFAULT_ID_DISK_BYTES
    # propagation (/v1/propagate): frames and tracks of one request, the uploaded files kept
    # as frames (in memory, by bytes), and how long a run waits for its next frame's upload
    max_propagate_frames: int = DEFAULT_MAX_PROPAGATE_FRAMES
    max_tracks: int = DEFAULT_MAX_TRACKS
    frame_bytes: int = DEFAULT_FRAME_BYTES
    frame_wait_s: float = DEFAULT_FRAME_WAIT_S


def default_server_cache_dir() -> Path:
    """Where ``maskloop serve`` keeps embeddings and image ids: $MASKLOOP_CACHE_DIR/server,
    else <user cache dir>/server (the app's own embeddings are in .../embeddings)."""
    override = os.environ.get("MASKLOOP_CACHE_DIR")
    if override:
        return Path(override) / "server"
    return Path(platformdirs.user_cache_dir("maskloop")) / "server"
