"""Pydantic models of the Roboflow-compatible routes, after Roboflow inference's
``inference/core/entities/requests/sam2.py`` and ``responses/sam2.py`` (same field names,
types and defaults; extra fields are ignored).

Differences, all permissive: ``image`` may be left out when ``image_id`` names an image
this server has embedded; ``prompts`` also takes a flat list of prompts or one prompt.
Stricter: every number must be finite (NaN, Infinity and 1e400 are 422), an ``image_id``
has at most 256 characters, and a request at most ``--max-prompts`` prompts of at most
``--max-points`` points each (checked by the route, as they are settings). Left out or null,
``prompts`` means no prompt at all, as for Roboflow's server (one unprompted mask).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.server.settings import MAX_IMAGE_ID_LENGTH

SAM2_VERSIONS = ("hiera_tiny", "hiera_small", "hiera_b_plus", "hiera_large")
FORMATS = ("json", "rle", "binary")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class InferenceRequestImage(_Lenient):
    """An image in a request: type "base64" (data URI allowed) or "url"."""

    type: str
    value: Any = None


class Sam2InferenceRequest(_Lenient):
    api_key: str | None = None
    sam2_version_id: str | None = Field(
        default=None, description="hiera_tiny | hiera_small | hiera_b_plus | hiera_large; "
        "the server serves its one model whatever is asked (see GET /info)")
    model_id: str | None = None

    @field_validator("sam2_version_id")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        if value is not None and value not in SAM2_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SAM2_VERSIONS)}")
        return value


IMAGE_ID = Field(default=None, max_length=MAX_IMAGE_ID_LENGTH,
                 description="the id to cache the embedding under (default: md5 of the pixels)")


class Sam2EmbeddingRequest(Sam2InferenceRequest):
    image: InferenceRequestImage | None = None
    image_id: str | None = IMAGE_ID


class Box(_Lenient):
    """A box by its CENTRE (x, y) and size, as Roboflow's SAM2 routes take it."""

    x: float
    y: float
    width: float
    height: float


class Point(_Lenient):
    x: float
    y: float
    positive: bool


class Sam2Prompt(_Lenient):
    box: Box | None = None
    points: list[Point] | None = None

    def num_points(self) -> int:
        return len(self.points or [])


class Sam2PromptSet(_Lenient):
    prompts: list[Sam2Prompt] | None = None

    def num_points(self) -> int:
        return sum(p.num_points() for p in self.prompts or [])


class Sam2SegmentationRequest(Sam2InferenceRequest):
    format: Literal["json", "rle", "binary"] = "json"
    image: InferenceRequestImage | None = None
    image_id: str | None = IMAGE_ID
    prompts: Sam2PromptSet = Field(
        default_factory=Sam2PromptSet,
        description="at most --max-prompts (default 64) prompts, each a box and/or at most "
        "--max-points (default 64) points; left out or null: one unprompted mask")
    multimask_output: bool = True
    save_logits_to_cache: bool = False
    load_logits_from_cache: bool = False

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_forms(cls, value: Any) -> Any:
        """{"prompts": [...]}, a flat list [...], or one prompt {"box", "points"}."""
        if value is None:
            return {"prompts": None}
        if isinstance(value, list):
            return {"prompts": value}
        if isinstance(value, dict) and "prompts" not in value and (
            "box" in value or "points" in value
        ):
            return {"prompts": [value]}
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format_default(cls, value: Any) -> Any:
        return "json" if value is None else value


class Sam2EmbeddingResponse(BaseModel):
    image_id: str
    time: float


class Sam2SegmentationPrediction(BaseModel):
    masks: list[list[list[int]]] | dict[str, Any]
    confidence: float
    format: str | None = "polygon"


class Sam2SegmentationResponse(BaseModel):
    predictions: list[Sam2SegmentationPrediction]
    time: float
