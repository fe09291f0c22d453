"""What the command says when something goes wrong: the URL that did not answer, and a
last progress frame that agrees with the summary after Ctrl+C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dodo_ingest.devserver import DevServer

from .conftest import API_KEY, COMMAND, write_jsonl


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def env_for(base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DODO_PAYMENTS_")}
    env.update(DODO_PAYMENTS_API_KEY=API_KEY, DODO_PAYMENTS_BASE_URL=base_url, COLUMNS="80")
    return env


def test_a_command_that_gets_no_answer_names_the_url() -> None:
    url = closed_port_url()
    done = subprocess.run(
        [str(COMMAND), "events", "list"],
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: no answer from {url}: connection error"), done.stderr
    assert API_KEY not in done.stderr


def test_send_says_which_url_it_keeps_retrying(
    tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    url = closed_port_url()
    file = write_jsonl(tmp_path / "usage.jsonl", make_events(3))
    text = subprocess.run(
        [str(COMMAND), "send", str(file), "--timeout", "1"],
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert text.returncode == 1
    said = " ".join((text.stdout + text.stderr).split())
    assert f"Retrying: no answer from {url}: connection error" in said
    assert f"Last delivery error: no answer from {url}: connection error" in said

    as_json = subprocess.run(
        [str(COMMAND), "send", str(file), "--timeout", "1", "--json"],
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    summary = json.loads(as_json.stdout)
    assert summary["last_error"].startswith(f"no answer from {url}: connection error")


def _frame(stderr: str, task: str) -> int:
    counts = re.findall(rf"^{task}\s.*?(\d+)/\d+", stderr, re.M)
    assert counts, stderr
    return int(counts[-1])


def _summary(stdout: str, row: str) -> int:
    found = re.search(rf"│\s*{row}\s*│\s*([\d,]+)\s*│", stdout)
    assert found, stdout
    return int(found[1].replace(",", ""))


def test_after_ctrl_c_the_last_frame_agrees_with_the_summary(
    server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    events = make_events(6000)
    file = write_jsonl(tmp_path / "usage.jsonl", events)
    # Slow answers: delivery is still going on when Ctrl+C comes, and goes on for the
    # second the command gives the batches in flight before it stops.
    server.set_faults("slow=1.0", slow_delay=0.25)
    process = subprocess.Popen(
        [str(COMMAND), "send", str(file), "--batch-size", "200"],
        env=env_for(server.base_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(server.event_ids()) < 600:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "delivery did not get going"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, stderr
    delivered = _summary(stdout, "delivered")
    assert 600 <= delivered < 6000
    assert delivered == len(server.event_ids())
    assert _frame(stderr, "delivered") == delivered
    assert _frame(stderr, "read") == _summary(stdout, "events read")
    assert "Interrupted." in stdout
