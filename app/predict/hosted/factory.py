"""Clients for hosted SAM APIs: Roboflow, fal and Segmind (one module each).

``hosted_predictor("roboflow" | "roboflow-sam3" | "fal" | "segmind", api_key=None, url=None,
settings=None)`` builds one; nothing here imports httpx until a client is built. "roboflow"
clicks with SAM2 and finds with SAM3; "roboflow-sam3" does both with SAM3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.predict.base import PredictorError

if TYPE_CHECKING:
    from app.predict.hosted.common import HostedPredictor

PROVIDERS = ("roboflow", "roboflow-sam3", "fal", "segmind")
KEY_VARIABLES = {"roboflow": "API_KEY", "roboflow-sam3": "API_KEY", "fal": "FAL_KEY",
                 "segmind": "SEGMIND_API_KEY"}


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
    if name == "roboflow-sam3":
        from app.predict.hosted.roboflow_sam3 import RoboflowSam3Predictor

        return RoboflowSam3Predictor(api_key, url, settings=settings, **options)
    if name == "fal":
        from app.predict.hosted.fal import FalPredictor

        return FalPredictor(api_key, url, settings=settings, **options)
    if name == "segmind":
        from app.predict.hosted.segmind import SegmindPredictor

        return SegmindPredictor(api_key, url, settings=settings, **options)
    raise PredictorError(f"unknown hosted API {provider!r}; use one of: {', '.join(PROVIDERS)}")
