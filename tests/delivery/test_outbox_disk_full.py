"""The outbox on a full disk: drops are counted, acknowledged events are not resent in a
loop, the write-ahead log stays bounded, and delivery recovers by itself when space returns."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest.delivery import EventsDroppedError, Ingestion, Outbox
from dodo_ingest.delivery._outbox import WAL_LIMIT
from tests.delivery._sink import Answer, Blackhole, Sink, accept_all
from tests.delivery.conftest import API_KEY
from tests.delivery.test_outbox import _pending_ids

DISK_SIZE = 4 * 1024 * 1024
BALLAST = 1024 * 1024
"""Space taken by another file, given back to show recovery."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for the test (needs root, as in CI)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE}", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=False)


class Held:
    """A responder that holds the first request until :attr:`release` is set, then
    acknowledges everything; :meth:`wait_for` waits until given ids were acknowledged."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.acknowledged: Counter[str] = Counter()
        self._changed = threading.Condition()

    def __call__(self, events: list[dict[str, Any]]) -> Answer:
        self.arrived.set()
        self.release.wait(60)
        with self._changed:
            self.acknowledged.update(event["event_id"] for event in events)
            self._changed.notify_all()
        return accept_all(events)

    def wait_for(self, ids: list[str], timeout: float = 10) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: all(i in self.acknowledged for i in ids), timeout)


def test_a_full_disk_drops_new_events_never_resends_acknowledged_ones_and_recovers(small_disk):
    path = small_disk / "outbox.db"
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * BALLAST)
    errors: list[BaseException] = []
    held = Held()
    with (
        Sink(held) as sink,
        Ingestion(
            api_key=API_KEY,
            base_url=sink.base_url,
            event_name="e",
            outbox=path,
            flush_interval=0.05,
            timeout=60,
            on_error=lambda error, events: errors.append(error),
        ) as ingestion,
    ):
        first = ingestion.track("cus_1")
        assert held.arrived.wait(10)  # the sender waits for its answer: it writes nothing
        # Fill the disk with events (the write-ahead log grows) until one cannot be stored.
        stored: list[str] = []
        for _ in range(10_000):
            event_id = ingestion.track("cus_1", metadata={"pad": "x" * 200})
            if ingestion.stats.dropped:
                break
            stored.append(event_id)
        assert ingestion.stats.dropped == 1, "the disk never filled up"
        refused = [ingestion.track("cus_1") for _ in range(20)]  # still full: all dropped
        assert ingestion.stats.dropped == 21
        held.release.set()
        # Acknowledged while nothing can be deleted: settled all the same, and not sent again.
        assert held.wait_for([first, *stored])
        for _ in range(3):
            assert ingestion.flush(10)
        assert _pending_ids(path) >= {first, *stored}  # still in the file: the disk is full
        full_wal = os.path.getsize(f"{path}-wal")

        ballast.unlink()  # space comes back
        later = [ingestion.track("cus_1") for _ in range(20)]
        assert ingestion.stats.dropped == 21
        assert ingestion.flush(10)
        assert held.wait_for(later)
        # The log was folded in and truncated before these were read.
        assert os.path.getsize(f"{path}-wal") < min(full_wal, WAL_LIMIT) // 4
    assert _pending_ids(path) == set()  # the acknowledged events were deleted at last
    assert held.acknowledged == Counter([first, *stored, *later])  # each once, dropped never
    assert Counter(sink.event_ids()) == held.acknowledged
    assert not held.acknowledged.keys() & set(refused)
    stats = ingestion.stats
    assert stats.delivered == 1 + len(stored) + len(later)
    assert stats.dropped == len(refused) + 1  # and the one that did not fit
    drops = [error for error in errors if isinstance(error, EventsDroppedError)]
    assert {error.reason for error in drops} == {"outbox_error"}
    assert sum(error.count for error in drops) == 21
    assert len(drops) == len(errors)


def test_the_write_ahead_log_stays_bounded_while_the_sender_is_stuck(tmp_path):
    path = tmp_path / "outbox.db"
    largest = 0
    with Blackhole() as hanging:
        ingestion = Ingestion(
            api_key=API_KEY, base_url=hanging.base_url, event_name="e", outbox=path, timeout=60
        )
        ingestion.track("cus_1", metadata={"pad": "x" * 200})
        _wait_until_a_request_hangs(ingestion)
        # Each committed event adds at least a page to the log: 3 x WAL_LIMIT without a bound.
        for _ in range(3 * WAL_LIMIT // 4096 - 1):
            ingestion.track("cus_1", metadata={"pad": "x" * 200})
            largest = max(largest, os.path.getsize(f"{path}-wal"))
        ingestion.close(timeout=0.1)
    assert largest <= WAL_LIMIT * 1.05
    with Outbox(path) as outbox:
        assert outbox.count_pending() == 3 * WAL_LIMIT // 4096  # nothing lost to checkpoints


def _wait_until_a_request_hangs(ingestion: Ingestion) -> None:
    """Until the sender (which loads the HTTP stack first) has a batch in a request."""
    deadline = time.monotonic() + 20
    while not ingestion._pipeline._sender.unsettled():
        assert time.monotonic() < deadline, "the sender never sent a request"
        time.sleep(0.005)


def _body(event_id: str) -> str:
    return json.dumps({"event_id": event_id, "customer_id": "cus_1", "event_name": "e"})


def test_settled_events_are_kept_in_memory_until_the_file_has_room(small_disk):
    path = small_disk / "outbox.db"
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * BALLAST)
    with Outbox(path) as outbox:
        outbox.register()
        for i in range(10_000):  # fill the disk
            try:
                outbox.append(f"evt_{i}", 1.0, _body(f"evt_{i}") + " " * 200)
            except sqlite3.OperationalError:
                break
        else:
            pytest.fail("the disk never filled up")
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):  # fails cleanly
            outbox.append("evt_one_more", 1.0, _body("evt_one_more"))
        rows = outbox.fetch(10_000)
        acknowledged, refused, rest = rows[:10] + rows[-1:], rows[10:15], rows[15:-1]
        outbox.delete(acknowledged)  # neither raises: the disk is full
        outbox.bury(refused, "HTTP 400: refused", 400)
        assert outbox.fetch(10_000) == rest  # settled ones are not handed out again
        assert outbox.count_pending() == len(rest)
        assert outbox.count_dead_letters() == 0
        assert len(_pending_ids(path)) == len(rows)  # all still in the file

        ballast.unlink()
        # Meanwhile another owner took the last one over and delivered it: its number is
        # free, and another Outbox of the file gives it to a new event. Only the acknowledged
        # event may be deleted.
        last = rows[-1][3]
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM pending WHERE seq = ?", (last,))
        with Outbox(path) as other:
            other.register()
            assert other.append("evt_other", 2.0, _body("evt_other")) == last
        # This one never gives a number it handed out before to a new event.
        assert outbox.append("evt_new", 2.0, _body("evt_new")) == last + 1
        assert [row[0] for row in outbox.fetch(10_000)] == [*(row[0] for row in rest), "evt_new"]
        assert _pending_ids(path) == {row[0] for row in rest} | {"evt_other", "evt_new"}
        letters = outbox.dead_letters()
        assert [letter.event.event_id for letter in letters] == [row[0] for row in refused]
        assert {(letter.reason, letter.status_code) for letter in letters} == {
            ("HTTP 400: refused", 400)
        }


def test_sequence_numbers_never_go_back_when_the_newest_rows_are_deleted(tmp_path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.register()
        outbox.append("evt_1", 1.0, _body("evt_1"))
        second = outbox.append("evt_2", 1.0, _body("evt_2"))
        outbox.delete(outbox.fetch(10))
        assert outbox.last_seq() == second  # not 0: a flush may be waiting for that number
        third = outbox.append("evt_3", 1.0, _body("evt_3"))
        assert third == second + 1  # not the number of a deleted event again
        assert outbox.last_seq() == third


class PausedTake(Outbox):
    """Holds the sender once, right after its ``take()`` read :meth:`last_seq`, until another
    thread reads :meth:`last_seq` (as ``flush()`` does)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.in_sender: Any = lambda: False
        self.armed = False
        self.read = threading.Event()
        self.resume = threading.Event()

    def last_seq(self) -> int:
        seq = super().last_seq()
        if self.in_sender():
            if self.armed:
                self.armed = False
                self.read.set()
                self.resume.wait(10)
        elif self.read.is_set():
            self.resume.set()
        return seq


