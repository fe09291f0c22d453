"""Neither ``from dodo_ingest import Ingestion`` nor building one loads the HTTP stack in the
caller's thread: the sender thread loads it when it starts (a serverless cold start pays
only for tracking), and a fork waits until it is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dodo_ingest.devserver import DevServer

API_KEY = "sk_test_cold_start_0123456789"
HEAVY = ("httpx2", "httpcore2", "asyncio", "tenacity", "email.utils", "ssl", "socket", "sqlite3")

CHILD = """
import json, sys
from dodo_ingest import Ingestion
loaded = [name for name in {heavy!r} if name in sys.modules]
ingestion = Ingestion(api_key=sys.argv[1], base_url=sys.argv[2], event_name="cold.start")
built = [name for name in {heavy!r} if name in sys.modules]
ingestion.track("cus_1", metadata={{"n": 1}})
delivered = ingestion.flush(30)
ingestion.close()
print(json.dumps({{"loaded_by_the_import": loaded, "loaded_by_building": built,
                  "delivered": delivered}}))
"""


@pytest.fixture
def server():
    with DevServer(api_key=API_KEY) as running:
        yield running


def test_importing_and_building_an_ingestion_loads_no_http_stack(server):
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(heavy=HEAVY), API_KEY, server.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "loaded_by_the_import": [],
        "loaded_by_building": [],
        "delivered": True,
    }, done.stderr
    assert len(server.event_ids()) == 1


def test_the_default_delivery_timeout_is_still_public():
    from dodo_ingest.delivery import DEFAULT_DELIVERY_TIMEOUT

    assert (DEFAULT_DELIVERY_TIMEOUT.read, DEFAULT_DELIVERY_TIMEOUT.connect) == (10.0, 3.0)


FORK_DURING_THE_BUILD = """
import json, os, signal, sys
from dodo_ingest import Ingestion
ingestion = Ingestion(api_key=sys.argv[1], base_url=sys.argv[2], event_name="fork.build")
ingestion.track("parent")  # starts the sender, which starts loading the HTTP stack
pid = os.fork()  # at once: the sender thread is still building its transport
if pid == 0:
    signal.alarm(20)  # a child hung on a lock the sender held at the fork dies, not hangs
    ingestion.track("child")
    os._exit(0 if ingestion.flush(15) else 3)
_, status = os.waitpid(pid, 0)
print(json.dumps({"child_status": status, "flushed": ingestion.flush(15)}))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_while_the_sender_builds_its_transport_leaves_a_working_child(server):
    for _ in range(3):  # a fresh interpreter each time: the first build loads the HTTP stack
        done = subprocess.run(
            [sys.executable, "-c", FORK_DURING_THE_BUILD, API_KEY, server.base_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result == {"child_status": 0, "flushed": True}, done.stderr
    assert len(server.event_ids()) == 6
