"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._prism import prism_server
from tests._redis import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def prism_url() -> Iterator[str]:
    """Base URL of Prism serving the billing API's OpenAPI document (validates every request).

    Skips when Node.js or the contract is missing locally; fails instead when ``CI`` is set.
    """
    with prism_server() as url:
        yield url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on 127.0.0.1 with AOF on (skipped locally when missing)."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