def test_a_flush_returns_when_its_event_went_out_in_a_batch_taken_before_it(tmp_path):
    # The sender reads last_seq() (1), then an event is appended (2) and a flush waits for
    # 2; the batch holds both, but is settled through 1 only. Once both are deleted, the
    # next batch must still be settled through 2, or the flush waits until it times out.
    outbox = PausedTake(tmp_path / "outbox.db")
    with (
        Sink(accept_all) as sink,
        Ingestion(
            api_key=API_KEY,
            base_url=sink.base_url,
            event_name="e",
            outbox=outbox,
            flush_interval=60,
        ) as ingestion,
    ):
        outbox.in_sender = ingestion._pipeline.in_sender
        first = ingestion.track("cus_1")  # starts the sender, which waits for a flush
        outbox.armed = True
        assert not ingestion.flush(0)  # wakes it: it reads last_seq() and is held there
        assert outbox.read.wait(10)
        second = ingestion.track("cus_1")
        assert ingestion.flush(10)  # its last_seq() lets the sender go on
        assert Counter(sink.event_ids()) == Counter([first, second])
        assert ingestion.stats.delivered == 2
    outbox.close()


class PassiveStopsShort:
    """The sender's connection, where a reader of an older snapshot and a new event come
    along while the passive checkpoint runs (as ``track()`` may in another thread)."""

    def __init__(self, outbox: Outbox, conn: sqlite3.Connection) -> None:
        self.outbox = outbox
        self.conn = conn

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql != "PRAGMA wal_checkpoint(PASSIVE)":
            return self.conn.execute(sql, *args)
        reader = sqlite3.connect(self.outbox.path, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM pending").fetchone()
            self.outbox.append("evt_late", 1.0, _body("evt_late"))  # after the reader's snapshot
            cursor = self.conn.execute(sql, *args)  # folds in the frames up to that snapshot
            reader.execute("COMMIT")
        finally:
            reader.close()
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_a_log_that_must_shrink_is_truncated_when_the_passive_checkpoint_stops_short(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as outbox:
        outbox.register()
        for i in range(50):
            outbox.append(f"evt_{i}", 1.0, _body(f"evt_{i}"))
        outbox._shrink_wal = True  # as after a write that failed (disk full)
        outbox._sender_conn = PassiveStopsShort(outbox, outbox._sender())  # type: ignore[assignment]
        assert os.path.getsize(f"{path}-wal") > 50 * 4096
        outbox.checkpoint()
        assert os.path.getsize(f"{path}-wal") == 0  # not left at its size until the next try
        assert outbox.count_pending() == 51
