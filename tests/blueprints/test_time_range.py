"""time_range / track_time_range against a recording sink: durations, rounding, heartbeats."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from datetime import datetime, timedelta

import pytest

from dodo_ingest.blueprints.time_range import time_range, track_time_range
from dodo_ingest.client import ConfigurationError, EventValidationError
from dodo_ingest.client._models import parse_timestamp

from .conftest import RecordingSink


def test_track_time_range_sends_the_given_keys(sink: RecordingSink) -> None:
    track_time_range(sink, "cus_1", duration_ms=1500, metadata={"gpu": "a100"}, event_name="gpu")
    track_time_range(sink, "cus_2", duration_seconds=2.5, duration_minutes=0.25)
    assert sink.metadata == [
        {"durationMs": 1500, "gpu": "a100"},
        {"durationSeconds": 2.5, "durationMinutes": 0.25},
    ]
    assert sink.events[0].event_name == "gpu"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "duration_ms"),
        ({"duration_ms": -1}, "duration_ms"),
        ({"duration_seconds": float("nan")}, "duration_seconds"),
        ({"duration_minutes": True}, "duration_minutes"),
        ({"duration_ms": 1, "metadata": {"durationMs": 2}}, "metadata.durationMs"),
    ],
)
def test_track_time_range_rejects_bad_input(
    sink: RecordingSink, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(EventValidationError) as info:
        track_time_range(sink, "cus_1", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert sink.events == []


def test_decorator_measures_with_the_call_arguments(sink: RecordingSink) -> None:
    @time_range(
        sink,
        customer_id=lambda job, **_: job["customer"],
        metadata=lambda job, **kw: {"model": job["model"], "priority": kw.get("priority", 0)},
        job_id=lambda job, **_: f"job-{job['id']}",
        event_name="gpu.seconds",
    )
    def render(job: dict[str, str], *, priority: int = 0) -> str:
        time.sleep(0.05)
        return f"done {job['id']}"

    before = datetime.now().astimezone()
    assert render({"customer": "cus_9", "model": "sdxl", "id": "7"}, priority=2) == "done 7"
    assert render.__name__ == "render"
    [event] = sink.events
    meta = sink.metadata[0]
    assert event.event_id == "job-7:1"
    assert event.customer_id == "cus_9"
    assert event.event_name == "gpu.seconds"
    assert 50 <= meta["durationMs"] < 1000
    assert meta["durationSeconds"] == meta["durationMs"] / 1000
    assert meta["durationMinutes"] == meta["durationMs"] / 60_000
    assert (meta["status"], meta["jobId"], meta["model"], meta["priority"]) == (
        "ok",
        "job-7",
        "sdxl",
        2,
    )
    started, ended = parse_timestamp(meta["startedAt"]), parse_timestamp(meta["endedAt"])
    assert before - timedelta(milliseconds=5) <= started < ended
    assert abs((ended - started) - timedelta(milliseconds=meta["durationMs"])) < timedelta(
        milliseconds=3
    )
    assert event.timestamp is None  # the pipeline stamps the event when it is tracked
    assert set(meta) == {
        "durationMs",
        "durationSeconds",
        "durationMinutes",
        "startedAt",
        "endedAt",
        "jobId",
        "status",
        "model",
        "priority",
    }


def test_failing_job_is_billed_and_the_exception_propagates(sink: RecordingSink) -> None:
    boom = MemoryError("out of VRAM")

    @time_range(sink, "cus_1")
    def job() -> None:
        time.sleep(0.01)
        raise boom

    with pytest.raises(MemoryError) as info:
        job()
    assert info.value is boom
    meta = sink.metadata[0]
    assert (meta["status"], meta["errorType"]) == ("error", "MemoryError")
    assert meta["durationMs"] >= 10


@pytest.mark.anyio
async def test_async_decorator_concurrent_tasks(sink: RecordingSink) -> None:
    @time_range(sink, customer_id=lambda n: f"cus_{n}", metadata=lambda n: {"n": n})
    async def work(n: int) -> int:
        await asyncio.sleep(0.02 * n)
        return n * 2

    assert await asyncio.gather(*(work(n) for n in range(1, 6))) == [2, 4, 6, 8, 10]
    by_customer = {e.customer_id: dict(e.metadata or {}) for e in sink.events}
    assert sorted(by_customer) == [f"cus_{n}" for n in range(1, 6)]
    for n in range(1, 6):
        assert by_customer[f"cus_{n}"]["n"] == n
        assert 20 * n <= by_customer[f"cus_{n}"]["durationMs"] < 20 * n + 500
    assert len({e.event_id for e in sink.events}) == 5


def test_nested_and_threaded_context_managers(sink: RecordingSink) -> None:
    shared = time_range(sink, customer_id=lambda: threading.current_thread().name)

    def worker() -> None:
        with shared as outer:
            time.sleep(0.03)
            with shared as inner:
                time.sleep(0.02)
            assert outer is not None and inner is not None
            assert outer.job_id != inner.job_id

    threads = [threading.Thread(target=worker, name=f"cus_t{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sink.events) == 8
    for i in range(4):
        mine = [dict(e.metadata or {}) for e in sink.events if e.customer_id == f"cus_t{i}"]
        inner, outer = mine  # the inner run ends first
        assert inner["durationMs"] >= 20
        assert outer["durationMs"] >= inner["durationMs"] + 30


@pytest.mark.anyio
async def test_async_context_manager(sink: RecordingSink) -> None:
    async with time_range(sink, "cus_1", job_id="session-1") as run:
        await asyncio.sleep(0.02)
        assert run is not None and run.elapsed >= 0.02
    assert sink.events[0].event_id == "session-1:1"
    assert sink.metadata[0]["durationMs"] >= 20


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        ("second", {"durationMs": 1000, "durationSeconds": 1, "durationMinutes": 1 / 60}),
        ("minute", {"durationMs": 60_000, "durationSeconds": 60, "durationMinutes": 1}),
    ],
)
def test_rounding_up_to_whole_units(
    sink: RecordingSink, rounding: str, expected: dict[str, float]
) -> None:
    with time_range(sink, "cus_1", rounding=rounding):  # type: ignore[arg-type]
        time.sleep(0.005)
    meta = sink.metadata[0]
    assert {k: meta[k] for k in expected} == expected


def test_heartbeats_add_up_to_the_total(sink: RecordingSink) -> None:
    @time_range(sink, "cus_1", job_id=lambda: "render-1", heartbeat_seconds=0.05)
    def long_job() -> None:
        time.sleep(0.28)

    started = time.monotonic()
    long_job()
    elapsed_ms = (time.monotonic() - started) * 1000
    metas = sink.metadata
    assert [e.event_id for e in sink.events] == [f"render-1:{i}" for i in range(1, len(metas) + 1)]
    assert len(metas) >= 4
    assert [m["final"] for m in metas] == [False] * (len(metas) - 1) + [True]
    assert {m["status"] for m in metas[:-1]} == {"running"}
    assert metas[-1]["status"] == "ok"
    total = sum(m["durationMs"] for m in metas)
    assert total == metas[-1]["totalDurationMs"]
    assert 280 <= total <= elapsed_ms + 1
    for earlier, later in itertools.pairwise(metas):
        assert earlier["endedAt"] == later["startedAt"]
    time.sleep(0.12)  # no heartbeat after the final event
    assert len(sink.events) == len(metas)


def test_heartbeats_with_second_rounding_sum_to_the_rounded_total(sink: RecordingSink) -> None:
    with time_range(sink, "cus_1", rounding="second", heartbeat_seconds=0.02):
        time.sleep(0.1)
    # 0.1 s never reaches a whole second, so heartbeats bill nothing: only the final event.
    assert [m["durationSeconds"] for m in sink.metadata] == [1]
    assert sink.metadata[0]["sequence"] == 1


def test_bad_settings_raise_at_construction(sink: RecordingSink) -> None:
    with pytest.raises(ConfigurationError, match="rounding"):
        time_range(sink, "cus_1", rounding="hour")  # type: ignore[arg-type]
    with pytest.raises(EventValidationError, match=r"metadata\.durationMs"):
        time_range(sink, "cus_1", metadata={"durationMs": 5})
    with pytest.raises(ConfigurationError, match="heartbeat_seconds"):
        time_range(sink, "cus_1", heartbeat_seconds=-1)
    with pytest.raises(ConfigurationError, match="job_id"):
        time_range(sink, "cus_1", job_id="fixed")(lambda: None)

    def gen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(TypeError, match="generator"):
        time_range(sink, "cus_1")(gen)


def test_resolver_failure_runs_the_job_untracked(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    timer = time_range(sink, customer_id=lambda order: order["customer"])

    @timer
    def job(order: dict[str, str]) -> str:
        return "ran"

    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        assert job({}) == "ran"
    assert sink.events == []
    assert timer.tracking_errors == 1
    assert "KeyError" in caplog.text


def test_sink_failure_never_reaches_the_job(sink: RecordingSink) -> None:
    timer = time_range(sink, "cus_1")
    sink.fail = RuntimeError("queue full")

    @timer
    def job() -> int:
        return 3

    assert job() == 3
    assert timer.tracking_errors == 1


def test_missing_event_name_fails_at_construction(sink: RecordingSink) -> None:
    sink.event_name = None  # type: ignore[attr-defined]  # a pipeline without a default name
    with pytest.raises(EventValidationError, match="event_name"):
        time_range(sink, "cus_1")
    time_range(sink, "cus_1", "job.time")


def test_durations_come_from_the_monotonic_clock(
    sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = iter([1_000_000.0, 1_000_000.0 - 3600])  # the wall clock jumps an hour back
    monkeypatch.setattr(time, "time", lambda: next(wall, 0.0))
    with time_range(sink, "cus_1"):
        time.sleep(0.02)
    meta = sink.metadata[0]
    assert 20 <= meta["durationMs"] < 1000
    assert meta["startedAt"] == "1970-01-12T13:46:40.000Z"
    assert parse_timestamp(meta["endedAt"]) > parse_timestamp(meta["startedAt"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_heartbeats_work_in_a_forked_child(sink: RecordingSink) -> None:
    with time_range(sink, "cus_1", heartbeat_seconds=0.02):  # starts the heartbeat thread
        time.sleep(0.05)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the scheduler must start a thread of its own
        child_sink = RecordingSink()
        try:
            with time_range(child_sink, "cus_child", heartbeat_seconds=0.02):
                time.sleep(0.15)
            os.write(write_end, str(len(child_sink.events)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child_events = int(pipe.read() or 0)
    os.waitpid(pid, 0)
    assert child_events >= 4  # heartbeats and the final event
