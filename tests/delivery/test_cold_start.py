"""``from dodo_ingest import Ingestion`` does not load the HTTP stack: a module that only
imports it (a serverless handler's module, a CLI) pays for it when an ``Ingestion`` is
built, not before."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dodo_ingest.devserver import DevServer

API_KEY = "sk_test_cold_start_0123456789"
HEAVY = ("httpx2", "httpcore2", "asyncio", "tenacity", "email.utils")

CHILD = """
import json, sys
from dodo_ingest import Ingestion
loaded = [name for name in {heavy!r} if name in sys.modules]
ingestion = Ingestion(api_key=sys.argv[1], base_url=sys.argv[2], event_name="cold.start")
ingestion.track("cus_1", metadata={{"n": 1}})
delivered = ingestion.flush(30)
ingestion.close()
print(json.dumps({{"loaded_by_the_import": loaded, "delivered": delivered}}))
"""


@pytest.fixture
def server():
    with DevServer(api_key=API_KEY) as running:
        yield running


def test_importing_ingestion_loads_no_http_stack(server):
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(heavy=HEAVY), API_KEY, server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"loaded_by_the_import": [], "delivered": True}, done.stderr
    assert len(server.event_ids()) == 1


def test_the_default_delivery_timeout_is_still_public():
    from dodo_ingest.delivery import DEFAULT_DELIVERY_TIMEOUT

    assert (DEFAULT_DELIVERY_TIMEOUT.read, DEFAULT_DELIVERY_TIMEOUT.connect) == (10.0, 3.0)
