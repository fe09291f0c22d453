"""Fixtures of the dev server tests: servers on free ports, clients pointed at them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
from openapi_core import OpenAPI

from dodo_ingest import DodoClient
from dodo_ingest.devserver import DevServer
from tests.devserver._openapi import load_spec

API_KEY = "sk_test_devserver_key_0123456789"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[DevServer]:
    """One server for a test module (tests use unique ids and customers)."""
    with DevServer() as server:
        yield server


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A fresh server (empty in-memory database, zeroed counters) for one test."""
    with DevServer() as running:
        yield running


@pytest.fixture
def http(shared_server: DevServer) -> Iterator[httpx2.Client]:
    """A plain httpx2 client with a Bearer token, based at the shared server."""
    with httpx2.Client(
        base_url=shared_server.base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def client(shared_server: DevServer) -> Iterator[DodoClient]:
    """Our typed client at the shared server, without retries (a failure shows at once)."""
    with DodoClient(api_key=API_KEY, base_url=shared_server.base_url, max_retries=0) as dodo:
        yield dodo


@pytest.fixture(scope="session")
def openapi_spec() -> OpenAPI:
    """The billing API's OpenAPI document (integer-metadata patch applied), loaded once."""
    return load_spec()
