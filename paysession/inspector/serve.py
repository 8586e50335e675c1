"""Serving the inspector with uvicorn, bounded against slow and many clients.

uvicorn times out an idle keep-alive connection, but not one that never finishes sending
its request line and headers: a thousand half-sent requests would each hold a connection
for good. Here each connection must finish its headers within ``HEADER_TIMEOUT`` seconds
of its first byte (or of opening), or it is closed. Past ``CONNECTIONS`` open
connections, a request is answered 503 at once. The app (``app.py``) times out request
bodies, and lets only a few requests read the store at once.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a request's line and headers."""

CONNECTIONS = 100
"""Open connections at most; past it, requests are answered 503."""

KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection is kept."""

LARGEST_HEADERS = 16 * 1024
"""Bytes of a request line and headers at most."""


class _TimedHeaders(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose headers do not arrive in
    time."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm()  # still in the headers: the clock started at the first byte
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration the inspector is served with (see the module notes)."""
    return uvicorn.Config(
        app,
        http=_TimedHeaders,
        limit_concurrency=CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=LARGEST_HEADERS,
        **options,
    )


def run(config: uvicorn.Config, sockets: list[socket.socket]) -> None:
    """Serve until stopped (Ctrl-C) on ``sockets``, already listening."""
    uvicorn.Server(config).run(sockets=sockets)


__all__ = ["CONNECTIONS", "HEADER_TIMEOUT", "KEEP_ALIVE", "LARGEST_HEADERS", "run", "server_config"]
