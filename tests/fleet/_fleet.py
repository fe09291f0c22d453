"""Helpers of the fleet tests: producer and relay processes, and what the stream shows.

Every wait polls observable state (a process's output lines, the stream's consumer group)
with a deadline; nothing waits a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

API_KEY = "sk_test_fleet_0123456789"
GROUP = "dodo-relays"
FAULTS = "5xx=0.1,429=0.05,reset=0.05,lost_ack=0.05"
"""A quarter of the ingest requests misbehave (stored or not, answered or not)."""

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], what: str, timeout: float = 20.0) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail after
    ``timeout`` seconds naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


# --- the stream, as Redis shows it -----------------------------------------------------------


def held(client: Any, stream: str, group: str = GROUP) -> dict[str, int]:
    """Entries each consumer of the group holds (read, not settled), by consumer name."""
    return {
        _text(info["name"]): int(info["pending"]) for info in client.xinfo_consumers(stream, group)
    }


def held_ids(client: Any, stream: str, consumer: str, group: str = GROUP) -> list[str]:
    """The ids of the stream entries ``consumer`` holds."""
    entries = client.xpending_range(stream, group, "-", "+", 100_000, consumername=consumer)
    return [_text(entry["message_id"]) for entry in entries]


def pending_ids(client: Any, stream: str, group: str = GROUP) -> set[str]:
    """The ids of every stream entry held by some consumer of the group."""
    entries = client.xpending_range(stream, group, "-", "+", 1_000_000)
    return {_text(entry["message_id"]) for entry in entries}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def stream_body(event_id: str, customer_id: str = "cus_1", **metadata: Any) -> str:
    """An event as a producer writes it to the stream (the API's JSON, timestamp now)."""
    from datetime import UTC, datetime

    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer_id,
            "event_name": "fleet.call",
            "timestamp": now,
            "metadata": metadata or {"n": 1},
        }
    )


# --- processes ---------------------------------------------------------------------------------


