"""Bounds on the server's connections: a read deadline per request and a connection limit.

uvicorn closes a keep-alive connection that stays silent after an answer, but not one that
connects and never completes a request (or sends it a byte at a time): such connections
would be held forever. :func:`guarded_protocol` builds uvicorn's HTTP/1.1 protocol with two
more rules:

- **read timeout**: a request (its head and body) must arrive within ``read_timeout`` seconds
  of the moment the server starts waiting for it (the connection opened, or the previous
  answer was sent); otherwise the server closes the connection. The time the application
  takes to answer does not count.
- **connection limit**: a connection accepted while ``max_connections`` are already open is
  closed at once, without reading from it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_READ_TIMEOUT", "guarded_protocol"]

DEFAULT_READ_TIMEOUT = 10.0
"""Seconds a client has to send a whole request once the server waits for one."""
DEFAULT_MAX_CONNECTIONS = 512
"""Connections served at once; more are closed as soon as they are accepted."""


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a read deadline per request and a connection limit."""

    read_timeout: float = DEFAULT_READ_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_read_deadline()

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):  # still waiting for the client
            self.transport.close()


def guarded_protocol(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's HTTP/1.1 protocol class closing a connection whose request does not arrive
    within ``read_timeout`` seconds, and connections beyond ``max_connections``."""
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {"read_timeout": read_timeout, "max_connections": max_connections},
    )
