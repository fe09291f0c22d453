"""A real HTTP server on 127.0.0.1 that answers like the LLM providers, for snippets that
build a provider client from its environment variables (``OPENAI_BASE_URL``...)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from dodo_ingest.testing import MockLLMTransport
from tests._loopback import loopback


@contextmanager
def provider_server() -> Iterator[str]:
    """Serve `MockLLMTransport` over HTTP; yield the base URL."""
    with loopback(MockLLMTransport().handle_request) as url:
        yield url
