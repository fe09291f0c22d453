"""Fleet delivery on Redis Streams against the in-process pipeline, measured in one run.

Starts two ``redis-server`` processes on 127.0.0.1 (AOF on, ``appendfsync everysec`` and
``appendfsync always``, each in a temporary folder) and the minimal HTTP sink of
``delivery_throughput.py`` (its own process, answers ``{"ingested_count": n}``), then runs,
interleaved (the order within each group rotates from run to run), ``--runs`` times:

1. ``track()`` latency (p50, p99, mean per call) of one producer thread, ``--latency-events``
   calls, with the memory queue, a SQLite outbox, and a Redis producer (``deliver=False``) on
   each Redis server (a quarter as many calls on ``always``); the ratio Redis/memory is taken
   within each run.
2. Redis producer throughput (events/s) from 1 and from 4 threads sharing one ``Ingestion``
   (concurrent calls are written in one pipelined round trip), on both servers.
3. Draining ``--events`` events: 1 and 2 relays (``Relay`` in separate processes) emptying a
   pre-filled stream (one copy per run of a stream filled once), against the in-process
   pipeline sending as many events queued in memory (its sender held until all are queued).
   Relay throughput counts from the first read of the stream (seen from outside: entries
   pending in the group, or fewer in the stream); the time from ``go`` to that read (the
   ``Relay`` is built, connects and reads at once, without waiting a ``poll_interval``) is
   printed apart.
4. End to end, ``--e2e-events`` events from the first ``track()`` until every event was
   acknowledged by the sink: one process with the memory queue, and 1 or 2 producer
   processes with one relay process running at the same time; when the last producer
   process was done (its ``track()`` calls, ``flush()`` into Redis and ``close()``) is
   printed apart.

Relays and end-to-end runs use the ``everysec`` server. Producers and relays are processes
that import and connect before the clock starts. Each figure is the median of the runs with
the min-max range; a busy machine only ever makes a run slower. The Redis servers, workers,
sink and temporary folders are removed at the end, on Ctrl-C and on SIGTERM.

    .venv/bin/python benchmarks/fleet_throughput.py [--events 100000] [--runs 3]
        [--latency-events 20000] [--e2e-events 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

API_KEY = "sk_bench_0123456789abcdef"
METADATA = {"endpoint": "/v1/items", "bytes": 512}
SINK_SCRIPT = Path(__file__).with_name("delivery_throughput.py")
WORKER_TIMEOUT = 300.0
"""Longest wait for one line from a worker process (it is killed after)."""
POLL = 0.002
"""How often the orchestrator looks at the stream while relays drain it (seconds)."""


def _percentiles(samples: list[int]) -> dict[str, float]:
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": sum(samples) / len(samples) / 1000,
    }


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


# --- Redis servers --------------------------------------------------------------------------


# --- one-shot scenarios (each in a fresh process) -------------------------------------------


def _redis_producer(redis_url: str, stream: str) -> tuple[Any, Any]:
    from dodo_ingest.delivery import Ingestion, RedisOutbox

    outbox = RedisOutbox(redis_url, stream=stream)
    ingestion = Ingestion(outbox=outbox, deliver=False, event_name="api.request")
    return ingestion, outbox


def scenario_latency(args: argparse.Namespace) -> dict[str, Any]:
    """``track()`` latency of one thread: memory queue, SQLite outbox or Redis producer."""
    from dodo_ingest.delivery import Ingestion

    calibration = _calibration_us()
    with tempfile.TemporaryDirectory(prefix="latency-", dir=args.tmp) as tmp:
        outbox = None
        if args.kind == "redis":
            ingestion, outbox = _redis_producer(args.redis, args.stream)
        else:
            ingestion = Ingestion(
                api_key=API_KEY,
                base_url=args.url,
                event_name="api.request",
                max_queue_size=max(100_000, args.events),
                outbox=os.path.join(tmp, "outbox.db") if args.kind == "sqlite" else None,
            )
        ingestion.track("cus_warmup")
        track = ingestion.track
        clock = time.perf_counter_ns
        samples = []
        for _ in range(args.events):
            before = clock()
            track("cus_123", metadata=METADATA)
            samples.append(clock() - before)
        assert ingestion.flush(120)
        dropped = ingestion.stats.dropped
        ingestion.close()
        spilled = outbox.spilled_total if outbox is not None else 0
        if outbox is not None:
            outbox.close()
    return {**_percentiles(samples), "dropped": dropped, "spilled": spilled,
            "json_dumps_us": calibration}  # fmt: skip


def scenario_threads(args: argparse.Namespace) -> dict[str, Any]:
    """Redis producer throughput with ``--threads`` threads calling ``track()`` at once."""
    ingestion, outbox = _redis_producer(args.redis, args.stream)
    ingestion.track("cus_warmup")
    per_thread = args.events // args.threads
    barrier = threading.Barrier(args.threads + 1)

    def produce() -> None:
        track = ingestion.track
        barrier.wait()
        for _ in range(per_thread):
            track("cus_123", metadata=METADATA)

    threads = [threading.Thread(target=produce) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join(WORKER_TIMEOUT)
    elapsed = time.perf_counter() - start
    assert not any(thread.is_alive() for thread in threads)
    dropped = ingestion.stats.dropped
    ingestion.close()
    outbox.close()
    return {
        "events_per_s": per_thread * args.threads / elapsed,
        "dropped": dropped,
        "spilled": outbox.spilled_total,
    }


def scenario_inprocess_drain(args: argparse.Namespace) -> dict[str, Any]:
    """The memory pipeline sending ``--events`` events queued before its sender may send."""
    from dodo_ingest import DodoClient
    from dodo_ingest.delivery import ClientTransport, Ingestion

    gate = threading.Event()

    class HeldTransport:
        """The default transport, whose first request waits for ``gate``."""

        def __init__(self) -> None:
            client = DodoClient(api_key=API_KEY, base_url=args.url, max_retries=0)
            self.inner = ClientTransport(client, owns_client=True)

        def send(self, body: bytes) -> int:
            gate.wait(WORKER_TIMEOUT)
            return self.inner.send(body)

        def close(self) -> None:
            self.inner.close()

    ingestion = Ingestion(
        api_key=API_KEY,
        event_name="api.request",
        batch_size=1000,
        max_queue_size=max(100_000, args.events),
        transport=HeldTransport(),
    )
    for _ in range(args.events):
        ingestion.track("cus_123", metadata=METADATA)
    start = time.perf_counter()
    gate.set()
    assert ingestion.flush(120)
    elapsed = time.perf_counter() - start
    stats = ingestion.stats
    ingestion.close()
    assert stats.delivered == args.events, stats
    return {"events_per_s": args.events / elapsed, "seconds": elapsed}


def scenario_inprocess_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """One process, memory queue: first ``track()`` to ``flush()`` returning."""
    from dodo_ingest.delivery import Ingestion

    ingestion = Ingestion(
        api_key=API_KEY,
        base_url=args.url,
        event_name="api.request",
        batch_size=1000,
        max_queue_size=max(100_000, args.events),
    )
    ingestion.track("cus_warmup")
    assert ingestion.flush(10)
    track = ingestion.track
    start = time.perf_counter()
    for _ in range(args.events):
        track("cus_123", metadata=METADATA)
    assert ingestion.flush(120)
    elapsed = time.perf_counter() - start
    stats = ingestion.stats
    ingestion.close()
    assert stats.delivered - 1 == args.events, stats
    return {"events_per_s": args.events / elapsed, "seconds": elapsed}


SCENARIOS = {
    "latency": scenario_latency,
    "threads": scenario_threads,
    "inprocess-drain": scenario_inprocess_drain,
    "inprocess-e2e": scenario_inprocess_e2e,
}


# --- long-lived workers (producers and relays that start on a signal) -----------------------


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def worker_producer(args: argparse.Namespace) -> None:
    """Import and connect, say ``ready``; on ``go`` track ``--events`` events, then report."""
    ingestion, outbox = _redis_producer(args.redis, args.stream)
    _say("ready")
    sys.stdin.readline()
    track = ingestion.track
    start = time.perf_counter()
    for _ in range(args.events):
        track("cus_123", metadata=METADATA)
    elapsed = time.perf_counter() - start
    assert ingestion.flush(120)
    dropped = ingestion.stats.dropped
    ingestion.close()
    outbox.close()
    _say(json.dumps({"tracked_s": elapsed, "dropped": dropped, "spilled": outbox.spilled_total}))


def worker_relay(args: argparse.Namespace) -> None:
    """Import and warm up, say ``ready``; on ``go`` start a ``Relay`` (says ``started``); on
    ``stop`` close it and report its counters."""
    from dodo_ingest import DodoClient
    from dodo_ingest.delivery import Relay

    DodoClient(api_key=API_KEY, base_url=args.url).close()  # the HTTP stack's first-use cost
    _say("ready")
    sys.stdin.readline()
    start = time.perf_counter()
    relay = Relay(
        f"{args.redis}?stream={args.stream}", api_key=API_KEY, base_url=args.url, batch_size=1000
    )
    _say(f"started {time.perf_counter() - start:.6f}")
    sys.stdin.readline()
    stats = relay.stats
    relay.close()
    _say(json.dumps({"delivered": stats.delivered, "received": stats.received,
                     "dead_lettered": stats.dead_lettered}))  # fmt: skip


WORKERS = {"producer": worker_producer, "relay": worker_relay}


class Worker:
    """A worker process driven line by line over its stdin and stdout."""

    def __init__(self, argv: list[str], errors: Path) -> None:
        self.errors = errors
        with errors.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, __file__, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        assert self.process.stdout is not None
        self.fd = self.process.stdout.fileno()
        self.buffer = b""

    def ready(self, timeout: float = 0.0) -> bool:
        """True when a whole line waits (reading what arrived within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.fd], [], [], max(0.0, left))
            if not readable:
                return False
            chunk = os.read(self.fd, 65536)
            if not chunk:
                tail = self.errors.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"a worker exited early:\n{tail}")
            self.buffer += chunk
        return True

    def line(self, timeout: float = WORKER_TIMEOUT) -> str:
        if not self.ready(timeout):
            raise TimeoutError(f"no answer from a worker in {timeout:g} s")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


