"""``dodo-ingest send`` on a 100k-line file against a dev server in its own process.

Writes 100,000 LLM-like events with recent timestamps to a temporary JSON Lines file (and the
same as CSV), starts ``dodo-ingest dev-server --port 0 --db :memory:`` as a subprocess, then
runs the installed ``dodo-ingest send`` as a subprocess, as a user would:

- ``jsonl``: the file, through the memory queue (the default);
- ``jsonl replay``: the same file again (every id already stored, all ignored by the server);
- ``jsonl --outbox``: a fresh copy (new ids) through a SQLite outbox;
- ``csv``: the same events as CSV with column mapping.

Each run's JSON summary is checked to be exact (every event delivered, ``new`` and
``duplicates_ignored`` as expected, nothing dead-lettered or dropped). Wall time counts from
starting the process to its exit (interpreter start, both passes over the file, delivery);
the start-up alone (``dodo-ingest --help``) is printed too, and the CPU time of the command's
process (both threads, start-up included) per event, which other jobs on the machine disturb
less than the wall time. The ceiling is a bare httpx2 loop
posting the same events, prebuilt as 1000-event bodies, to the same server: the ratio says
how much of the server's speed the command keeps.

    .venv/bin/python benchmarks/cli_send.py [--events 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

COMMAND = Path(sys.executable).with_name("dodo-ingest")
API_KEY = "sk_test_bench_cli_send"


def events(prefix: str, count: int) -> Iterator[dict[str, Any]]:
    """LLM-like events with ids ``{prefix}-{i}``, stamped now."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    for i in range(count):
        yield {
            "event_id": f"{prefix}-{i}",
            "customer_id": f"cus_{i % 50}",
            "event_name": "llm.chat_completion",
            "timestamp": stamp,
            "metadata": {
                "model": "gpt-4o-mini",
                "inputTokens": 120 + i % 7,
                "outputTokens": 40 + i % 5,
                "totalTokens": 160 + i % 12,
            },
        }


def write_jsonl(path: Path, prefix: str, count: int) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for event in events(prefix, count):
            file.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path


def write_csv(path: Path, prefix: str, count: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["id", "user", "event_name", "timestamp", "model", "inputTokens", "outputTokens"]
        )
        for event in events(prefix, count):
            meta = event["metadata"]
            writer.writerow(
                [
                    event["event_id"],
                    event["customer_id"],
                    event["event_name"],
                    event["timestamp"],
                    meta["model"],
                    meta["inputTokens"],
                    meta["outputTokens"],
                ]
            )
    return path


@contextmanager
def dev_server() -> Iterator[str]:
    """``dodo-ingest dev-server --port 0 --db :memory:`` in a subprocess; yields its URL."""
    process = subprocess.Popen(
        [str(COMMAND), "dev-server", "--port", "0", "--db", ":memory:"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        if " on http" not in first:
            raise RuntimeError(f"the dev server did not start: {first}{process.stderr.read()}")
        yield first.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(10)


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def send(url: str, *args: str) -> tuple[float, float, dict[str, Any]]:
    """Run ``dodo-ingest send ... --json``; return its wall time, CPU time and summary."""
    env = {**os.environ, "DODO_PAYMENTS_API_KEY": API_KEY, "DODO_PAYMENTS_BASE_URL": url}
    cpu = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(
        [str(COMMAND), "send", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - start
    cpu = children_cpu() - cpu
    if result.returncode != 0:
        raise RuntimeError(f"send failed ({result.returncode}): {result.stderr}{result.stdout}")
    return seconds, cpu, json.loads(result.stdout)


def check(summary: dict[str, Any], count: int, new: int) -> None:
    """The summary must be exact."""
    expected = {
        "ok": True,
        "events_read": count,
        "delivered": count,
        "new": new,
        "duplicates_ignored": count - new,
        "dead_lettered": 0,
        "dropped": 0,
        "unsettled": 0,
    }
    got = {key: summary[key] for key in expected}
    if got != expected:
        raise AssertionError(f"inexact summary: {got} != {expected}")


def ceiling(url: str, prefix: str, count: int) -> float:
    """Events/s of a bare httpx2 loop posting prebuilt 1000-event bodies."""
    batch: list[dict[str, Any]] = []
    bodies = []
    for event in events(prefix, count):
        batch.append(event)
        if len(batch) == 1000:
            bodies.append(json.dumps({"events": batch}, separators=(",", ":")).encode())
            batch = []
    if batch:
        bodies.append(json.dumps({"events": batch}, separators=(",", ":")).encode())
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with httpx2.Client(base_url=url, headers=headers, timeout=60) as client:
        start = time.perf_counter()
        for body in bodies:
            client.post("/events/ingest", content=body).raise_for_status()
        return count / (time.perf_counter() - start)


def startup() -> float:
    start = time.perf_counter()
    subprocess.run([str(COMMAND), "--help"], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    count = options.events
    rows: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    ceilings: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for run in range(options.runs):
            # Timestamps are taken when the files are written: write them per run, so that
            # a long benchmark never nears the API's one-hour window.
            jsonl = write_jsonl(folder / f"usage-{run}.jsonl", f"r{run}", count)
            outboxed = write_jsonl(folder / f"outbox-{run}.jsonl", f"o{run}", count)
            as_csv = write_csv(folder / f"usage-{run}.csv", f"c{run}", count)
            with dev_server() as url:
                ceilings.append(ceiling(url, f"x{run}", count))
                scenarios = [
                    ("jsonl", [str(jsonl)], count),
                    ("jsonl replay", [str(jsonl)], 0),
                    (
                        "jsonl --outbox",
                        [str(outboxed), "--outbox", str(folder / f"{run}.db")],
                        count,
                    ),
                    ("csv", [str(as_csv), "--id-column", "id", "--customer-column", "user"], count),
                ]
                for label, args, new in scenarios:
                    seconds, cpu, summary = send(url, *args)
                    check(summary, count, new)
                    rows.setdefault(label, []).append(seconds)
                    cpus.setdefault(label, []).append(cpu)
                    print(
                        f"run {run + 1} {label:<15} {seconds:6.2f} s  "
                        f"{count / seconds:>9,.0f} events/s  "
                        f"{cpu / count * 1e6:5.1f} us CPU/event  (summary exact)",
                        flush=True,
                    )
        start_seconds = statistics.median(startup() for _ in range(5))
    top = statistics.median(ceilings)
    print()
    print(f"{count:,} events, median of {options.runs} run(s), best in brackets")
    print(f"command start-up (dodo-ingest --help): {start_seconds:.2f} s")
    print(f"ceiling, bare httpx2 loop of prebuilt bodies: {top:,.0f} events/s")
    print(
        f"{'scenario':<16} {'wall s':>14} {'events/s':>20} {'ratio to ceiling':>17} "
        f"{'CPU us/event':>13}"
    )
    for label, times in rows.items():
        median, best = statistics.median(times), min(times)
        rate = count / median
        cpu = statistics.median(cpus[label]) / count * 1e6
        print(
            f"{label:<16} {median:6.2f} ({best:5.2f}) "
            f"{rate:>9,.0f} ({count / best:>8,.0f}) {rate / top:>17.2f} {cpu:>13.1f}"
        )


if __name__ == "__main__":
    main()
