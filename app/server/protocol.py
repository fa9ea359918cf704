"""uvicorn's HTTP/1.1 protocol (h11) with a total deadline on a request's line and headers.

uvicorn closes a connection idle between requests (``timeout_keep_alive``) but has no limit
on the time a request's headers take: a client that sends half a request line and stalls
holds its connection forever. ``HeaderDeadlineProtocol`` closes a connection whose request
line and headers have not all arrived ``header_timeout_s`` after the connection opened (or,
on a kept-alive connection, after the first byte of the next request). The body then has
its own total deadline (``app.server.middleware``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.server.settings import ServerSettings

KEEP_ALIVE_S = 5  # uvicorn's default: idle time between two requests of a connection


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol closing connections whose headers are late (see the module docstring)."""

    header_timeout_s: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request has begun, its headers are not in
            if self._header_deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._too_late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_late(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def protocol_for(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class with this header deadline (uvicorn takes a class, not an object)."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,),
                {"header_timeout_s": header_timeout_s})


def uvicorn_config(app: Any, settings: ServerSettings, **kwargs: Any) -> uvicorn.Config:
    """uvicorn's configuration for ``app``: h11 with the header deadline, and uvicorn's
    keep-alive timeout (``kwargs`` pass on: host, port, log_level...)."""
    kwargs.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
    return uvicorn.Config(app, http=protocol_for(settings.header_timeout_s), **kwargs)
