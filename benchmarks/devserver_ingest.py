"""Ingest throughput of the dev server: a plain httpx2 loop posting prebuilt 1000-event batches.

Measures, in one run, events/s for new events and for a replay of the same batches (every id
already known, so nothing is stored), for the server in a subprocess (its own core) and
in-process (a thread sharing the GIL with the client, as tests and SDK benchmarks run it),
with an in-memory and a file database, and the server's own work without HTTP. Prints each
figure and its ratio to the 100k events/s the SDK's own benchmarks target.

Wall-clock rates suffer when other jobs share the cores; the server's CPU time per batch
(measured for the no-HTTP row and, on Linux, for the subprocess rows) does much less, so it is
printed too, as events per CPU-second of the server.

    .venv/bin/python benchmarks/devserver_ingest.py [--batches 200] [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2

from dodo_ingest.devserver import DevServer
from dodo_ingest.devserver._ingest import parse_ingest_body
from dodo_ingest.devserver._store import Store

TARGET_EVENTS_PER_SECOND = 100_000
HEADERS = {"Authorization": "Bearer bench", "Content-Type": "application/json"}

RESULTS: dict[tuple[str, str], float] = {}
"""Wall-clock events/s of each row of this run, for the ratios printed at the end."""

CpuClock = Callable[[], float]
"""Seconds of CPU the server has used so far."""


def build_batches(run: str, batches: int, batch_size: int) -> list[bytes]:
    """Encoded ``{"events": [...]}`` bodies of LLM-like events with unique ids."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    bodies = []
    for b in range(batches):
        events = [
            {
                "event_id": f"{run}-{b}-{i}",
                "customer_id": f"cus_{i % 50}",
                "event_name": "llm.chat_completion",
                "timestamp": stamp,
                "metadata": {
                    "model": "gpt-4o-mini",
                    "provider": "openai",
                    "inputTokens": 120 + i % 7,
                    "outputTokens": 40 + i % 5,
                    "totalTokens": 160 + i % 12,
                },
            }
            for i in range(batch_size)
        ]
        bodies.append(json.dumps({"events": events}, separators=(",", ":")).encode())
    return bodies


def report(
    label: str,
    kind: str,
    events: int,
    seconds: float,
    latencies: list[float],
    cpu_seconds: float | None,
) -> None:
    """One result line: wall-clock rate, the rate at the median batch time, latencies, and the
    events per CPU-second of the server when its CPU time is known."""
    rate = events / seconds
    RESULTS[(label, kind)] = rate
    p50 = statistics.median(latencies)
    steady = events / len(latencies) / p50 * 1000
    cpu = "" if cpu_seconds is None else f"  server {events / cpu_seconds:>9,.0f} ev/CPU-s"
    print(
        f"{label:<24} {kind:<12} {rate:>9,.0f} ev/s (x{rate / TARGET_EVENTS_PER_SECOND:4.2f})  "
        f"at p50 {steady:>9,.0f} ev/s (x{steady / TARGET_EVENTS_PER_SECOND:4.2f})  "
        f"batch p50 {p50:6.2f} ms p95 {statistics.quantiles(latencies, n=20)[-1]:6.2f} ms{cpu}"
    )


def measure_without_http(args: argparse.Namespace) -> None:
    """The server's own work per batch (checking the body, storing the events), no HTTP."""
    bodies = build_batches(f"direct-{os.getpid()}", args.batches, args.batch_size)
    store = Store(":memory:")
    latencies = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for body in bodies:
        begun = time.perf_counter()
        store.insert_events(parse_ingest_body(body))
        latencies.append((time.perf_counter() - begun) * 1000)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    report("no HTTP, memory db", "new ids", args.batches * args.batch_size, seconds, latencies, cpu)
    store.close()


