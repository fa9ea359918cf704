"""Errors the routes turn into HTTP answers, and their one shape.

Every error answer, whatever the route or status, is ``ErrorBody``: ``{"message": str}``, a
message a user can act on (never a traceback, a command line or an allocation size: a 500
says only that the server failed and the id under which its log has the details). A 422
from request validation also carries ``"detail"``: FastAPI's list of ``{"loc", "msg",
"type"}``. This is what Roboflow's inference server answers (``{"message": ...}`` from its
routes, FastAPI's ``"detail"`` list on validation errors), and what Roboflow's inference-sdk
reads (``response.json()["message"]`` becomes ``HTTPCallErrorError.api_message``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class HTTPProblem(Exception):
    """A request that cannot be served: ``status`` and a message a user can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error answer."""

    message: str = Field(description="what went wrong, and what to do about it")
    detail: list[ValidationIssue] | None = Field(
        default=None, description="422 from request validation only: each invalid field")


_WHY = {
    400: "the image cannot be decoded (or is not JPEG, PNG, WebP, BMP, TIFF or GIF), the "
         "image URL is refused or failed, or the image_id is unknown",
    401: "missing or wrong API key",
    404: "no such route, or the image is not (or no longer) embedded on this server",
    405: "the route does not take this method",
    408: "the request body did not arrive within --body-timeout seconds",
    409: "the result to refine was forgotten: resend without it",
    413: "the request is over --max-request-bytes, or the image over --max-image-pixels, "
         "65,535 pixels a side, or 100 times longer than wide (or wide than long)",
    422: "invalid request: a field is missing, of the wrong type or out of range (numbers "
         "must be finite; at most --max-prompts prompts of at most --max-points points)",
    500: "the server failed; its log has the details under the id in the message",
    501: "this model has no embedding to send (hybrid mode needs SAM2)",
    504: "the model did not answer within --timeout seconds (the work is stopped)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these error statuses, all with the ``ErrorBody`` shape."""
    return {s: {"model": ErrorBody, "description": _WHY[s]} for s in statuses}


def bad_request(message: str) -> HTTPProblem:
    return HTTPProblem(400, message)


def too_large(message: str) -> HTTPProblem:
    return HTTPProblem(413, message)


def unprocessable(message: str) -> HTTPProblem:
    return HTTPProblem(422, message)


def not_found(message: str) -> HTTPProblem:
    return HTTPProblem(404, message)
