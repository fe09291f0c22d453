"""``dodo-ingest send`` against ``Ingestion`` delivering the same events to the same sink.

Writes 100,000 LLM-like events with recent timestamps to a temporary JSON Lines file (and the
same as CSV), starts ``dodo-ingest dev-server --port 0 --db :memory:`` as a subprocess, then
runs the installed ``dodo-ingest send`` as a subprocess, as a user would:

- ``jsonl``: the file, through the memory queue (the default);
- ``jsonl replay``: the same file again (every id already stored, all ignored by the server);
- ``jsonl --outbox``: a fresh copy (new ids) through a SQLite outbox;
- ``csv``: the same events as CSV with column mapping (three metadata columns).

The baseline of each scenario runs in the same run, against the same server: a Python
subprocess that builds an ``Ingestion`` (with the same kind of outbox) and calls ``track()``
for the same events (same ids, shapes and timestamps, held in memory, so no file is read),
then flushes and closes. Both are timed from starting the process to its exit (the time and CPU the
baseline spends building its events in memory are subtracted); the ratio is send's rate over
the baseline's (1.0: send costs nothing beyond the pipeline it uses). Each summary, send's
and the baseline's, is checked to be exact (every event delivered, ``new`` as expected,
nothing dead-lettered or dropped). CPU time per event of each process (both threads,
start-up included) is printed too: other jobs on the machine disturb it less than the wall.
Both run with their bytecode cached, as an installed package's is.

``--memory-lines N`` then sends files of N and 10*N generated lines to a sink that only
counts (an HTTP server in this process acknowledging every event as new), and prints the
peak RSS of the command for each (``ru_maxrss`` of the finished process): a backfill streams
when both peaks are about the same.

    .venv/bin/python benchmarks/cli_send.py [--events 100000] [--runs 3] [--memory-lines 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

COMMAND = Path(sys.executable).with_name("dodo-ingest")
API_KEY = "sk_test_bench_cli_send"
CSV_ARGS = ("--id-column", "id", "--customer-column", "user")


def events(prefix: str, count: int, stamp: datetime) -> Iterator[dict[str, Any]]:
    """LLM-like events with ids ``{prefix}-{i}``, stamped within the minute before ``stamp``."""
    for i in range(count):
        moment = stamp - timedelta(milliseconds=i % 60_000)
        yield {
            "event_id": f"{prefix}-{i}",
            "customer_id": f"cus_{i % 50}",
            "event_name": "llm.chat_completion",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "metadata": {
                "model": "gpt-4o-mini",
                "inputTokens": 120 + i % 7,
                "outputTokens": 40 + i % 5,
                "totalTokens": 160 + i % 12,
            },
        }


def as_csv_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event as its CSV row sends it: three metadata columns."""
    meta = event["metadata"]
    keep = ("model", "inputTokens", "outputTokens")
    return {**event, "metadata": {key: meta[key] for key in keep}}


def write_jsonl(path: Path, prefix: str, count: int, stamp: datetime) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for event in events(prefix, count, stamp):
            file.write(json.dumps(event, separators=(",", ":")) + "\n")
    return path


