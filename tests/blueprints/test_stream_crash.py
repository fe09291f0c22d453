"""Crash test: a process metering a live stream is killed with SIGKILL; a new process on the
same outbox delivers the partial events it left; the totals are exact and nothing is stored
twice."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from .conftest import (
    DELIVER_OUTBOX,
    Child,
    pending,
    stored_events,
    wait_for_events,
)

METER_LIVE_STREAM = """
import sys, time
from dodo_ingest.delivery import Ingestion
from dodo_ingest.blueprints.stream import meter_stream

base_url, outbox, customer = sys.argv[1:4]
# flush_interval is long so that only an explicit flush() sends: what is tracked after it
# stays in the outbox when the process dies.
ingestion = Ingestion(api_key="k", base_url=base_url, outbox=outbox, flush_interval=3600)

def live_audio():
    while True:
        yield b"a" * 1000

with meter_stream(
    ingestion, customer, "live.bytes", stream_id="live-1", partial_every_bytes=5000
) as meter:
    for chunk in meter.wrap(live_audio()):
        if meter.total == 20_000:
            assert ingestion.flush(10)
            print("flushed", flush=True)
        if meter.total == 40_000:
            print("tracked", flush=True)
            time.sleep(120)
"""


def test_killed_stream_is_billed_exactly_after_restart(
    dev_server: Any, customer: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    streamer = Child(METER_LIVE_STREAM, dev_server.base_url, str(outbox), customer)
    try:
        streamer.wait_for_line("flushed")
        before = stored_events(dev_server.base_url, customer)
        assert sorted(e.event_id for e in before) == [f"live-1:{i}" for i in range(1, 5)]
        streamer.wait_for_line("tracked")
        assert pending(outbox) == 4  # partials 5..8 are on disk, not yet sent
    finally:
        exit_code = streamer.kill()
    assert exit_code == -signal.SIGKILL

    deliverer = Child(DELIVER_OUTBOX, dev_server.base_url, str(outbox))
    try:
        deliverer.wait_for_line("flushed")
    finally:
        delivered_code = deliverer.wait()
    assert delivered_code == 0
    events = wait_for_events(dev_server.base_url, customer, 8)
    by_id = {e.event_id: e for e in events}
    assert len(by_id) == len(events) == 8
    assert sorted(by_id) == [f"live-1:{i}" for i in range(1, 9)]
    for sequence in range(1, 9):
        assert by_id[f"live-1:{sequence}"].metadata == {
            "bytes": 5000,
            "streamId": "live-1",
            "sequence": sequence,
            "final": False,
            "totalBytes": 5000 * sequence,
            "status": "running",
        }
    assert sum(e.metadata["bytes"] for e in events) == 40_000
    assert pending(outbox) == 0
