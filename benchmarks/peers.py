"""``Ingestion`` against posthog-python and segment-analytics-python in one harness.

Each client runs in a fresh process and sends ``--events`` small events (default 100,000) to
the same loopback sink, then flushes; the sink (its own process) counts the events that
arrive (every format names the event once: ``"api.request"``), so "delivered" is what the
sink saw, not what a client believes. Reported per client: delivered events per second
(first ``track`` to the end of the flush; imports and construction are not timed), CPU
microseconds per delivered event (the whole producer process: caller and sender threads),
and delivered/sent. Runs are interleaved
(ours, posthog, segment, ours, ...) and medians printed with their range, then our ratio to
each peer. Two peer configurations: their defaults (which drop events when the queue fills)
and tuned (queue of 200,000, batches of 1,000: nothing dropped).

The peers are pinned in ``benchmarks/requirements-peers.txt`` (not a dependency of the
project): ``pip install -r benchmarks/requirements-peers.txt``.
Usage: ``python benchmarks/peers.py [--events 100000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

API_KEY = "sk_test_benchmark_peers_0123456789"
METADATA = {"endpoint": "/v1/items", "bytes": 512}
MARKER = b'"api.request"'


# --- the sink (its own process) ----------------------------------------------------------


async def _serve(listener: socket.socket) -> None:
    received = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, zipped = 0, False
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    elif name.strip().lower() == b"content-encoding":
                        zipped = b"gzip" in value.lower()
                body = await reader.readexactly(length)
                if head.startswith(b"GET /count"):
                    payload = b'{"received":%d}' % received
                else:
                    count = (gzip.decompress(body) if zipped else body).count(MARKER)
                    received += count
                    payload = b'{"ingested_count":%d,"status":"Ok"}' % count
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, sock=listener)
    async with server:
        await server.serve_forever()


def run_sink() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    asyncio.run(_serve(listener))


def received(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/count", timeout=30) as answer:
        return int(json.loads(answer.read())["received"])


# --- one client per process ----------------------------------------------------------------


def _ours(base_url: str, events: int) -> Callable[[], None]:
    from dodo_ingest.delivery import Ingestion

    ingestion = Ingestion(
        api_key=API_KEY, base_url=base_url, event_name="api.request", max_queue_size=events + 1
    )

    def send() -> None:
        for _ in range(events):
            ingestion.track("cus_123", metadata=METADATA)
        assert ingestion.flush(300)
        ingestion.close()

    return send


def _posthog(base_url: str, events: int, tuned: bool) -> Callable[[], None]:
    from posthog import Posthog

    settings: dict[str, Any] = {"max_queue_size": 200_000, "flush_at": 1000} if tuned else {}
    client = Posthog("phc_benchmark", host=base_url, gzip=False, **settings)

    def send() -> None:
        for _ in range(events):
            client.capture("api.request", distinct_id="cus_123", properties=METADATA)
        client.flush()
        client.shutdown()

    return send


def _segment(base_url: str, events: int, tuned: bool) -> Callable[[], None]:
    from segment.analytics import Client

    settings: dict[str, Any] = {"max_queue_size": 200_000, "upload_size": 1000} if tuned else {}
    client = Client("benchmark", host=base_url, gzip=False, **settings)

    def send() -> None:
        for _ in range(events):
            client.track(user_id="cus_123", event="api.request", properties=METADATA)
        client.flush()
        client.shutdown()

    return send


CLIENTS: dict[str, Callable[[str, int], Callable[[], None]]] = {
    "dodo-ingest": lambda url, n: _ours(url, n),
    "posthog (defaults)": lambda url, n: _posthog(url, n, tuned=False),
    "posthog (tuned)": lambda url, n: _posthog(url, n, tuned=True),
    "segment (defaults)": lambda url, n: _segment(url, n, tuned=False),
    "segment (tuned)": lambda url, n: _segment(url, n, tuned=True),
}


def run_client(name: str, base_url: str, events: int) -> None:
    """In the producer process: build the client (imports included), then time sending and
    flushing; print wall and CPU seconds as JSON."""
    import logging

    logging.disable(logging.CRITICAL)  # the peers log every drop
    send = CLIENTS[name](base_url, events)
    wall, cpu = time.perf_counter(), time.process_time()
    send()
    print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))


def measure(name: str, base_url: str, events: int) -> dict[str, float]:
    before = received(base_url)
    done = subprocess.run(
        [sys.executable, __file__, "--client", name, "--url", base_url, "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 10  # a peer may return before its last request landed
    delivered = received(base_url) - before
    while delivered < events and time.monotonic() < deadline:
        time.sleep(0.1)
        delivered = received(base_url) - before
    return {
        "events_per_s": delivered / timing["wall"],
        "cpu_us_per_event": timing["cpu"] / max(delivered, 1) * 1e6,
        "delivered_share": delivered / events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    if args.client:
        run_client(args.client, args.url, args.events)
        return

    sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{sink.stdout.readline().strip()}"
        results: dict[str, list[dict[str, float]]] = {name: [] for name in CLIENTS}
        for _ in range(args.runs):
            for name in CLIENTS:
                results[name].append(measure(name, url, args.events))
    finally:
        sink.kill()
        sink.wait()

    def summary(name: str, key: str) -> tuple[float, float, float]:
        values = [run[key] for run in results[name]]
        return statistics.median(values), min(values), max(values)

    print(f"{args.events:,} events per run, {args.runs} interleaved runs; median (min-max)")
    for name in CLIENTS:
        rate, low, high = summary(name, "events_per_s")
        cpu = summary(name, "cpu_us_per_event")
        share = summary(name, "delivered_share")
        print(
            f"  {name:20s} {rate:9,.0f} ev/s ({low:,.0f}-{high:,.0f})  "
            f"{cpu[0]:6.1f} us CPU/event ({cpu[1]:.1f}-{cpu[2]:.1f})  "
            f"delivered {share[0]:.1%} (min {share[1]:.1%})"
        )
    ours = summary("dodo-ingest", "events_per_s")[0]
    our_cpu = summary("dodo-ingest", "cpu_us_per_event")[0]
    for name in CLIENTS:
        if name != "dodo-ingest":
            print(
                f"  dodo-ingest vs {name:20s} {ours / summary(name, 'events_per_s')[0]:5.1f}x "
                f"the rate, {summary(name, 'cpu_us_per_event')[0] / our_cpu:5.1f}x less CPU "
                "per delivered event"
            )


if __name__ == "__main__":
    main()
