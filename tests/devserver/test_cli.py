"""``dodo-ingest dev-server``: the command, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from dodo_ingest import AuthenticationError, DodoClient
from tests.devserver._helpers import events

COMMAND = Path(sys.executable).with_name("dodo-ingest")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dev_server(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Run the command on a free port; yield the process and its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dodo_ingest", "dev-server", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx2.get(f"{url}/_dev/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the dev server did not start: {process.communicate()[1]}")
            time.sleep(0.05)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_the_command_serves_until_signalled(tmp_path: Path, stop_signal: int) -> None:
    db = tmp_path / "dev.db"
    with dev_server("--db", str(db), "--api-key", "sk_test_cli_key_123456") as (process, url):
        with DodoClient(api_key="sk_test_cli_key_123456", base_url=url) as client:
            assert client.events.ingest(events(3)).ingested_count == 3
        with (
            DodoClient(api_key="sk_test_wrong", base_url=url, max_retries=0) as client,
            pytest.raises(AuthenticationError),
        ):
            client.events.ingest(events(1))
        process.send_signal(stop_signal)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert url in stderr
    assert "stopped: 3 events ingested" in stderr
    assert "sk_test_cli_key_123456" not in stderr
    assert db.exists()


def test_the_command_injects_faults(tmp_path: Path) -> None:
    with dev_server("--faults", "429=1", "--retry-after", "0.5", "--seed", "1") as (process, url):
        response = httpx2.post(
            f"{url}/events/ingest",
            json={"events": events(1)},
            headers={"Authorization": "Bearer k"},
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.5"
    assert "429=1" in stderr


def test_a_bad_fault_spec_exits_2_naming_the_part() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dodo_ingest", "dev-server", "--faults", "5xx=0.1,oops=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "'oops=1'" in result.stderr


def test_the_installed_command_lists_dev_server() -> None:
    result = subprocess.run(
        [str(COMMAND), "--help"], capture_output=True, text=True, timeout=30, env=os.environ
    )
    assert result.returncode == 0
    assert "dev-server" in result.stdout


def test_a_taken_port_exits_1_with_a_message() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "dodo_ingest", "dev-server", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
