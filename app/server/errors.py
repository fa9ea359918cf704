"""Errors the routes turn into HTTP answers: ``{"message": ...}`` with a status code."""

from __future__ import annotations


class HTTPProblem(Exception):
    """A request that cannot be served: ``status`` and a message a user can act on."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> HTTPProblem:
    return HTTPProblem(400, message)


def too_large(message: str) -> HTTPProblem:
    return HTTPProblem(413, message)


def unprocessable(message: str) -> HTTPProblem:
    return HTTPProblem(422, message)


def not_found(message: str) -> HTTPProblem:
    return HTTPProblem(404, message)
