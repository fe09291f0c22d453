"""Fixtures of the stream, time-range, API-gateway and object-storage blueprint tests."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
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

    def wait_for(self, count: int, timeout: float = 5) -> list[EventInput]:
        """Wait until ``count`` events were tracked (an ASGI middleware tracks after the
        response went out, so right after a request its event may still be on its way)."""
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.events

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """The metadata of every event, in order."""
        return [dict(event.metadata or {}) for event in self.events]


def wait_until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


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


@pytest.fixture(scope="session")
def dev_server() -> Iterator[Any]:
    """The project's dev server (real HTTP on 127.0.0.1, in-memory SQLite), shared by tests
    that each use their own customer ids."""
    from dodo_ingest.devserver import DevServer

    with DevServer() as server:
        yield server


@pytest.fixture
def ingestion(dev_server: Any) -> Iterator[Any]:
    """The real delivery pipeline sending to the dev server."""
    from dodo_ingest.delivery import Ingestion

    with Ingestion(api_key="k", base_url=dev_server.base_url, flush_interval=0.05) as pipeline:
        yield pipeline


@pytest.fixture
def customer(request: pytest.FixtureRequest) -> str:
    """A customer id unique to the test, so tests sharing the dev server do not mix."""
    return f"cus_{request.node.name[:60]}_{uuid.uuid4().hex[:8]}"


def stored_events(base_url: str, customer_id: str) -> list[Any]:
    """The events the server stored for ``customer_id``, read back with the typed client,
    oldest first."""
    from dodo_ingest.client import DodoClient

    with DodoClient(api_key="k", base_url=base_url) as client:
        events = list(client.events.list(customer_id=customer_id, page_size=100))
    return sorted(events, key=lambda event: (event.timestamp, event.event_id))


def delivered(ingestion: Any, dev_server: Any, customer_id: str) -> list[Any]:
    """Flush the pipeline, then return what the server stored for ``customer_id``."""
    assert ingestion.flush(10), "the pipeline did not deliver within 10 s"
    return stored_events(dev_server.base_url, customer_id)


class Child:
    """``python -c code args...`` in a subprocess; a thread collects its stdout lines."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_for_line(self, expected: str, timeout: float = 30) -> None:
        """Wait until the child prints the line ``expected`` (fails on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line == expected:
                return
            if line is None:
                self.proc.wait(5)
                stderr = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"child exited before printing {expected!r}: {stderr}")
        raise AssertionError(f"child did not print {expected!r} within {timeout} s")

    def kill(self) -> int:
        """SIGKILL the child and return its exit code."""
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def wait(self, timeout: float = 20) -> int:
        """Wait for the child to exit; its exit code."""
        return self.proc.wait(timeout)


def pending(outbox: Path) -> int:
    """Events waiting in the outbox file."""
    from dodo_ingest.delivery import Outbox

    box = Outbox(outbox)
    try:
        return box.count_pending()
    finally:
        box.close()


def wait_for_events(base_url: str, customer: str, count: int, timeout: float = 20) -> list[Any]:
    """Poll the server until it stored ``count`` events for ``customer`` (or time runs out)."""
    deadline = time.monotonic() + timeout
    events = stored_events(base_url, customer)
    while len(events) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        events = stored_events(base_url, customer)
    return events


DELIVER_OUTBOX = """
# A new process on the outbox a killed one left: takes its events over and delivers them.
import sys
from dodo_ingest.delivery import Ingestion

base_url, outbox = sys.argv[1:3]
with Ingestion(api_key="k", base_url=base_url, outbox=outbox, flush_interval=0.05) as ingestion:
    print("flushed" if ingestion.flush(10) else "timeout", flush=True)
"""
