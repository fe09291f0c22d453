"""A real HTTP server on 127.0.0.1 that answers like the LLM providers, for snippets that
build a provider client from its environment variables (``OPENAI_BASE_URL``...)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2

from dodo_ingest.testing import MockLLMTransport


@contextmanager
def provider_server() -> Iterator[str]:
    """Serve :class:`MockLLMTransport` over HTTP; yield the base URL."""
    transport = MockLLMTransport()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            request = httpx2.Request(
                "POST",
                f"http://provider{self.path}",
                headers=dict(self.headers.items()),
                content=self.rfile.read(length),
            )
            response = transport.handle_request(request)
            body = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

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
