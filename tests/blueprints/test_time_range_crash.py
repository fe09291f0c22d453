"""Crash test: a job with heartbeats is killed with SIGKILL; a new process on the same outbox
delivers the heartbeats it left; the billed time is exact and nothing is stored twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from .conftest import (
    DELIVER_OUTBOX,
    Child,
    pending,
    stored_events,
    wait_for_events,
)

LONG_JOB = """
import sys, time
from dodo_ingest.delivery import Ingestion
from dodo_ingest.blueprints.time_range import time_range

base_url, outbox, customer = sys.argv[1:4]
ingestion = Ingestion(api_key="k", base_url=base_url, outbox=outbox, flush_interval=3600)

@time_range(
    ingestion, customer, "gpu.time", job_id=lambda: "render-9", heartbeat_seconds=0.1
)
def render():
    time.sleep(0.45)
    assert ingestion.flush(10)
    print("flushed", flush=True)
    time.sleep(120)

render()
"""


def test_killed_job_is_billed_for_what_it_ran(
    dev_server: Any, customer: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.db"
    job = Child(LONG_JOB, dev_server.base_url, str(outbox), customer)
    try:
        job.wait_for_line("flushed")
        delivered_before = len(stored_events(dev_server.base_url, customer))
        assert delivered_before >= 3
        deadline = time.monotonic() + 10
        while pending(outbox) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pending(outbox) >= 3  # heartbeats tracked after the flush, not sent yet
    finally:
        exit_code = job.kill()
    assert exit_code == -signal.SIGKILL
    left = pending(outbox)

    deliverer = Child(DELIVER_OUTBOX, dev_server.base_url, str(outbox))
    try:
        deliverer.wait_for_line("flushed")
    finally:
        delivered_code = deliverer.wait()
    assert delivered_code == 0
    events = wait_for_events(dev_server.base_url, customer, delivered_before + left)
    count = len(events)
    assert count == delivered_before + left
    by_sequence = sorted(events, key=lambda e: e.metadata["sequence"])
    assert [e.event_id for e in by_sequence] == [f"render-9:{i}" for i in range(1, count + 1)]
    assert len({e.event_id for e in events}) == count
    billed = 0
    for event in by_sequence:
        meta = event.metadata
        billed += meta["durationMs"]
        assert meta["totalDurationMs"] == billed
        assert (meta["status"], meta["final"], meta["jobId"]) == ("running", False, "render-9")
        assert 50 <= meta["durationMs"] <= 1000
        assert event.event_name == "gpu.time"
    assert billed >= 100 * (count - 1)
    assert pending(outbox) == 0
