"""Pydantic models of ``/v1/propagate`` (app.server.propagate_routes): the request, the
frames announced to a run, and the answers. Every number must be finite; the limits that
are settings (frames, tracks, points) are checked by the route."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.server.errors import ErrorBody

Hash = str  # sha256 of an uploaded file: 64 lowercase hex digits (checked by the route)
RUN_ID = r"^[0-9a-f]{32}$"
MAX_COUNTS = 4 << 20  # characters of one RLE mask's counts string


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RleMask(_Strict):
    """A bool mask as COCO compressed RLE (``app.core.rle.encode_json``)."""

    size: list[int] = Field(min_length=2, max_length=2, description="[height, width]")
    counts: str = Field(max_length=MAX_COUNTS)


class Anchor(_Strict):
    """The person's mask (``mask``), or clicks and/or a box, for ``track`` on ``frame``."""

    frame: int = Field(ge=0)
    track: int = Field(ge=0, lt=2**31)
    mask: RleMask | None = None
    points: list[tuple[float, float, int]] | None = Field(
        default=None, description="[x, y, 1 (inside) | 0 (outside)], image pixels")
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="[x0, y0, x1, y1], image pixels")


class PropagateRequest(_Strict):
    """A propagation over a sequence of ``length`` frames: the frames by the sha256 of
    their uploaded files (index -> hash; more may be announced while it runs), the anchors,
    and ``app.predict.propagation.PropagationRequest``'s fields."""

    run_id: str = Field(pattern=RUN_ID, description="the client's id for this run (32 hex)")
    length: int = Field(ge=1, description="frames in the sequence")
    frames: dict[int, Hash] = Field(description="frame index -> sha256 of its uploaded file")
    anchors: list[Anchor] = Field(min_length=1)
    start: int = Field(ge=0)
    direction: Literal[1, -1] = 1
    count: int | None = Field(default=None, ge=0)
    tracks: list[int] | None = None
    stop_when_lost: bool = False
    lost_score: float = Field(default=0.5, ge=0.0, le=1.0)
    stop_at_anchors: bool = True


class AnnounceRequest(_Strict):
    """More frames of a run under way: index -> hash."""

    frames: dict[int, Hash]


class AnnounceAnswer(BaseModel):
    missing: list[Hash] = Field(description="announced hashes whose files are not here: "
                                            "upload them (PUT /v1/images/{hash})")


class MissingFrames(ErrorBody):
    """409: files the run needs before it can start; upload them and send it again."""

    missing: list[Hash] = Field(default_factory=list)


class FrameLine(BaseModel):
    """One line of the answer per finished frame (NDJSON)."""

    frame: int
    size: list[int] = Field(description="[height, width]")
    masks: dict[str, str] = Field(description="track -> RLE counts of its mask")
    scores: dict[str, float]
    lost: list[int] = Field(description="tracks that ended at this frame (no mask)")


class DoneLine(BaseModel):
    """The last line: why the run stopped ("error": ``message`` says why)."""

    done: Literal[True] = True
    stopped: Literal["end", "lost", "error"]
    frames: int
    message: str | None = None
