"""Fixtures of the stream, time-range, API-gateway and object-storage blueprint tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from dodo_ingest.client import EventInput


class RecordingSink:
    """Implements the blueprints' ``EventSink`` protocol: validates like ``Ingestion.track``
    (through ``EventInput``) and keeps the events; ``fail`` makes ``track`` raise it."""

    def __init__(self) -> None:
        self.events: list[EventInput] = []
        self.fail: BaseException | None = None
        self._lock = threading.Lock()

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        if self.fail is not None:
            raise self.fail
        with self._lock:
            event = EventInput(
                event_id or f"evt_{len(self.events)}",
                customer_id,
                event_name or "default.event",
                timestamp,
                metadata,
            )
            self.events.append(event)
        return event.event_id

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """The metadata of every event, in order."""
        return [dict(event.metadata or {}) for event in self.events]


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
