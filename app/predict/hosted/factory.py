"""Clients for hosted SAM APIs: Roboflow, fal and Segmind (one module each).

``hosted_predictor("roboflow" | "fal" | "segmind", api_key=None, url=None, settings=None)``
builds one; nothing here imports httpx until a client is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.predict.base import PredictorError

if TYPE_CHECKING:
    from app.predict.hosted.common import HostedPredictor

PROVIDERS = ("roboflow", "fal", "segmind")
KEY_VARIABLES = {"roboflow": "API_KEY", "fal": "FAL_KEY", "segmind": "SEGMIND_API_KEY"}


def hosted_predictor(
    provider: str,
    api_key: str | None = None,
    url: str | None = None,
    settings: Mapping[str, Any] | None = None,
    **options: Any,
) -> HostedPredictor:
    """The client of ``provider``; ``url`` overrides its base URL (a self-hosted Roboflow
    inference server, or a test double). Keys: argument, settings, then environment."""
    name = provider.strip().lower()
    if name == "roboflow":
        from app.predict.hosted.roboflow import RoboflowPredictor

        return RoboflowPredictor(api_key, url, settings=settings, **options)
    if name == "fal":
        from app.predict.hosted.fal import FalPredictor

        return FalPredictor(api_key, url, settings=settings, **options)
    if name == "segmind":
        from app.predict.hosted.segmind import SegmindPredictor

        return SegmindPredictor(api_key, url, settings=settings, **options)
    raise PredictorError(f"unknown hosted API {provider!r}; use one of: {', '.join(PROVIDERS)}")
