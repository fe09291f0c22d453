"""time_range `with` blocks whose enter and exit run in different threads, tasks or contexts."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from dodo_ingest.blueprints.time_range import TimeRange, TimeRangeRun, time_range

from .conftest import RecordingSink, serve_asgi, wait_until


def _in_thread(func: Any, *args: Any) -> Any:
    """Run ``func(*args)`` in a new thread (its own context) and return its result."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(func, *args).result()


def _assert_exact(metas: list[dict[str, Any]], job_id: str) -> None:
    """The events of one heartbeat run: ordered, one final, durations summing to the total."""
    assert [m["sequence"] for m in metas] == list(range(1, len(metas) + 1))
    assert [m["final"] for m in metas] == [False] * (len(metas) - 1) + [True]
    assert {m["jobId"] for m in metas} == {job_id}
    assert sum(m["durationMs"] for m in metas) == metas[-1]["totalDurationMs"]


def test_enter_in_one_thread_exit_in_another_stops_the_heartbeat(sink: RecordingSink) -> None:
    timer = time_range(sink, "cus_1", "job", heartbeat_seconds=0.02)
    run = _in_thread(timer.__enter__)
    assert isinstance(run, TimeRangeRun)
    time.sleep(0.1)
    assert _in_thread(timer.__exit__, None, None, None) is None
    assert run.done and timer.tracking_errors == 0
    count = len(sink.events)
    assert count >= 2  # heartbeats ran while the job did
    time.sleep(0.1)
    assert len(sink.events) == count  # and stopped with it
    metas = sink.metadata
    _assert_exact(metas, run.job_id)
    assert metas[-1]["status"] == "ok"
    assert 100 <= metas[-1]["totalDurationMs"] < 1000


def test_exit_in_a_copied_context_finishes_the_run(sink: RecordingSink) -> None:
    timer = time_range(sink, "cus_1", rounding="second")
    run = contextvars.copy_context().run(timer.__enter__)
    contextvars.copy_context().run(timer.__exit__, KeyError, KeyError("x"), None)
    assert run is not None and run.done
    assert sink.metadata == [
        {
            "durationMs": 1000,
            "durationSeconds": 1,
            "durationMinutes": 1 / 60,
            "startedAt": sink.metadata[0]["startedAt"],
            "endedAt": sink.metadata[0]["endedAt"],
            "jobId": run.job_id,
            "status": "error",
            "errorType": "KeyError",
        }
    ]


@pytest.mark.anyio
async def test_contextmanager_dependency_in_threadpool_ends_its_own_run(
    sink: RecordingSink,
) -> None:
    # FastAPI runs the two halves of a sync `yield` dependency in worker threads, each in a
    # copy of the request's context; here one shared timer also has an enclosing block open.
    shared = time_range(sink, "cus_1", heartbeat_seconds=0.02)

    @contextmanager
    def dependency() -> Iterator[TimeRangeRun | None]:
        with shared as run:
            yield run

    async with shared as outer:
        await asyncio.sleep(0.03)
        manager = dependency()
        inner = await run_in_threadpool(manager.__enter__)
        await asyncio.sleep(0.05)
        await run_in_threadpool(manager.__exit__, None, None, None)
        assert inner is not None and outer is not None
        assert inner.done and not outer.done
        await asyncio.sleep(0.03)
    assert outer.done and shared.tracking_errors == 0
    count = len(sink.events)
    await asyncio.sleep(0.06)
    assert len(sink.events) == count
    by_job: dict[str, list[dict[str, Any]]] = {}
    for meta in sink.metadata:
        by_job.setdefault(meta["jobId"], []).append(meta)
    assert set(by_job) == {inner.job_id, outer.job_id}
    _assert_exact(by_job[inner.job_id], inner.job_id)
    _assert_exact(by_job[outer.job_id], outer.job_id)
    assert by_job[inner.job_id][-1]["totalDurationMs"] >= 50
    assert by_job[outer.job_id][-1]["totalDurationMs"] >= 110


