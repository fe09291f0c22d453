"""Throughput of ``meter_stream(...).wrap()`` against raw iteration: 1 GiB in 64 KiB chunks.

Two workloads, each run raw and metered back to back ``--repeat`` times, timed in CPU time
of this process (so waiting for a core on a shared machine does not count). Figures are
medians: the raw time, and the extra time of the metered run over the raw run just before it.

- ``file->devnull``: chunks read from a file-like object (fresh ``bytes`` each, like an HTTP
  body) and written to ``/dev/null``: a stream being forwarded.
- ``memoryview no-op``: a prepared list of zero-copy ``memoryview`` slices and a consumer that
  does nothing, so the wrapper's own per-chunk cost is all there is (worst case).

Each workload is also metered with a partial event every 16 MiB (64 per GiB), in the same
rounds (raw, metered, metered with partials), so that the two metered variants are compared
under the same conditions.

Prints the throughput ratio metered/raw (target >= 0.97) and the added cost per chunk.
Usage: ``python benchmarks/stream_meter.py [--gib 1] [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from dodo_ingest.blueprints.stream import meter_stream

CHUNK = 64 * 1024


class NullSink:
    """Accepts events and drops them (the benchmark measures the meter, not delivery)."""

    def track(
        self, customer_id: str, event_name: Any = None, metadata: Any = None, **_: Any
    ) -> str:
        return "evt"


def file_chunks(buffer: bytes, total: int) -> Iterator[bytes]:
    source = io.BytesIO(buffer)
    for _ in range(total // CHUNK):
        chunk = source.read(CHUNK)
        if len(chunk) < CHUNK:
            source.seek(0)
            chunk = source.read(CHUNK)
        yield chunk


def view_chunks(buffer: bytes, total: int) -> list[memoryview]:
    """Zero-copy ``memoryview`` slices of ``buffer`` (cycled), made before timing starts."""
    view = memoryview(buffer)
    per_buffer = len(buffer) // CHUNK
    return [view[(i % per_buffer) * CHUNK :][:CHUNK] for i in range(total // CHUNK)]


def consume_devnull(chunks: Any, fd: int) -> None:
    write = os.write
    for chunk in chunks:
        write(fd, chunk)


def consume_noop(chunks: Any, fd: int) -> None:
    for _ in chunks:
        pass


def timed(run: Callable[[], None]) -> float:
    """CPU seconds ``run`` took (user + system of this process: time spent waiting for a core
    on a busy machine does not count)."""
    start = time.process_time()
    run()
    return time.process_time() - start


def bench(
    name: str,
    make: Callable[[], Iterator[Any]],
    consume: Callable[[Any, int], None],
    total: int,
    repeat: int,
    fd: int,
    variants: dict[str, dict[str, Any]],
) -> None:
    """Run raw and each metered variant back to back ``repeat`` times (so a drift of the
    machine moves them together); print each variant against the raw run just before it."""
    raw_times: list[float] = []
    metered_times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(repeat):
        raw_times.append(timed(lambda: consume(make(), fd)))
        for label, meter_options in variants.items():
            meter = meter_stream(NullSink(), "cus_bench", **meter_options)

            def metered(meter: Any = meter) -> None:
                with meter:
                    consume(meter.wrap(make()), fd)

            metered_times[label].append(timed(metered))
            assert meter.total == total, (meter.total, total)
    raw = statistics.median(raw_times)
    chunks = total // CHUNK
    gib = total / 2**30
    for label, times in metered_times.items():
        added = statistics.median(m - r for r, m in zip(raw_times, times, strict=True))
        title = f"{name}, {label}" if label else name
        print(
            f"{title:30s} raw {gib / raw:7.2f} GiB/s  metered {gib / (raw + added):7.2f} GiB/s  "
            f"ratio {raw / (raw + added):.3f}  +{added / chunks * 1e9:4.0f} ns/chunk"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="data per run, GiB")
    parser.add_argument("--repeat", type=int, default=15, help="raw/metered pairs per workload")
    args = parser.parse_args()
    total = int(args.gib * 2**30) // CHUNK * CHUNK
    buffer = os.urandom(64 * 2**20)
    print(
        f"{total / 2**30:.2f} GiB per run, {total // CHUNK} chunks of 64 KiB, {args.repeat} pairs"
    )
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        bench(
            "file->devnull",
            lambda: file_chunks(buffer, total),
            consume_devnull,
            total,
            args.repeat,
            fd,
            {"": {}, "partials": {"partial_every_bytes": 16 * 2**20}},
        )
        views = view_chunks(buffer, total)
        bench(
            "memoryview no-op",
            lambda: iter(views),
            consume_noop,
            total,
            args.repeat,
            fd,
            {"": {}, "partials": {"partial_every_bytes": 16 * 2**20}},
        )
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
