"""The sender thread survives failures of its own housekeeping and is restarted if it dies."""

from __future__ import annotations

import sqlite3
import time

from dodo_ingest.delivery import Outbox, _pipeline


def test_a_failing_outbox_heartbeat_does_not_stop_delivery(
    server, make_ingestion, tmp_path, monkeypatch
):
    monkeypatch.setattr(_pipeline, "HEARTBEAT_INTERVAL", 0.0)  # a heartbeat after every batch
    outbox = Outbox(tmp_path / "outbox.db")
    heartbeat = outbox.heartbeat
    calls = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise sqlite3.OperationalError("database is locked")
        heartbeat()

    monkeypatch.setattr(outbox, "heartbeat", flaky)
    ingestion = make_ingestion(
        base_url=server.base_url, event_name="e", outbox=outbox, flush_interval=0.05
    )
    ingestion.track("cus_1")
    assert ingestion.flush(5)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:  # past the failing heartbeat
        time.sleep(0.01)
    assert len(calls) >= 3
    ingestion.track("cus_1")
    assert ingestion.flush(5)
    assert ingestion.stats.delivered == 2
    assert outbox.count_pending() == 0


class _Fatal(BaseException):
    """An error that is not an ``Exception`` (like ``SystemExit`` raised by a callback)."""


def test_a_sender_killed_by_a_base_exception_is_restarted_and_loses_nothing(
    server, make_ingestion, monkeypatch
):
    drain = _pipeline.Pipeline._drain
    raised = []

    def fatal_once(self: _pipeline.Pipeline) -> None:
        if not raised:
            raised.append(1)
            raise _Fatal
        drain(self)

    monkeypatch.setattr(_pipeline.Pipeline, "_drain", fatal_once)
    ingestion = make_ingestion(base_url=server.base_url, event_name="e", flush_interval=0.02)
    event_id = ingestion.track("cus_1")
    deadline = time.monotonic() + 5
    while ingestion._pipeline._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert raised and ingestion._pipeline._thread is None  # the first sender is gone
    assert ingestion.flush(5)
    assert server.event_ids() == [event_id]
    assert (ingestion.stats.delivered, ingestion.stats.dropped) == (1, 0)
