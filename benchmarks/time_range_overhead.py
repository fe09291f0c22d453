"""Per-call overhead of ``time_range``: decorated vs bare function, sync and async.

Each variant calls a function that does nothing ``--calls`` times, timed in CPU time of the
calling thread; the overhead is the extra time per call over the bare function: the median of ``--repeat`` back-to-back pairs, and the
best (fastest measured run minus fastest bare run, the least disturbed by other load). Variants:
the blueprint alone (events handed to a sink that drops them), heartbeats on, the context
manager form, and the real ``Ingestion`` delivering to the dev server on 127.0.0.1 (its sender
thread runs during the measurement, as it would in an application).
Usage: ``python benchmarks/time_range_overhead.py [--calls 20000] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from dodo_ingest.blueprints.time_range import time_range


class NullSink:
    """Accepts events and drops them: measures the blueprint, not delivery."""

    def track(
        self, customer_id: str, event_name: Any = None, metadata: Any = None, **_: Any
    ) -> str:
        return "evt"


def per_call(run: Callable[[int], None], calls: int) -> float:
    """CPU seconds of the calling thread per call (time spent waiting for a core on a busy
    machine, and the delivery threads' work, do not count)."""
    start = time.thread_time()
    run(calls)
    return (time.thread_time() - start) / calls


def compare(
    name: str, bare: Callable[[int], None], measured: Callable[[int], None], args: Any
) -> None:
    extra: list[float] = []
    base: list[float] = []
    best: list[float] = []
    for _ in range(args.repeat):
        b = per_call(bare, args.calls)
        m = per_call(measured, args.calls)
        base.append(b)
        best.append(m)
        extra.append(m - b)
    print(
        f"{name:40s} bare {statistics.median(base) * 1e6:5.2f} us  "
        f"overhead median {statistics.median(extra) * 1e6:6.2f} us/call, "
        f"best {(min(best) - min(base)) * 1e6:6.2f} us/call"
    )


def sync_loop(func: Callable[[], Any]) -> Callable[[int], None]:
    def run(calls: int) -> None:
        for _ in range(calls):
            func()

    return run


def async_loop(func: Callable[[], Any]) -> Callable[[int], None]:
    async def many(calls: int) -> None:
        for _ in range(calls):
            await func()

    def run(calls: int) -> None:
        asyncio.run(many(calls))

    return run


def cm_loop(sink: Any) -> Callable[[int], None]:
    timer = time_range(sink, "cus_bench", "job.time")

    def run(calls: int) -> None:
        for _ in range(calls):
            with timer:
                pass

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    def work() -> None:
        return None

    async def awork() -> None:
        return None

    sink = NullSink()
    print(f"{args.calls} calls per run, median of {args.repeat} pairs")
    compare(
        "sync decorator",
        sync_loop(work),
        sync_loop(time_range(sink, "cus_bench", "job.time")(work)),
        args,
    )
    compare(
        "sync decorator, callables for ids",
        sync_loop(work),
        sync_loop(
            time_range(sink, lambda: "cus_bench", "job.time", metadata=lambda: {"gpu": "a100"})(
                work
            )
        ),
        args,
    )
    compare(
        "sync decorator, heartbeats on",
        sync_loop(work),
        sync_loop(time_range(sink, "cus_bench", "job.time", heartbeat_seconds=60)(work)),
        args,
    )
    compare("context manager", sync_loop(work), cm_loop(sink), args)
    compare(
        "async decorator",
        async_loop(awork),
        async_loop(time_range(sink, "cus_bench", "job.time")(awork)),
        args,
    )

    from dodo_ingest.delivery import Ingestion
    from dodo_ingest.devserver import DevServer

    with (
        DevServer() as server,
        Ingestion(api_key="k", base_url=server.base_url, max_queue_size=10_000_000) as ingestion,
    ):
        compare(
            "sync decorator + Ingestion -> dev server",
            sync_loop(work),
            sync_loop(time_range(ingestion, "cus_bench", "job.time")(work)),
            args,
        )
        ingestion.flush(60)


if __name__ == "__main__":
    main()
