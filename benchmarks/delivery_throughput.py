"""Throughput, CPU, latency and memory of the delivery pipeline (``Ingestion``).

Sends 100,000 small events, batch 1000, to a minimal HTTP/1.1 sink running in its own
process (raw asyncio, answers ``{"ingested_count": n}``), and prints in one run:

- delivered events/s from the first ``track()`` to ``flush()`` returning, and the CPU time
  of the producer process (all threads) per event;
- the baseline: a bare loop doing by hand, in one thread, the least the API needs per event
  (an id, a timestamp, the JSON of each 1000-event batch) and posting each batch over one
  ``httpx2`` connection, and our ratio to it, round by round (the issue's "bare prebuilt-batch
  loop": 0.85 was measured against such a loop);
- the ceiling: a bare ``httpx2`` loop posting 1000-event bodies built before the clock starts
  (no per-event work at all: it measures the sink and the HTTP stack), and the ratio to it;
- the same with the metadata encoded by the :mod:`json` module instead of orjson (the
  ``fast`` extra; the ``memory-json`` rows, orjson blocked from importing), when orjson is
  installed;
- ``track()`` p50/p99 with the memory queue and with a SQLite outbox;
- the producer's peak RSS above its baseline with 100,000 events queued (the API hanging);
- the worst asyncio event-loop stall caused by a ``track()`` flood from a coroutine: the
  longest single ``track()`` call in the loop thread, and the latest a 1 ms ticker coroutine
  woke up (which also includes the flood's own chunks of 1000 calls), with a healthy API and
  with the queue full behind a hanging one;
- how fast the machine was during the run (``json.dumps`` of one small event), since a shared
  box can be twice as slow from one minute to the next.

Each scenario runs in a fresh interpreter; throughput and CPU figures are the median of
``--runs`` (and the best run, since a busy machine only ever makes a run slower).

    .venv/bin/python benchmarks/delivery_throughput.py [--events 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

API_KEY = "sk_bench_0123456789abcdef"
METADATA = {"endpoint": "/v1/items", "bytes": 512}


# --- the sink (its own process) ----------------------------------------------------------


async def _serve_sink(ready: socket.socket) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                if not body:  # a hanging API: never answer
                    await asyncio.sleep(3600)
                payload = b'{"ingested_count":%d}' % body.count(b'"event_id"')
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, sock=ready)
    async with server:
        await server.serve_forever()


def _run_sink() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    asyncio.run(_serve_sink(listener))


# --- scenarios (each in a fresh producer process) ------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
    }


def scenario_ceiling(base_url: str, events: int) -> dict[str, Any]:
    import httpx2

    from dodo_ingest.delivery import new_event_id

    bodies = []
    for _ in range(events // 1000):
        batch = [
            {
                "event_id": new_event_id(),
                "customer_id": "cus_123",
                "event_name": "api.request",
                "timestamp": "2026-11-25T08:00:00.000Z",
                "metadata": METADATA,
            }
            for _ in range(1000)
        ]
        bodies.append(json.dumps({"events": batch}, separators=(",", ":")).encode())
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with httpx2.Client() as client:
        client.post(base_url + "/events/ingest", content=bodies[0], headers=headers)
        start = time.perf_counter()
        for body in bodies:
            client.post(base_url + "/events/ingest", content=body, headers=headers).json()
        elapsed = time.perf_counter() - start
    return {"events_per_s": events / elapsed}


def scenario_bare_loop(base_url: str, events: int) -> dict[str, Any]:
    """The baseline of delivered events/s: one thread doing by hand the least the API
    needs per event (a unique id, a timestamp, the JSON), posting each 1000-event batch once
    it is built, over one ``httpx2`` connection; no queue, no sender thread, no checks."""
    import httpx2

    from dodo_ingest.delivery import new_event_id
    from dodo_ingest.delivery._ids import format_epoch

    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    with httpx2.Client() as client:
        client.post(base_url + "/events/ingest", content=b'{"events":[]}', headers=headers)
        cpu = time.process_time()
        start = time.perf_counter()
        for first in range(0, events, 1000):
            batch = [
                {
                    "event_id": new_event_id(),
                    "customer_id": "cus_123",
                    "event_name": "api.request",
                    "timestamp": format_epoch(time.time()),
                    "metadata": METADATA,
                }
                for _ in range(min(1000, events - first))
            ]
            body = encode({"events": batch}).encode()
            client.post(base_url + "/events/ingest", content=body, headers=headers).json()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return {"events_per_s": events / elapsed, "cpu_us_per_event": cpu / events * 1e6}


def _calibration_us() -> float:
    """Time of ``json.dumps`` of one small event: how fast this machine is right now."""
    event = {
        "event_id": "evt_01a211d32f73031aef9d0536ea351bf8",
        "customer_id": "cus_123",
        "event_name": "api.request",
        "timestamp": "2026-11-25T08:00:00.000Z",
        "metadata": METADATA,
    }
    start = time.perf_counter()
    for _ in range(20_000):
        json.dumps(event)
    return (time.perf_counter() - start) / 20_000 * 1e6


def scenario_delivery(
    base_url: str, events: int, outbox: bool, fast: bool = True
) -> dict[str, Any]:
    if not fast:
        sys.modules["orjson"] = None  # type: ignore[assignment]  # import orjson fails
    from dodo_ingest.delivery import Ingestion, _encoding

    calibration = _calibration_us()

    with tempfile.TemporaryDirectory() as tmp:
        ingestion = Ingestion(
            api_key=API_KEY,
            base_url=base_url,
            event_name="api.request",
            batch_size=1000,
            max_queue_size=max(100_000, events),
            outbox=os.path.join(tmp, "outbox.db") if outbox else None,
        )
        ingestion.track("cus_warmup")
        ingestion.flush(10)
        track = ingestion.track
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(events):
            track("cus_123", metadata=METADATA)
        tracked = time.perf_counter()
        assert ingestion.flush(120)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        stats = ingestion.stats
        ingestion.close()
    return {
        "events_per_s": events / elapsed,
        "cpu_us_per_event": cpu / events * 1e6,
        "track_phase_s": tracked - start,
        "delivered": stats.delivered - 1,
        "dropped": stats.dropped,
        "json_dumps_us": calibration,
        "orjson": _encoding._encode_metadata.__name__ == "encode",
    }


def scenario_latency(base_url: str, events: int, outbox: bool) -> dict[str, Any]:
    from dodo_ingest.delivery import Ingestion

    with tempfile.TemporaryDirectory() as tmp:
        ingestion = Ingestion(
            api_key=API_KEY,
            base_url=base_url,
            event_name="api.request",
            max_queue_size=max(100_000, events),
            outbox=os.path.join(tmp, "outbox.db") if outbox else None,
        )
        track = ingestion.track
        clock = time.perf_counter_ns
        samples = []
        for _ in range(events):
            before = clock()
            track("cus_123", metadata=METADATA)
            samples.append(clock() - before)
        assert ingestion.flush(120)
        ingestion.close()
    return _percentiles(samples)


def scenario_memory(base_url: str, events: int) -> dict[str, Any]:
    from dodo_ingest.delivery import Ingestion

    ingestion = Ingestion(
        api_key=API_KEY,
        base_url=base_url + "/hang",
        event_name="api.request",
        max_queue_size=events + 1000,
        shutdown_timeout=0,
    )
    ingestion.track("cus_warmup")
    # The sender builds its transport (loading the HTTP stack) when it starts: the baseline
    # is taken once it has, so that only the queued events are measured.
    deadline = time.monotonic() + 30
    while ingestion._pipeline._transport is None and time.monotonic() < deadline:
        time.sleep(0.005)
    baseline = _rss_kib()
    for _ in range(events):
        ingestion.track("cus_123", metadata=METADATA)
    queued = ingestion.stats.queued
    peak = _rss_kib()
    return {"queued": queued, "rss_over_baseline_mib": (peak - baseline) / 1024}


def scenario_loop_stall(base_url: str, events: int, full: bool) -> dict[str, Any]:
    from dodo_ingest.delivery import Ingestion

    ingestion = Ingestion(
        api_key=API_KEY,
        base_url=base_url + ("/hang" if full else ""),
        event_name="api.request",
        max_queue_size=1000 if full else max(100_000, events),
        shutdown_timeout=0,
    )
    clock = time.perf_counter

    async def run() -> dict[str, Any]:
        late: list[float] = []
        calls: list[float] = []
        done = False

        async def tick() -> None:
            while not done:
                before = clock()
                await asyncio.sleep(0.001)
                late.append(clock() - before - 0.001)

        async def flood() -> None:
            nonlocal done
            track = ingestion.track
            for start in range(0, events, 1000):
                for _ in range(min(1000, events - start)):
                    before = clock()
                    track("cus_123", metadata=METADATA)
                    calls.append(clock() - before)
                await asyncio.sleep(0)
            done = True

        await asyncio.gather(tick(), flood())
        calls.sort()
        return {
            "worst_track_ms": calls[-1] * 1000,
            "p99_track_us": calls[int(len(calls) * 0.99)] * 1e6,
            "worst_tick_late_ms": max(late) * 1000,
            "dropped": ingestion.stats.dropped,
        }

    result = asyncio.run(run())
    if not full:
        assert ingestion.flush(120)
    ingestion.close(0)
    return result


def _producer(name: str, base_url: str, events: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--scenario", name, "--url", base_url, "--events", str(events)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.splitlines()[-1])


SCENARIOS = {
    "ceiling": lambda url, n: scenario_ceiling(url, n),
    "bare-loop": lambda url, n: scenario_bare_loop(url, n),
    "memory": lambda url, n: scenario_delivery(url, n, outbox=False),
    "memory-json": lambda url, n: scenario_delivery(url, n, outbox=False, fast=False),
    "outbox": lambda url, n: scenario_delivery(url, n, outbox=True),
    "latency-memory": lambda url, n: scenario_latency(url, n, outbox=False),
    "latency-outbox": lambda url, n: scenario_latency(url, n, outbox=True),
    "rss": lambda url, n: scenario_memory(url, n),
    "loop-stall": lambda url, n: scenario_loop_stall(url, n, full=False),
    "loop-stall-full": lambda url, n: scenario_loop_stall(url, n, full=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        _run_sink()
        return
    if args.scenario:
        print(json.dumps(SCENARIOS[args.scenario](args.url, args.events)))
        return

    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        n = args.events
        results: dict[str, list[dict[str, Any]]] = {
            "ceiling": [],
            "bare-loop": [],
            "memory": [],
            "memory-json": [],
            "outbox": [],
        }
        for _ in range(args.runs):
            for name in results:
                results[name].append(_producer(name, url, n))
        latency_memory = _producer("latency-memory", url, n)
        latency_outbox = _producer("latency-outbox", url, min(n, 20_000))
        rss = _producer("rss", url, n)
        stalls = [_producer("loop-stall", url, n) for _ in range(args.runs)]
        stalls_full = [_producer("loop-stall-full", url, min(n, 20_000)) for _ in range(args.runs)]
    finally:
        sink.kill()
        sink.wait()

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in results[name])

    def best(name: str, key: str) -> float:
        values = [run[key] for run in results[name]]
        return min(values) if key.startswith("cpu") else max(values)

    ceiling = median("ceiling", "events_per_s")
    report: dict[str, Any] = {
        "events": n,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "ceiling_events_per_s": round(ceiling),
    }
    for name in ("memory", "memory-json", "outbox"):
        key = name.replace("-", "_")
        report[f"{key}_events_per_s"] = round(median(name, "events_per_s"))
        report[f"{key}_events_per_s_best"] = round(best(name, "events_per_s"))
        report[f"{key}_cpu_us_per_event"] = round(median(name, "cpu_us_per_event"), 2)
        report[f"{key}_cpu_us_per_event_best"] = round(best(name, "cpu_us_per_event"), 2)
        report[f"{key}_dropped"] = max(run["dropped"] for run in results[name])
    report["bare_loop_events_per_s"] = round(median("bare-loop", "events_per_s"))
    report["bare_loop_cpu_us_per_event"] = round(median("bare-loop", "cpu_us_per_event"), 2)
    # Ratios within each round (the same minute of a shared box), then their median.
    rounds = zip(results["memory"], results["bare-loop"], results["ceiling"], strict=True)
    ratios = [
        (ours["events_per_s"] / bare["events_per_s"], ours["events_per_s"] / top["events_per_s"])
        for ours, bare, top in rounds
    ]
    to_bare = [bare for bare, _ in ratios]
    report["memory_ratio_to_bare_loop"] = round(statistics.median(to_bare), 3)
    report["memory_ratio_to_bare_loop_range"] = f"{min(to_bare):.3f}-{max(to_bare):.3f}"
    report["memory_ratio_to_ceiling"] = round(statistics.median(top for _, top in ratios), 3)
    report["memory_uses_orjson"] = all(run["orjson"] for run in results["memory"])
    to_bare_json = [
        ours["events_per_s"] / bare["events_per_s"]
        for ours, bare in zip(results["memory-json"], results["bare-loop"], strict=True)
    ]
    report["memory_json_ratio_to_bare_loop"] = round(statistics.median(to_bare_json), 3)
    report["memory_json_ratio_to_bare_loop_range"] = (
        f"{min(to_bare_json):.3f}-{max(to_bare_json):.3f}"
    )
    report["load_average"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
    report["json_dumps_one_event_us"] = round(median("memory", "json_dumps_us"), 2)
    report.update(
        {
            "track_memory_p50_us": round(latency_memory["p50_us"], 2),
            "track_memory_p99_us": round(latency_memory["p99_us"], 2),
            "track_outbox_p50_us": round(latency_outbox["p50_us"], 2),
            "track_outbox_p99_us": round(latency_outbox["p99_us"], 2),
            "rss_100k_queued_mib": round(rss["rss_over_baseline_mib"], 1),
            "loop_worst_track_ms": round(max(r["worst_track_ms"] for r in stalls), 2),
            "loop_worst_tick_late_ms": round(max(r["worst_tick_late_ms"] for r in stalls), 2),
            "loop_full_worst_track_ms": round(max(r["worst_track_ms"] for r in stalls_full), 2),
            "loop_full_worst_tick_late_ms": round(
                max(r["worst_tick_late_ms"] for r in stalls_full), 2
            ),
            "every_run": results,
        }
    )
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key != "every_run":
            print(f"{key:<{width}}  {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
