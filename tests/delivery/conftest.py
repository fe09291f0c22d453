"""Fixtures of the delivery tests: the dev server, and Ingestion objects closed after a test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer

API_KEY = "sk_test_SECRET_delivery_key_0123456789"

FAST_RETRIES: dict[str, Any] = {
    "retry_initial_delay": 0.01,
    "retry_max_delay": 0.05,
    "max_retry_after": 0.2,
}
"""Retry settings that keep fault tests short."""


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A dev server on a free port, accepting any key."""
    with DevServer() as running:
        yield running


@pytest.fixture
def make_ingestion() -> Iterator[Callable[..., Ingestion]]:
    """Build ``Ingestion`` objects (API key preset) that are closed at the end of the test."""
    built: list[Ingestion] = []

    def make(**kwargs: Any) -> Ingestion:
        kwargs.setdefault("api_key", API_KEY)
        ingestion = Ingestion(**kwargs)
        built.append(ingestion)
        return ingestion

    yield make
    for ingestion in built:
        ingestion.close(timeout=1.0)


@pytest.fixture
def python() -> str:
    """The interpreter for producer subprocesses (it has this package installed)."""
    return sys.executable
