"""A real HTTP server on 127.0.0.1 that answers POSTs with a function of the request, for
clients that cannot be handed an ``httpx2`` transport (they read a base URL, or send through
aiohttp)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


@contextmanager
def loopback(answer: Callable[[httpx2.Request], httpx2.Response]) -> Iterator[str]:
    """Serve ``answer`` (e.g. a ``MockTransport``'s handler) over HTTP; yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            request = httpx2.Request(
                "POST", f"http://loopback{self.path}", headers=dict(self.headers), content=body
            )
            response = answer(request)
            content = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
