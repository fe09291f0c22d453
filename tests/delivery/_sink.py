"""A scriptable HTTP server on 127.0.0.1 that records every ingest request it gets."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Answer = tuple[int, dict[str, str], bytes]
Responder = Callable[[list[dict[str, Any]]], Answer]


def accept_all(events: list[dict[str, Any]]) -> Answer:
    """Answer like the API: 200 with the count."""
    return 200, {}, json.dumps({"ingested_count": len(events)}).encode()


class RefuseIds:
    """A responder that answers 400 to any request holding one of ``ids`` (as the API does
    for an event it refuses), else 200; ``accepted`` lists the ids stored, in order."""

    def __init__(self, ids: set[str], message: str) -> None:
        self.ids = ids
        self.message = message
        self.accepted: list[str] = []

    def __call__(self, events: list[dict[str, Any]]) -> Answer:
        if any(event["event_id"] in self.ids for event in events):
            return 400, {}, json.dumps({"code": "bad_request", "message": self.message}).encode()
        self.accepted.extend(event["event_id"] for event in events)
        return accept_all(events)


class Gate:
    """A responder that holds every request until :meth:`open` (at most 20 s), so a test can
    be sure events are still in flight or queued at a given moment; ``arrived`` is set by the
    first request."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.arrived = threading.Event()

    def __call__(self, events: list[dict[str, Any]]) -> Answer:
        self.arrived.set()
        self.released.wait(20)
        return accept_all(events)

    def open(self) -> None:
        self.released.set()


class Sink:
    """Records ``(body_size, events, authorization)`` of each request; ``responder`` answers."""

    def __init__(self, responder: Responder = accept_all) -> None:
        self.responder = responder
        self.requests: list[tuple[int, list[dict[str, Any]], str]] = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events = json.loads(body)["events"]
                with sink.lock:
                    sink.requests.append((len(body), events, self.headers.get("Authorization", "")))
                status, headers, payload = sink.responder(events)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def event_ids(self) -> list[str]:
        """Every event id received, in order, duplicates included."""
        with self.lock:
            return [event["event_id"] for _, events, _ in self.requests for event in events]

    def __enter__(self) -> Sink:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


class Blackhole:
    """A port that accepts connections and never answers (an API that hangs)."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(64)
        self.base_url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *args: object) -> None:
        self.socket.close()


def closed_port_url() -> str:
    """A base URL where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
