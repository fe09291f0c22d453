"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that records every
request and answers with the statuses it is told (204 once they run out)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEADLINE = 15.0


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.received)


@contextmanager
def receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    """Run a receiver; ``statuses`` are answered in turn, then 204."""
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            target = state["receiver"]
            with target.lock:
                target.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = target.statuses.pop(0) if target.statuses else 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["receiver"] = Receiver(
        f"http://127.0.0.1:{server.server_address[1]}/hooks", list(statuses or [])
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def wait_for(
    read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = DEADLINE
) -> Any:
    """Read until ``done(value)`` or the deadline; return the last value read."""
    end = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < end:
        time.sleep(0.02)
        value = read()
    return value
