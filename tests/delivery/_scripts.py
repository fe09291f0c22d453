"""Producer programs the lifecycle tests run as real subprocesses."""

from __future__ import annotations

import contextlib
import itertools
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

HEADER = """
import json, os, sys, time
from dodo_ingest.delivery import Ingestion
API_KEY = "sk_test_SECRET_delivery_key_0123456789"
BASE_URL = sys.argv[1]
OUTBOX = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
"""


def run(
    tmp_path: Path, body: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``HEADER + body`` with ``args`` in a fresh interpreter; return the finished process."""
    script = write(tmp_path, body)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(tmp_path: Path, body: str) -> Path:
    """Write ``HEADER + body`` to a script file and return its path."""
    script = tmp_path / f"producer_{abs(hash(body))}.py"
    if not script.exists():  # never rewritten: a child started before may still be reading it
        script.write_text(HEADER + textwrap.dedent(body))
    return script


_CHILDREN = itertools.count()


class Child:
    """``HEADER + body`` running in a child process, talked to line by line.

    Its stdout lines are collected as they come (a reader thread), so :meth:`expect` waits for
    a line with a deadline instead of blocking on the pipe; its stderr goes to a file, quoted
    when an expected line does not come.
    """

    def __init__(self, tmp_path: Path, body: str, *args: str) -> None:
        script = write(tmp_path, body)
        self._stderr_path = tmp_path / f"{script.stem}_{next(_CHILDREN)}.stderr"
        self._stderr = self._stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        """Every line read so far, without its newline."""
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout: float = 30) -> tuple[str, list[str]]:
        """Wait for a line starting with ``prefix``; return it and the lines before it."""
        deadline = time.monotonic() + timeout
        before: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    self._failure(f"no {prefix!r} line in {timeout:g} s")
                ) from None
            if line is None:
                self._queue.put(None)
                raise AssertionError(self._failure(f"the child ended before a {prefix!r} line"))
            self.lines.append(line)
            if line.startswith(prefix):
                return line, before
            before.append(line)

    def send(self, line: str) -> None:
        """Write ``line`` to the child's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """``kill -9`` the child and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def _failure(self, what: str) -> str:
        self._stderr.flush()
        return f"{what}; stderr:\n{self._stderr_path.read_text()[-4000:]}"

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()
        self._reader.join(5)  # the pipe ended with the child
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()