def write_csv(path: Path, prefix: str, count: int, stamp: datetime) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(
            ["id", "user", "event_name", "timestamp", "model", "inputTokens", "outputTokens"]
        )
        for event in events(prefix, count, stamp):
            meta = as_csv_event(event)["metadata"]
            writer.writerow(
                [
                    event["event_id"],
                    event["customer_id"],
                    event["event_name"],
                    event["timestamp"],
                    *meta.values(),
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


@contextmanager
def counting_sink() -> Iterator[str]:
    """A loopback HTTP server in a thread of this process that acknowledges every event of a
    batch as new and keeps nothing; yields its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Counting(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = json.dumps({"ingested_count": body.count(b'"event_id":')}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PYCACHE = Path(tempfile.gettempdir()) / "dodo-ingest-bench-pycache"


def child_env(url: str) -> dict[str, str]:
    """The environment of the measured processes: the sink's URL and a fake key, and
    bytecode cached (in a folder of its own) as for an installed package, even where
    ``PYTHONDONTWRITEBYTECODE`` would compile every module at every start."""
    env = {**os.environ, "DODO_PAYMENTS_API_KEY": API_KEY, "DODO_PAYMENTS_BASE_URL": url}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def warm_up() -> None:
    """Compile (and cache) the bytecode of everything both processes import."""
    code = "import dodo_ingest.cli, dodo_ingest._cli._backfill, dodo_ingest.client._client"
    subprocess.run([sys.executable, "-c", code], env=child_env(""), check=True)


def run_child(argv: list[str], url: str) -> tuple[float, float, int, str]:
    """Run a process to its end; return its wall time, CPU time, peak RSS (KiB) and stdout."""
    env = child_env(url)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({process.returncode}): {stderr}{stdout}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, stdout


def send(url: str, *args: str) -> tuple[float, float, int, dict[str, Any]]:
    """Run ``dodo-ingest send ... --json``; return wall time, CPU time, peak RSS, summary."""
    seconds, cpu, rss, stdout = run_child([str(COMMAND), "send", *args, "--json"], url)
    return seconds, cpu, rss, json.loads(stdout)


def track(url: str, prefix: str, count: int, stamp: datetime, shape: str, outbox: str) -> Any:
    """Run :func:`baseline` in a subprocess; return its wall time and CPU time (less what it
    took to build its events) and its summary."""
    argv = [
        sys.executable,
        __file__,
        "--baseline",
        json.dumps([prefix, count, stamp.isoformat(), shape, outbox]),
    ]
    seconds, cpu, _, stdout = run_child(argv, url)
    summary = json.loads(stdout)
    return seconds - summary["build_seconds"], cpu - summary["build_cpu"], summary


def baseline(spec: str) -> None:
    """The baseline process: ``Ingestion.track()`` for the events, then flush and close."""
    prefix, count, stamp, shape, outbox = json.loads(spec)
    started, cpu = time.perf_counter(), time.process_time()
    calls = []
    for event in events(prefix, count, datetime.fromisoformat(stamp)):
        if shape == "csv":
            event = as_csv_event(event)
        moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        calls.append(
            (
                event["customer_id"],
                event["event_name"],
                event["metadata"],
                event["event_id"],
                moment,
            )
        )
    build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu

    from dodo_ingest import Ingestion

    with Ingestion(outbox=outbox or None) as ingestion:
        for customer_id, event_name, metadata, event_id, moment in calls:
            ingestion.track(customer_id, event_name, metadata, event_id=event_id, timestamp=moment)
        ingestion.flush(300)
    stats = ingestion.stats
    summary = {
        "build_seconds": build_seconds,
        "build_cpu": build_cpu,
        "delivered": stats.delivered,
        "new": stats.ingested,
        "dead_lettered": stats.dead_lettered,
        "dropped": stats.dropped,
        "unsettled": stats.queued,
    }
    print(json.dumps(summary))


def check(summary: dict[str, Any], count: int, new: int) -> None:
    """The summary must be exact."""
    expected = {
        "delivered": count,
        "new": new,
        "dead_lettered": 0,
        "dropped": 0,
        "unsettled": 0,
    }
    if "events_read" in summary:  # send's summary says more
        expected.update(ok=True, events_read=count, duplicates_ignored=count - new)
    got = {key: summary[key] for key in expected}
    if got != expected:
        raise AssertionError(f"inexact summary: {got} != {expected}")


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def compare(count: int, runs: int, folder: Path) -> None:
    """Each scenario against its baseline, ``runs`` times; print the medians."""
    results: dict[str, dict[str, list[float]]] = {}
    loads = [load()]
    for run in range(runs):
        # Timestamps are taken when the files are written: write them per run, so that a
        # long benchmark never nears the API's one-hour window.
        stamp = datetime.now(UTC)
        jsonl = write_jsonl(folder / f"usage-{run}.jsonl", f"r{run}", count, stamp)
        outboxed = write_jsonl(folder / f"outbox-{run}.jsonl", f"o{run}", count, stamp)
        as_csv = write_csv(folder / f"usage-{run}.csv", f"c{run}", count, stamp)
        db = str(folder / f"{run}.db")
        base_db = str(folder / f"{run}-baseline.db")
        scenarios = [
            # label, send's arguments, baseline's ids, shape and outbox, new events
            ("jsonl", [str(jsonl)], (f"b{run}", "jsonl", ""), count),
            ("jsonl replay", [str(jsonl)], (f"b{run}", "jsonl", ""), 0),
            (
                "jsonl --outbox",
                [str(outboxed), "--outbox", db],
                (f"bo{run}", "jsonl", base_db),
                count,
            ),
            ("csv", [str(as_csv), *CSV_ARGS], (f"bc{run}", "csv", ""), count),
        ]
        with dev_server() as url:
            for label, args, (prefix, shape, outbox), new in scenarios:
                # Alternate which goes first, so that neither always meets a warmer server.
                order = ["send", "baseline"] if run % 2 else ["baseline", "send"]
                measured: dict[str, tuple[float, float]] = {}
                for which in order:
                    if which == "send":
                        seconds, cpu, _, summary = send(url, *args)
                    else:
                        seconds, cpu, summary = track(url, prefix, count, stamp, shape, outbox)
                    check(summary, count, new)
                    measured[which] = (seconds, cpu)
                row = results.setdefault(label, {})
                for which, (seconds, cpu) in measured.items():
                    row.setdefault(f"{which} s", []).append(seconds)
                    row.setdefault(f"{which} cpu", []).append(cpu / count * 1e6)
                ratio = measured["baseline"][0] / measured["send"][0]
                row.setdefault("ratio", []).append(ratio)
                row.setdefault("cpu ratio", []).append(
                    measured["baseline"][1] / measured["send"][1]
                )
                print(
                    f"run {run + 1} {label:<15} send {measured['send'][0]:6.2f} s  "
                    f"Ingestion {measured['baseline'][0]:6.2f} s  ratio {ratio:4.2f}  "
                    "(both summaries exact)",
                    flush=True,
                )
        loads.append(load())
    print()
    print(f"{count:,} events, median of {runs} run(s), range in brackets")
    print(f"load average (1, 5, 15 min) before and after each run: {' | '.join(loads)}")
    print(
        f"{'scenario':<15} {'send events/s':>24} {'Ingestion events/s':>24} "
        f"{'ratio':>16} {'CPU us/event':>13} {'CPU ratio':>9}"
    )
    for label, row in results.items():
        send_rate = [count / s for s in row["send s"]]
        base_rate = [count / s for s in row["baseline s"]]
        print(
            f"{label:<15} {statistics.median(send_rate):>9,.0f} "
            f"({min(send_rate):>6,.0f}-{max(send_rate):>6,.0f}) "
            f"{statistics.median(base_rate):>9,.0f} "
            f"({min(base_rate):>6,.0f}-{max(base_rate):>6,.0f}) "
            f"{statistics.median(row['ratio']):>5.2f} ({spread(row['ratio'])}) "
            f"{statistics.median(row['send cpu']):>5.1f} / "
            f"{statistics.median(row['baseline cpu']):.1f} "
            f"{statistics.median(row['cpu ratio']):>9.2f}"
        )
    print(
        "ratio: send's events/s over Ingestion's, per run; CPU us/event: send / Ingestion, "
        "per process, start-up included; CPU ratio: Ingestion's CPU over send's, per run"
    )


def memory(lines: int, folder: Path) -> None:
    """Peak RSS of ``send`` for ``lines`` and ``10 * lines`` lines, to a counting sink."""
    print(f"\npeak RSS of dodo-ingest send, to a sink that only counts (load {load()})")
    with counting_sink() as url:
        for count in (lines, 10 * lines):
            file = write_jsonl(folder / f"big-{count}.jsonl", f"m{count}", count, datetime.now(UTC))
            size = file.stat().st_size
            seconds, _, rss, summary = send(url, str(file), "--batch-size", "1000")
            check(summary, count, count)
            file.unlink()
            print(
                f"{count:>11,} lines ({size / 2**20:,.0f} MiB): peak RSS {rss / 1024:6.1f} MiB, "
                f"{seconds:6.1f} s, {count / seconds:,.0f} events/s (summary exact)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--memory-lines", type=int, default=0, help="also send N and 10*N lines (0: no)"
    )
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.baseline:
        baseline(options.baseline)
        return
    warm_up()
    with tempfile.TemporaryDirectory() as tmp:
        if options.runs:
            compare(options.events, options.runs, Path(tmp))
        if options.memory_lines:
            memory(options.memory_lines, Path(tmp))


if __name__ == "__main__":
    main()
