"""``dodo-ingest send --outbox``: a run killed mid-send is resumed by the same command."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest.delivery import Outbox
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import API_KEY, COMMAND, Cli, write_jsonl


def lines_done(outbox: Path) -> int:
    """The reading position the command recorded in the outbox (0 before the first record)."""
    if not outbox.exists():
        return 0
    with sqlite3.connect(outbox, timeout=5) as conn:
        try:
            row = conn.execute("SELECT max(lines_done) FROM cli_send_progress").fetchone()
        except sqlite3.OperationalError:  # the table is not there yet
            return 0
    return int(row[0] or 0)


def test_a_killed_send_resumes_and_every_event_is_stored_once(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    events = make_events(12_000)
    file = write_jsonl(tmp_path / "usage.jsonl", events)
    outbox = tmp_path / "send.db"
    # Every answer is held for 30 s: the first batch is stored but never acknowledged, and
    # the command reads ahead until it is killed.
    server.set_faults("slow=1.0", slow_delay=30)
    env = {
        **os.environ,
        "DODO_PAYMENTS_API_KEY": API_KEY,
        "DODO_PAYMENTS_BASE_URL": server.base_url,
    }
    process = subprocess.Popen(
        [str(COMMAND), "send", str(file), "--outbox", str(outbox), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while lines_done(outbox) < 5000:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command did not get going"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    recorded = lines_done(outbox)
    assert 5000 <= recorded < 12_000
    with Outbox(outbox, create=False) as box:
        left = box.count_pending()
    assert left >= recorded  # tracked, committed, not acknowledged
    stored_before = len(server.event_ids())
    assert stored_before < 12_000

    server.set_faults(None)
    summary = cli.json("send", str(file), "--outbox", str(outbox))

    assert sorted(server.event_ids()) == sorted(e["event_id"] for e in events)
    assert summary["ok"] is True
    assert summary["resumed_from_line"] == recorded
    assert summary["events_read"] == 12_000 - recorded
    assert summary["events_taken_over"] == left
    assert summary["delivered"] == summary["events_read"] + left
    assert summary["new"] == 12_000 - stored_before
    assert summary["new"] + summary["duplicates_ignored"] == summary["delivered"]
    with Outbox(outbox, create=False) as box:
        assert box.count_pending() == 0

    # The file is done: running the command again sends nothing.
    again = cli.json("send", str(file), "--outbox", str(outbox))
    assert (again["events_read"], again["delivered"], again["ok"]) == (0, 0, True)
    # --restart reads it all again; the ids are the same, so the API ignores every one.
    restarted = cli.json("send", str(file), "--outbox", str(outbox), "--restart")
    assert (restarted["events_read"], restarted["new"]) == (12_000, 0)
    assert restarted["duplicates_ignored"] == 12_000


def test_ctrl_c_stops_with_status_130_and_the_next_run_resumes(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    events = make_events(6000)
    file = write_jsonl(tmp_path / "usage.jsonl", events)
    outbox = tmp_path / "send.db"
    server.set_faults("slow=1.0", slow_delay=30)
    env = {
        **os.environ,
        "DODO_PAYMENTS_API_KEY": API_KEY,
        "DODO_PAYMENTS_BASE_URL": server.base_url,
    }
    process = subprocess.Popen(
        [str(COMMAND), "send", str(file), "--outbox", str(outbox), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while lines_done(outbox) < 2000:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the command did not get going"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 130, stderr
    interrupted = json.loads(stdout)
    assert interrupted["stopped_by"] == "interrupted"
    assert interrupted["ok"] is False
    assert interrupted["unsettled"] > 0  # kept in the outbox, not dropped
    assert interrupted["dropped"] == 0

    server.set_faults(None)
    summary = cli.json("send", str(file), "--outbox", str(outbox))
    assert summary["ok"] is True
    assert summary["resumed_from_line"] >= 2000
    assert sorted(server.event_ids()) == sorted(e["event_id"] for e in events)


@pytest.mark.parametrize("entry", [["-m", "dodo_ingest"], []])
def test_the_installed_command_and_python_m_run_send(
    server: DevServer,
    tmp_path: Path,
    make_events: Callable[..., list[dict[str, Any]]],
    entry: list[str],
) -> None:
    file = write_jsonl(tmp_path / "usage.jsonl", make_events(300))
    command = [sys.executable, *entry] if entry else [str(COMMAND)]
    result = subprocess.run(
        [
            *command,
            "send",
            str(file),
            "--json",
            "--api-key",
            API_KEY,
            "--base-url",
            server.base_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("DODO_PAYMENTS_")},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["delivered"], summary["new"]) == (300, 300)
    assert API_KEY not in result.stdout + result.stderr
