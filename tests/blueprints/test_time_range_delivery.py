"""Time-range blueprint through the real delivery pipeline to the dev server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dodo_ingest.blueprints.time_range import time_range, track_time_range
from dodo_ingest.client._models import parse_timestamp

from .conftest import delivered


def test_track_time_range_is_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    event_id = track_time_range(
        ingestion, customer, duration_ms=90_500, duration_seconds=90.5, event_name="gpu.time"
    )
    [event] = delivered(ingestion, dev_server, customer)
    assert (event.event_id, event.event_name) == (event_id, "gpu.time")
    assert event.metadata == {"durationMs": 90_500, "durationSeconds": 90.5}


def test_decorated_job_with_heartbeats_is_stored_exactly(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    @time_range(
        ingestion,
        customer_id=lambda job_id, customer_id: customer_id,
        job_id=lambda job_id, customer_id: job_id,
        metadata=lambda job_id, customer_id: {"gpu": "h100"},
        event_name="gpu.time",
        heartbeat_seconds=0.1,
    )
    def train(job_id: str, customer_id: str) -> str:
        time.sleep(0.35)
        return "model"

    assert train("train-1", customer) == "model"
    events = delivered(ingestion, dev_server, customer)
    ids = sorted(e.event_id for e in events)
    assert ids == [f"train-1:{i}" for i in range(1, len(events) + 1)]
    assert len(events) >= 3
    by_sequence = sorted(events, key=lambda e: e.metadata["sequence"])
    final = by_sequence[-1].metadata
    assert final["final"] is True and final["status"] == "ok"
    assert all(e.metadata["status"] == "running" for e in by_sequence[:-1])
    assert sum(e.metadata["durationMs"] for e in events) == final["totalDurationMs"] >= 350
    for event in events:
        meta = event.metadata
        assert set(meta) == {
            "durationMs",
            "durationSeconds",
            "durationMinutes",
            "startedAt",
            "endedAt",
            "jobId",
            "status",
            "sequence",
            "final",
            "totalDurationMs",
            "gpu",
        }
        assert meta["jobId"] == "train-1"
        assert meta["durationSeconds"] == meta["durationMs"] / 1000
        assert event.event_name == "gpu.time"
        assert abs(event.timestamp - parse_timestamp(meta["endedAt"])).total_seconds() < 0.002


@pytest.mark.anyio
async def test_async_forms_are_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    @time_range(ingestion, customer, "task.time", job_id=lambda n: f"task-{n}", rounding="second")
    async def task(n: int) -> int:
        await asyncio.sleep(0.01 * n)
        return n

    assert await asyncio.gather(task(1), task(2)) == [1, 2]
    async with time_range(ingestion, customer, "block.time", job_id="block-1"):
        await asyncio.sleep(0.01)
    assert await ingestion.aflush(10)
    events = {e.event_id: e for e in delivered(ingestion, dev_server, customer)}
    assert sorted(events) == ["block-1:1", "task-1:1", "task-2:1"]
    for event_id in ("task-1:1", "task-2:1"):
        meta = events[event_id].metadata
        assert events[event_id].event_name == "task.time"
        assert (meta["durationMs"], meta["durationSeconds"], meta["status"]) == (1000, 1, "ok")
    block = events["block-1:1"]
    assert block.event_name == "block.time"
    assert 10 <= block.metadata["durationMs"] < 1000


def test_failed_job_is_stored_with_its_error(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    with pytest.raises(KeyError), time_range(ingestion, customer, "job", job_id="bad-1"):
        raise KeyError("input missing")
    [event] = delivered(ingestion, dev_server, customer)
    assert event.event_id == "bad-1:1"
    assert (event.metadata["status"], event.metadata["errorType"]) == ("error", "KeyError")
