"""Fixtures of the contract tests: a client talking to the Prism server, and what it sent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from dodo_ingest import DodoClient


@pytest.fixture
def sent() -> list[httpx2.Request]:
    """Every request the ``client`` fixture sent, in order."""
    return []


@pytest.fixture
def client(prism_url: str, sent: list[httpx2.Request]) -> Iterator[DodoClient]:
    """A `DodoClient` on the Prism server (no retries), recording its requests in ``sent``."""
    http = httpx2.Client(event_hooks={"request": [sent.append]})
    with DodoClient("test_contract_key", base_url=prism_url, max_retries=0, http_client=http) as c:
        yield c
    http.close()
