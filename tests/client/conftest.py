"""Fixtures of the client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import respx

BASE = "http://billing.test"
"""The base URL the client tests talk to (answered by respx)."""


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """respx routes for ``BASE``; routes a test does not call are fine."""
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router
