"""Taking over the events of an owner that is gone, at once, when its pid lives on in another
process (a restarted container gives the new process the pid the old one had)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dodo_ingest.delivery import Ingestion, Outbox
from dodo_ingest.delivery._outbox import process_identity
from tests.delivery import _scripts
from tests.delivery._sink import Blackhole, Sink
from tests.delivery.conftest import API_KEY
from tests.delivery.test_outbox import _pending_ids

OWNER = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      timeout=60)
print(json.dumps([ingestion.track("cus_1") for _ in range(100)]), flush=True)
sys.stdin.readline()  # alive, owning its 100 events, until killed
"""

needs_proc = pytest.mark.skipif(
    process_identity(os.getpid()) is None, reason="process identities need /proc (Linux)"
)


@contextmanager
def _owner_with_pending_events(tmp_path: Path, path: Path) -> Iterator[tuple[int, list[str]]]:
    """A live child process owning 100 pending events of ``path`` (never acknowledged):
    yields its pid and the event ids; it is killed on leaving."""
    with (
        Blackhole() as hanging,
        _scripts.Child(tmp_path, OWNER, hanging.base_url, str(path)) as child,
    ):
        line, _ = child.expect("[")
        yield child.process.pid, json.loads(line)


def _owners(path: Path) -> list[tuple[int, str, int, float, str | None]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT owner, host, pid, heartbeat, identity FROM owners").fetchall()


def _set_owner_pid(path: Path, pid: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE owners SET pid = ?", (pid,))


@contextmanager
def _live_process() -> Iterator[int]:
    """Another live process (started now) for as long as the block runs: yields its pid."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        yield process.pid
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)


def test_after_a_restart_the_new_process_with_the_old_pid_takes_over_at_once(tmp_path):
    path = tmp_path / "outbox.db"
    with _owner_with_pending_events(tmp_path, path) as (_, ids):
        pass  # killed: its row stays, with a fresh heartbeat
    with sqlite3.connect(path) as conn:
        ((host, heartbeat),) = conn.execute("SELECT host, heartbeat FROM owners").fetchall()
    assert host == socket.gethostname()
    assert heartbeat > time.time() - 60  # far from stale_after (300 s)
    _set_owner_pid(path, os.getpid())  # the restarted process got the pid the old one had
    with Sink() as sink, Ingestion(api_key=API_KEY, base_url=sink.base_url, outbox=path) as new:
        assert new.flush(10)
        assert sorted(sink.event_ids()) == sorted(ids)  # taken over and sent at once
        assert new.stats.delivered == 100
    assert _pending_ids(path) == set()


@needs_proc
def test_an_owner_whose_pid_now_names_another_process_is_taken_over_at_once(tmp_path):
    path = tmp_path / "outbox.db"
    with _owner_with_pending_events(tmp_path, path) as (pid, ids):
        ((_, _, _, _, identity),) = _owners(path)
        assert identity == process_identity(pid)
    with _live_process() as other:  # the dead owner's pid, given to a process started later
        _set_owner_pid(path, other)
        with Outbox(path) as outbox:
            outbox.register()
            assert outbox.reclaim() == 100
            assert sorted(row[0] for row in outbox.fetch(1000)) == sorted(ids)


def test_the_events_of_a_live_owner_in_another_process_are_left_alone(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.register()
        with _owner_with_pending_events(tmp_path, path):
            assert outbox.reclaim() == 0  # same host, pid alive and the same process
            assert outbox.fetch(1000) == []
        assert outbox.reclaim() == 100  # killed


OLD_SCHEMA = """
CREATE TABLE pending (seq INTEGER PRIMARY KEY, owner INTEGER NOT NULL,
                      event_id TEXT NOT NULL, ts REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE dead_letters (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL, ts REAL NOT NULL,
                           body TEXT NOT NULL, reason TEXT NOT NULL, status_code INTEGER,
                           failed_at REAL NOT NULL);
CREATE TABLE owners (owner INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
                     heartbeat REAL NOT NULL);
"""


def test_a_file_from_before_identities_is_migrated_and_its_owners_judged_as_before(tmp_path):
    path = tmp_path / "outbox.db"
    with _live_process() as other, sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        # 7: a live process of this host; 8: this pid, under a token this process never made.
        conn.executemany(
            "INSERT INTO owners VALUES (?, ?, ?, ?)",
            [
                (7, socket.gethostname(), other, time.time()),
                (8, socket.gethostname(), os.getpid(), time.time()),
            ],
        )
        conn.executemany(
            "INSERT INTO pending (owner, event_id, ts, body) VALUES (?, ?, ?, '{}')",
            [(7, "evt_live", 1.0), (8, "evt_restarted", 2.0)],
        )
        conn.commit()
        with Outbox(path) as outbox:
            outbox.register()
            assert [row[0] for row in outbox.fetch(10)] == []
            assert outbox.reclaim() == 1
            assert [row[0] for row in outbox.fetch(10)] == ["evt_restarted"]
            # The live owner, without an identity, keeps its events until its heartbeat is stale.
            conn.execute("UPDATE owners SET heartbeat = heartbeat - 301 WHERE owner = 7")
            conn.commit()
            assert outbox.reclaim() == 1
            assert [row[0] for row in outbox.fetch(10)] == ["evt_live", "evt_restarted"]  # in order
        rows = {row[0]: row for row in _owners(path)}
        assert rows.keys() == {outbox.owner}
        assert rows[outbox.owner][4] == process_identity(os.getpid())