# --- the orchestrator ------------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, sink_url: str, everysec: Any, always: Any):
        self.root = root
        self.url = sink_url
        self.servers = {"everysec": everysec, "always": always}
        self.clients = {name: server.client() for name, server in self.servers.items()}
        self.workers: list[Worker] = []
        self.count = 0

    def oneshot(self, scenario: str, events: int, **extra: Any) -> dict[str, Any]:
        argv = [sys.executable, __file__, "--scenario", scenario, "--url", self.url]
        argv += ["--events", str(events), "--tmp", str(self.root)]
        for key, value in extra.items():
            argv += [f"--{key}", str(value)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
        if done.returncode:
            raise RuntimeError(f"{scenario} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.splitlines()[-1])

    def stream(self) -> str:
        self.count += 1
        return f"bench-{self.count}"

    def forget(self, server: str, stream: str) -> None:
        """Delete a stream (best effort: on Ctrl-C, Redis may be gone already)."""
        import redis

        with contextlib.suppress(redis.RedisError):
            self.clients[server].delete(stream, f"{stream}:dead")

    def worker(self, role: str, server: str, stream: str, events: int = 0) -> Worker:
        self.count += 1
        argv = ["--worker", role, "--url", self.url, "--redis", self.servers[server].url]
        argv += ["--stream", stream, "--events", str(events)]
        worker = Worker(argv, self.root / f"worker-{self.count}.err")
        self.workers.append(worker)
        return worker

    def finish(self, workers: list[Worker]) -> None:
        for worker in workers:
            worker.kill()
            self.workers.remove(worker)

    # scenarios --------------------------------------------------------------------------

    def latency(self, kind: str, server: str, events: int) -> dict[str, Any]:
        if kind != "redis":
            return self.oneshot("latency", events, kind=kind)
        stream = self.stream()
        try:
            return self.oneshot(
                "latency", events, kind=kind, redis=self.servers[server].url, stream=stream
            )
        finally:
            self.forget(server, stream)

    def threads(self, server: str, threads: int, events: int) -> dict[str, Any]:
        stream = self.stream()
        try:
            return self.oneshot(
                "threads", events, threads=threads, redis=self.servers[server].url, stream=stream
            )
        finally:
            self.forget(server, stream)

    def fill_template(self, events: int) -> str:
        """Fill a stream once with ``events`` events (two producer processes), copied (``COPY``)
        before each drain."""
        template = "bench-template"
        half = events // 2
        producers = [
            self.worker("producer", "everysec", template, count) for count in (half, events - half)
        ]
        try:
            for producer in producers:
                producer.line()
            for producer in producers:
                producer.send("go")
            results = [json.loads(producer.line()) for producer in producers]
        finally:
            self.finish(producers)
        assert all(result["dropped"] == 0 for result in results), results
        assert self.clients["everysec"].xlen(template) == events
        return template

    def drain(self, template: str, relays: int, events: int) -> dict[str, Any]:
        """``relays`` relay processes emptying a copy of the template stream."""
        client = self.clients["everysec"]
        stream = self.stream()
        client.copy(template, stream, replace=True)
        workers = [self.worker("relay", "everysec", stream) for _ in range(relays)]
        try:
            for worker in workers:
                worker.line()
            go = time.perf_counter()
            for worker in workers:
                worker.send("go")
            first_read = end = None
            deadline = time.monotonic() + WORKER_TIMEOUT
            while time.monotonic() < deadline:
                if first_read is None:
                    pipe = client.pipeline(transaction=False)
                    pipe.xlen(stream)
                    pipe.xinfo_groups(stream)
                    length, groups = pipe.execute()
                    held = sum(int(group["pending"]) for group in groups)
                    if held or length < events:  # a relay has read (or settled) entries
                        first_read = time.perf_counter()
                else:
                    length = client.xlen(stream)
                if length == 0:
                    end = time.perf_counter()
                    break
                time.sleep(POLL)
            assert first_read is not None and end is not None, "the relays did not drain"
            starts = [float(worker.line().split()[1]) for worker in workers]
            for worker in workers:
                worker.send("stop")
            results = [json.loads(worker.line()) for worker in workers]
        finally:
            self.finish(workers)
            self.forget("everysec", stream)
        delivered = sum(result["delivered"] for result in results)
        assert delivered == events, results
        return {
            "events_per_s": events / (end - first_read),
            "seconds": end - first_read,
            "first_read_s": first_read - go,
            "relay_start_s": max(starts),
            "share": [round(result["delivered"] / events, 3) for result in results],
        }

    def e2e(self, producers: int, events: int) -> dict[str, Any]:
        """``producers`` producer processes and one relay at the same time."""
        client = self.clients["everysec"]
        stream = self.stream()
        relay = self.worker("relay", "everysec", stream)
        makers = [
            self.worker("producer", "everysec", stream, events // producers)
            for _ in range(producers)
        ]
        try:
            for worker in (relay, *makers):
                worker.line()
            relay.send("go")
            relay.line()
            start = time.perf_counter()
            for worker in makers:
                worker.send("go")
            reports: dict[int, dict[str, Any]] = {}
            end = None
            deadline = time.monotonic() + WORKER_TIMEOUT
            while time.monotonic() < deadline:
                for index, worker in enumerate(makers):
                    if index not in reports and worker.ready():
                        reports[index] = json.loads(worker.line())
                        reports[index]["done_s"] = time.perf_counter() - start
                if len(reports) == producers and client.xlen(stream) == 0:
                    end = time.perf_counter()
                    break
                time.sleep(POLL)
            assert end is not None, "not delivered in time"
            relay.send("stop")
            result = json.loads(relay.line())
        finally:
            self.finish([relay, *makers])
            self.forget("everysec", stream)
        total = events // producers * producers
        assert result["delivered"] == total, result
        assert all(report["dropped"] == 0 for report in reports.values()), reports
        return {
            "events_per_s": total / (end - start),
            "seconds": end - start,
            "tracked_s": max(report["done_s"] for report in reports.values()),
            "spilled": sum(report["spilled"] for report in reports.values()),
        }

    def close(self) -> None:
        for worker in list(self.workers):
            worker.kill()
        for client in self.clients.values():
            client.close()


def _rotate(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def run(args: argparse.Namespace, bench: Bench) -> dict[str, list[dict[str, Any]]]:
    n = args.events
    lat = args.latency_events
    lat_always = max(100, lat // 4)
    thr = lat
    thr_always = lat_always
    e2e = args.e2e_events
    results: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, result: dict[str, Any]) -> None:
        results.setdefault(name, []).append(result)
        print(f"  {name}: {json.dumps(result)}", file=sys.stderr, flush=True)

    template = bench.fill_template(n)
    for index in range(args.runs):
        print(f"run {index + 1}/{args.runs}", file=sys.stderr, flush=True)
        groups = [
            [
                ("latency_memory", lambda: bench.latency("memory", "", lat)),
                ("latency_sqlite", lambda: bench.latency("sqlite", "", lat)),
                ("latency_redis_everysec", lambda: bench.latency("redis", "everysec", lat)),
                ("latency_redis_always", lambda: bench.latency("redis", "always", lat_always)),
            ],
            [
                ("threads1_everysec", lambda: bench.threads("everysec", 1, thr)),
                ("threads4_everysec", lambda: bench.threads("everysec", 4, thr)),
                ("threads1_always", lambda: bench.threads("always", 1, thr_always)),
                ("threads4_always", lambda: bench.threads("always", 4, thr_always)),
            ],
            [
                ("drain_inprocess", lambda: bench.oneshot("inprocess-drain", n)),
                ("drain_relay1", lambda: bench.drain(template, 1, n)),
                ("drain_relay2", lambda: bench.drain(template, 2, n)),
            ],
            [
                ("e2e_inprocess", lambda: bench.oneshot("inprocess-e2e", e2e)),
                ("e2e_producer1_relay1", lambda: bench.e2e(1, e2e)),
                ("e2e_producer2_relay1", lambda: bench.e2e(2, e2e)),
            ],
        ]
        for group in groups:
            for name, scenario in _rotate(group, index):
                record(name, scenario())
        latency = {name: results[name][-1] for name in results if name.startswith("latency")}
        memory = latency["latency_memory"]
        ratios = {
            f"{name}_{key}": latency[f"latency_redis_{name}"][key] / memory[key]
            for name in ("everysec", "always")
            for key in ("p50_us", "mean_us")
        }
        ratios["threads4_over_threads1_everysec"] = (
            results["threads4_everysec"][-1]["events_per_s"]
            / results["threads1_everysec"][-1]["events_per_s"]
        )
        ratios["threads4_over_threads1_always"] = (
            results["threads4_always"][-1]["events_per_s"]
            / results["threads1_always"][-1]["events_per_s"]
        )
        inprocess = results["drain_inprocess"][-1]["events_per_s"]
        ratios["drain_relay1_over_inprocess"] = (
            results["drain_relay1"][-1]["events_per_s"] / inprocess
        )
        ratios["drain_relay2_over_inprocess"] = (
            results["drain_relay2"][-1]["events_per_s"] / inprocess
        )
        ratios["drain_relay2_over_relay1"] = (
            results["drain_relay2"][-1]["events_per_s"]
            / results["drain_relay1"][-1]["events_per_s"]
        )
        alone = results["e2e_inprocess"][-1]["events_per_s"]
        for name in ("e2e_producer1_relay1", "e2e_producer2_relay1"):
            ratios[f"{name}_over_inprocess"] = results[name][-1]["events_per_s"] / alone
        record("ratios", ratios)
    return results


def _spread(values: list[float], digits: int) -> str:
    median = statistics.median(values)
    if digits == 0:
        return f"{median:,.0f} ({min(values):,.0f}-{max(values):,.0f})"
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    def values(name: str, key: str) -> list[float]:
        return [run[key] for run in results[name]]

    rows: list[tuple[str, str]] = []
    for name in ("memory", "sqlite", "redis_everysec", "redis_always"):
        for key in ("p50_us", "p99_us", "mean_us"):
            rows.append((f"track {name} {key}", _spread(values(f"latency_{name}", key), 1)))
    for name in ("everysec", "always"):
        for key in ("p50_us", "mean_us"):
            rows.append(
                (f"track redis_{name}/memory {key}", _spread(values("ratios", f"{name}_{key}"), 1))
            )
    for name in ("threads1_everysec", "threads4_everysec", "threads1_always", "threads4_always"):
        rows.append((f"{name} events/s", _spread(values(name, "events_per_s"), 0)))
    for name in ("everysec", "always"):
        key = f"threads4_over_threads1_{name}"
        rows.append((key, _spread(values("ratios", key), 2)))
    for name in ("drain_inprocess", "drain_relay1", "drain_relay2"):
        rows.append((f"{name} events/s", _spread(values(name, "events_per_s"), 0)))
    for name in ("drain_relay1", "drain_relay2"):
        rows.append((f"{name} first read after start s", _spread(values(name, "first_read_s"), 3)))
    for key in ("drain_relay1_over_inprocess", "drain_relay2_over_inprocess"):
        rows.append((key, _spread(values("ratios", key), 2)))
    rows.append(
        ("drain_relay2_over_relay1", _spread(values("ratios", "drain_relay2_over_relay1"), 2))
    )
    for name in ("e2e_inprocess", "e2e_producer1_relay1", "e2e_producer2_relay1"):
        rows.append((f"{name} seconds", _spread(values(name, "seconds"), 2)))
        rows.append((f"{name} events/s", _spread(values(name, "events_per_s"), 0)))
    for name in ("e2e_producer1_relay1", "e2e_producer2_relay1"):
        rows.append((f"{name} producers done s", _spread(values(name, "tracked_s"), 2)))
        key = f"{name}_over_inprocess"
        rows.append((key, _spread(values("ratios", key), 2)))
    rows.append(("json_dumps_one_event_us", _spread(values("latency_memory", "json_dumps_us"), 2)))
    spilled = sum(run.get("spilled", 0) for name in results for run in results[name])
    dropped = sum(run.get("dropped", 0) for name in results for run in results[name])
    rows.append(("spilled / dropped (all runs)", f"{spilled} / {dropped}"))

    print(
        f"events {args.events} (drain), {args.e2e_events} (end to end), latency and thread"
        f" samples {args.latency_events} (always: {max(100, args.latency_events // 4)}),"
        f" runs {args.runs},"
        f" cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}; median (min-max)"
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({"events": args.events, "e2e_events": args.e2e_events, "runs": args.runs,
                      "every_run": results}))  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--latency-events", type=int, default=20_000)
    parser.add_argument("--e2e-events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    for hidden in ("--scenario", "--worker", "--url", "--redis", "--stream", "--kind", "--tmp"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(SCENARIOS[args.scenario](args)))
        return
    if args.worker:
        WORKERS[args.worker](args)
        return
    if min(args.events, args.e2e_events) < 1000 or args.latency_events < 400 or args.runs < 1:
        parser.error("--events and --e2e-events >= 1000, --latency-events >= 400, --runs >= 1")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests._redis import RedisServer  # the test suite's launcher: AOF on, 127.0.0.1

    root = Path(tempfile.mkdtemp(prefix="dodo-fleet-bench-"))
    servers: list[RedisServer] = []
    sink = bench = None
    started = time.monotonic()
    try:
        sink = subprocess.Popen(
            [sys.executable, str(SINK_SCRIPT), "--sink"], stdout=subprocess.PIPE, text=True
        )
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        for fsync in ("everysec", "always"):
            servers.append(RedisServer(appendfsync=fsync))
            servers[-1].start()
        bench = Bench(root, url, *servers)
        results = run(args, bench)
    finally:
        if bench is not None:
            bench.close()
        for server in servers:
            server.cleanup()
        if sink is not None:
            sink.kill()
            sink.wait()
        shutil.rmtree(root, ignore_errors=True)
    print(f"total {time.monotonic() - started:.0f} s", file=sys.stderr)
    report(args, results)


if __name__ == "__main__":
    main()