def test_fastapi_sync_yield_dependency(sink: RecordingSink) -> None:
    app = FastAPI()

    def metered() -> Iterator[TimeRangeRun | None]:
        with time_range(sink, "cus_1", "request.time", heartbeat_seconds=0.02) as run:
            yield run

    @app.get("/work")
    def work(run: TimeRangeRun | None = Depends(metered)) -> dict[str, str]:  # noqa: B008
        time.sleep(0.05)
        return {"job": run.job_id if run else ""}

    with serve_asgi(app) as url, httpx2.Client(base_url=url) as client:
        jobs = [client.get("/work").json()["job"] for _ in range(3)]
        assert wait_until(lambda: sum(bool(m.get("final")) for m in sink.metadata) == 3)
    count = len(sink.events)
    time.sleep(0.06)
    assert len(sink.events) == count
    for job in jobs:
        metas = [m for m in sink.metadata if m["jobId"] == job]
        _assert_exact(metas, job)
        assert metas[-1]["totalDurationMs"] >= 50


@pytest.mark.anyio
async def test_enter_in_one_task_exit_in_another(sink: RecordingSink) -> None:
    timer = time_range(sink, "cus_1", job_id="session-7")

    async def enter() -> TimeRangeRun | None:
        return await timer.__aenter__()

    async def leave() -> None:
        await timer.__aexit__(None, None, None)

    run = await asyncio.create_task(enter())
    await asyncio.sleep(0.02)
    await asyncio.create_task(leave())
    assert run is not None and run.done
    assert [e.event_id for e in sink.events] == ["session-7:1"]
    assert sink.metadata[0]["durationMs"] >= 20


def test_many_runs_of_a_shared_timer_crossing_threads(sink: RecordingSink) -> None:
    shared = time_range(sink, "cus_1", heartbeat_seconds=0.01)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda _: shared.__enter__(), range(20)))
        time.sleep(0.03)
        list(pool.map(lambda _: shared.__exit__(None, None, None), range(20)))
    assert all(run is not None and run.done for run in runs)
    assert shared.tracking_errors == 0
    finals = [m for m in sink.metadata if m["final"]]
    assert sorted(m["jobId"] for m in finals) == sorted(run.job_id for run in runs if run)
    count = len(sink.events)
    time.sleep(0.05)
    assert len(sink.events) == count


def test_exit_without_enter_is_counted_not_raised(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    timer = time_range(sink, "cus_1")
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        timer.__exit__(None, None, None)
        with timer:
            pass
        _in_thread(timer.__exit__, None, None, None)
    assert timer.tracking_errors == 2
    assert len(sink.events) == 1
    assert caplog.text.count("exit without an open block") == 2


def test_failed_final_event_still_stops_the_heartbeat(sink: RecordingSink) -> None:
    timer: TimeRange = time_range(sink, "cus_1", heartbeat_seconds=0.01)
    run = _in_thread(timer.__enter__)
    time.sleep(0.03)
    sink.fail = ConnectionError("queue full")
    _in_thread(timer.__exit__, None, None, None)
    sink.fail = None
    assert run.done and timer.tracking_errors >= 1
    count = len(sink.events)
    time.sleep(0.05)
    assert len(sink.events) == count


def test_failed_start_in_a_nested_block_leaves_the_outer_run_open(sink: RecordingSink) -> None:
    customers = iter(["cus_1", ""])
    shared = time_range(sink, customer_id=lambda: next(customers))
    with shared as outer:
        inner = contextvars.copy_context().run(shared.__enter__)
        assert inner is None  # "" is not a customer id: untracked, counted
        _in_thread(shared.__exit__, None, None, None)
        assert outer is not None and not outer.done
    assert outer.done
    assert [m["jobId"] for m in sink.metadata] == [outer.job_id]
    assert shared.tracking_errors == 1


def test_threads_entering_and_exiting_their_own_blocks_stay_exact(sink: RecordingSink) -> None:
    shared = time_range(sink, customer_id=lambda: threading.current_thread().name)
    barrier = threading.Barrier(4)

    def worker() -> None:
        for _ in range(25):
            with shared:
                barrier.wait(5)

    threads = [threading.Thread(target=worker, name=f"cus_t{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sink.events) == 100 and shared.tracking_errors == 0
    for i in range(4):
        assert sum(e.customer_id == f"cus_t{i}" for e in sink.events) == 25
