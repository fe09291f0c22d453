"""``track()`` with an outbox from a signal handler that interrupts another ``track()``."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter

import pytest

from dodo_ingest.delivery import Outbox
from tests.delivery import _scripts
from tests.delivery._sink import Sink
from tests.delivery.test_outbox import _pending_ids

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)

SIGNALS = 300

INTERRUPTED = f"""
import signal
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      flush_interval=0.05)
from_handler = []
from_main = []

def on_alarm(signum, frame):
    from_handler.append(ingestion.track("cus_handler"))

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0003, 0.0003)
deadline = time.monotonic() + 20
while len(from_handler) < {SIGNALS} and time.monotonic() < deadline:
    from_main.append(ingestion.track("cus_main"))
signal.setitimer(signal.ITIMER_REAL, 0)
flushed = ingestion.flush(30)
print(json.dumps({{"main": from_main, "handler": from_handler, "flushed": flushed}}), flush=True)
ingestion.close()
"""


def test_track_from_a_signal_handler_that_interrupts_track_neither_deadlocks_nor_loses(
    tmp_path,
):
    path = str(tmp_path / "outbox.db")
    with Sink() as sink:
        try:
            done = _scripts.run(tmp_path, INTERRUPTED, sink.base_url, path, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("track() in a signal handler deadlocked with the interrupted track()")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["handler"]) >= SIGNALS  # a few more may fire before the timer stops
    assert result["flushed"]
    tracked = result["main"] + result["handler"]
    assert len(set(tracked)) == len(tracked)
    received = Counter(sink.event_ids())
    assert set(received.values()) == {1}  # none sent twice
    assert set(received) | _pending_ids(path) == set(tracked)  # none lost, none made up


def test_retried_dead_letters_move_back_in_one_statement_in_order(tmp_path):
    # No transaction is opened on the connection track() writes through, so a track() in a
    # signal handler never joins (and never loses) work of the call it interrupted.
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.register()
        rows = [(f"evt_{i}", 1.0, "{}", outbox.append(f"evt_{i}", 1.0, "{}")) for i in range(5)]
        outbox.bury(rows, "refused", 400)
        statements: list[str] = []
        outbox._conn.set_trace_callback(statements.append)
        assert outbox.retry_dead_letters(["evt_3", "evt_1", "missing"]) == 2
        assert outbox.retry_dead_letters() == 3
        outbox._conn.set_trace_callback(None)
        assert not [s for s in statements if s.split()[0].upper() in ("BEGIN", "SAVEPOINT")]
        assert outbox.count_dead_letters() == 0
        assert outbox.reclaim() == 5  # free events are taken by the next sender
        assert [row[0] for row in outbox.fetch(10)] == [
            "evt_1",
            "evt_3",
            "evt_0",
            "evt_2",
            "evt_4",
        ]