def post_all(
    base_url: str, bodies: list[bytes], expect_new: bool, cpu_clock: CpuClock | None
) -> tuple[float, list[float], float | None]:
    """Post every body in turn on one keep-alive connection; return the seconds, per-batch
    milliseconds and the server's CPU seconds (``None`` when unknown)."""
    latencies = []
    with httpx2.Client(base_url=base_url, headers=HEADERS, timeout=60) as client:
        client.post("/events/ingest", content=bodies[0]).raise_for_status()  # warm-up
        started = time.perf_counter()
        cpu_started = cpu_clock() if cpu_clock else 0.0
        for body in bodies[1:]:
            sent = time.perf_counter()
            response = client.post("/events/ingest", content=body)
            latencies.append((time.perf_counter() - sent) * 1000)
            response.raise_for_status()
            if expect_new and response.json()["ingested_count"] == 0:
                raise RuntimeError("a batch of new events was not stored")
        seconds = time.perf_counter() - started
        cpu = cpu_clock() - cpu_started if cpu_clock else None
        return seconds, latencies, cpu


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_cpu_clock(pid: int) -> CpuClock | None:
    """CPU seconds (user + system) of another process, read from ``/proc`` (Linux only)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")

    def clock() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return clock


@contextmanager
def subprocess_server(db: str) -> Iterator[tuple[str, CpuClock | None]]:
    """``dodo-ingest dev-server`` in a child process; yields its base URL and CPU clock."""
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "dodo_ingest", "dev-server", "--port", str(port), "--db", db],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx2.get(f"{url}/_dev/health", timeout=1).raise_for_status()
                break
            except httpx2.TransportError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the dev server subprocess did not start") from None
                time.sleep(0.05)
        yield url, _process_cpu_clock(child.pid)
    finally:
        child.terminate()
        child.wait(10)


@contextmanager
def inprocess_server(db: str) -> Iterator[tuple[str, CpuClock | None]]:
    """:class:`DevServer` in a thread of this process; yields its base URL (its CPU time
    cannot be told apart from the client's)."""
    with DevServer(db=db) as server:
        yield server.base_url, None


def measure(label: str, url: str, cpu_clock: CpuClock | None, args: argparse.Namespace) -> None:
    run = f"{label.replace(' ', '-')}-{os.getpid()}"
    bodies = build_batches(run, args.batches + 1, args.batch_size)
    for kind, expect_new in (("new ids", True), ("replayed ids", False)):
        seconds, latencies, cpu = post_all(url, bodies, expect_new, cpu_clock)
        report(label, kind, args.batches * args.batch_size, seconds, latencies, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{args.batches} batches x {args.batch_size} events, target "
        f"{TARGET_EVENTS_PER_SECOND:,} events/s"
    )
    measure_without_http(args)
    with tempfile.TemporaryDirectory() as tmp:
        for mode, server in (("subprocess", subprocess_server), ("in-process", inprocess_server)):
            for db_label, db in (("memory", ":memory:"), ("file", str(Path(tmp) / f"{mode}.db"))):
                label = f"{mode}, {db_label} db"
                with server(db) as (url, cpu_clock):
                    measure(label, url, cpu_clock, args)
    print_ratios()


def print_ratios() -> None:
    """Ratios between rows of this run (less sensitive to a busy box than the rates)."""

    def rate(label: str, kind: str = "new ids") -> float:
        return RESULTS[(label, kind)]

    ratios = {
        "over HTTP (subprocess) / without HTTP": rate("subprocess, memory db")
        / rate("no HTTP, memory db"),
        "in-process / subprocess (memory db)": rate("in-process, memory db")
        / rate("subprocess, memory db"),
        "file db / memory db (subprocess)": rate("subprocess, file db")
        / rate("subprocess, memory db"),
        "replayed ids / new ids (subprocess, memory db)": rate(
            "subprocess, memory db", "replayed ids"
        )
        / rate("subprocess, memory db"),
    }
    for name, ratio in ratios.items():
        print(f"ratio {name:<48} {ratio:5.2f}")


if __name__ == "__main__":
    main()