class Process:
    """A child process whose stdout lines are collected as they come (a reader thread), so
    that waiting for a line has a deadline; stderr goes to a file quoted in failures."""

    def __init__(self, argv: Sequence[str], log_dir: Path, label: str) -> None:
        self.label = label
        self._stderr_path = log_dir / f"{label}.stderr"
        self._stderr = self._stderr_path.open("w")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in ("DODO_PAYMENTS_API_KEY", "DODO_PAYMENTS_BASE_URL"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def expect(
        self, match: Callable[[str], bool], what: str, timeout: float = 20.0, start: int = 0
    ) -> tuple[int, str]:
        """Wait for a line (from index ``start`` on) that ``match`` accepts; return its index
        and the line."""
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                while index < len(self.lines):
                    if match(self.lines[index]):
                        return index, self.lines[index]
                    index += 1
                if self._ended:
                    raise AssertionError(self.failure(f"{self.label} ended before {what}"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        self.failure(f"{self.label}: no {what} within {timeout:g} s")
                    )
                self._changed.wait(remaining)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def freeze(self) -> None:
        """SIGSTOP, and wait until the kernel shows the process stopped."""
        os.kill(self.pid, signal.SIGSTOP)
        wait_until(self._stopped, f"{self.label} to stop", timeout=10)

    def _stopped(self) -> bool:
        with open(f"/proc/{self.pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the exit (and the last output line); return the exit code."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            message = self.failure(f"{self.label} did not exit in {timeout:g} s")
            raise AssertionError(message) from None
        self._reader.join(10)
        return code

    def stderr(self) -> str:
        self._stderr.flush()
        return self._stderr_path.read_text()

    def failure(self, what: str) -> str:
        tail = "\n".join(self.lines[-5:])
        return f"{what}\nlast stdout lines:\n{tail}\nstderr:\n{self.stderr()[-3000:]}"

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.kill()
        self._reader.join(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RelayProcess(Process):
    """``dodo-ingest relay URL --json`` in a child process."""

    def __init__(
        self,
        url: str,
        base_url: str,
        log_dir: Path,
        consumer: str,
        *options: str,
        stats_interval: float = 0.2,
        claim_idle: float = 2.0,
    ) -> None:
        argv = [
            sys.executable,
            "-m",
            "dodo_ingest",
            "relay",
            url,
            "--json",
            "--consumer",
            consumer,
            "--stats-interval",
            str(stats_interval),
            "--claim-idle",
            str(claim_idle),
            "--base-url",
            base_url,
            "--api-key",
            API_KEY,
            *options,
        ]
        super().__init__(argv, log_dir, consumer)
        self.name = consumer

    def started(self, timeout: float = 20.0) -> dict[str, Any]:
        """The first line: ``{"relay": ..., "stream": ..., "group": ...}``."""
        _, line = self.expect(lambda text: text.startswith("{"), "its first line", timeout)
        first: dict[str, Any] = json.loads(line)
        return first

    def counters(self) -> list[dict[str, Any]]:
        """Every counters line printed so far."""
        with self._changed:
            lines = list(self.lines)
        return [json.loads(line) for line in lines if line.startswith('{"received"')]

    def latest(self) -> dict[str, Any] | None:
        counters = self.counters()
        return counters[-1] if counters else None

    def wait_counters(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Wait for a counters line that ``predicate`` accepts and return it."""

        def match(line: str) -> bool:
            return line.startswith('{"received"') and predicate(json.loads(line))

        _, line = self.expect(match, what, timeout)
        counters: dict[str, Any] = json.loads(line)
        return counters

    def terminate(self, timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        """SIGTERM; return the exit code and the last counters line."""
        self.process.send_signal(signal.SIGTERM)
        code = self.wait(timeout)
        last = self.latest()
        assert last is not None, self.failure(f"{self.label} printed no counters")
        assert self.lines[-1].startswith('{"received"'), self.failure("the last line")
        return code, last


PRODUCER = """
import json, sys, threading, time
from dodo_ingest import Ingestion
from dodo_ingest.delivery import RedisOutbox

url, name, ids_path = sys.argv[1], sys.argv[2], sys.argv[3]
minimum, maximum, pace = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
stop = threading.Event()


def listen():
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


threading.Thread(target=listen, daemon=True).start()
outbox = RedisOutbox(url, timeout=0.5)
ingestion = Ingestion(outbox=outbox, deliver=False, event_name="fleet.call", flush_interval=0.05)
print("ready", flush=True)
count = 0
with open(ids_path, "w") as ids:
    while count < maximum and (count < minimum or not stop.is_set()):
        ids.write(ingestion.track(f"cus_{name}", metadata={"producer": name, "n": count}) + "\\n")
        count += 1
        if count % 50 == 0:
            time.sleep(pace)  # a steady rate, so that the producers outlast the test's steps
        if count % 250 == 0:
            print("tracked", count, flush=True)
flushed = ingestion.flush(30)
stats = ingestion.stats
ingestion.close()
print("done " + json.dumps({
    "tracked": count, "flushed": flushed, "spilled": outbox.spilled_total,
    "enqueued": stats.enqueued, "dropped": stats.dropped,
}), flush=True)
"""


class ProducerProcess(Process):
    """A process tracking events with ``Ingestion(outbox=url, deliver=False)`` until told to
    stop (and at least ``minimum`` of them, at most ``maximum``), writing each id it got back
    to a file; it pauses ``pace`` seconds every 50 events, prints ``tracked N`` every 250
    events and ``done {...}`` at the end."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        name: str,
        *,
        minimum: int,
        maximum: int,
        pace: float = 0.01,
    ) -> None:
        script = log_dir / "fleet_producer.py"
        if not script.exists():
            script.write_text(textwrap.dedent(PRODUCER))
        self.ids_path = log_dir / f"{name}.ids"
        argv = [
            sys.executable,
            str(script),
            url,
            name,
            str(self.ids_path),
            str(minimum),
            str(maximum),
            str(pace),
        ]
        super().__init__(argv, log_dir, name)

    def tracked(self) -> int:
        """Events tracked, as last reported."""
        with self._changed:
            counts = [int(line.split()[1]) for line in self.lines if line.startswith("tracked ")]
        return counts[-1] if counts else 0

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        """Tell it to stop; return its ``done`` report once it exited with status 0."""
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.send("stop")
        _, line = self.expect(lambda text: text.startswith("done "), "its done line", timeout)
        assert self.wait() == 0, self.failure(f"{self.label} failed")
        report: dict[str, Any] = json.loads(line.removeprefix("done "))
        return report

    def ids(self) -> list[str]:
        return self.ids_path.read_text().split()
