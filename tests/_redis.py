"""Start, stop and restart a real ``redis-server`` on 127.0.0.1 for the tests.

Skips locally when ``redis-server`` cannot be found; fails instead when ``CI`` is set (CI
installs it: ``scripts/test.sh``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The path of ``redis-server``; skip (locally) or fail (in CI) when there is none."""
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.path.exists(p)),
        None,
    )
    if found is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"Redis tests must run in CI: {reason}")
        pytest.skip(reason)
    return found


class RedisServer:
    """A ``redis-server`` process with AOF on (``appendfsync always``) in a temporary folder.

    :meth:`stop` shuts it down cleanly (it writes its data), :meth:`kill` with SIGKILL,
    :meth:`start` brings it back on the same port with the same data.
    """

    def __init__(self, *, appendfsync: str = "always") -> None:
        self.binary = redis_server_binary()
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dodo-redis-"))
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (again) and wait until it answers PING with its data loaded."""
        import redis

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--protected-mode",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if self.process.poll() is not None:
                    error = self.process.stderr.read().decode() if self.process.stderr else ""
                    pytest.fail(f"redis-server exited at start: {error[-2000:]}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer within {START_TIMEOUT:g} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM: it flushes the append-only file first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what ``appendfsync`` did not write is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.process = None

    def restart(self) -> None:
        """A clean stop, then a start on the same port with the same data."""
        self.stop()
        self.start()

    def client(self) -> object:
        """A new ``redis.Redis`` client on this server."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def cleanup(self) -> None:
        """Kill the server and remove its folder."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
