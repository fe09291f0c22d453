"""The SQLite outbox: crash safety (kill -9), take-over of leftovers, dead letters, retry."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest.client import ConfigurationError
from dodo_ingest.delivery import Ingestion, Outbox, _pipeline
from tests.delivery import _scripts
from tests.delivery._sink import Answer, Blackhole, RefuseIds, Sink, accept_all
from tests.delivery.conftest import API_KEY


class Gate:
    """A responder that acknowledges requests while open; once closed, it holds each request
    unanswered until :meth:`reopen` (then answers 503). ``accepted`` lists the ids it
    acknowledged, in order."""

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self._open = True
        self._reopened = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, events: list[dict[str, Any]]) -> Answer:
        with self._lock:
            if self._open:
                self.accepted.extend(event["event_id"] for event in events)
                return accept_all(events)
        self._reopened.wait(60)
        return 503, {}, b'{"message": "held until the sender was gone"}'

    def close(self) -> None:
        with self._lock:
            self._open = False

    def reopen(self) -> None:
        with self._lock:
            self._open = True
        self._reopened.set()


KILLED = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      batch_size=100, flush_interval=0.05, timeout=60)
for _ in range(300):
    print(ingestion.track("cus_1"), flush=True)  # printed only once committed
print("flushed", ingestion.flush(30), flush=True)
sys.stdin.readline()
for _ in range(300):
    print(ingestion.track("cus_1"), flush=True)
print("tracked", flush=True)
sys.stdin.readline()  # killed while waiting here
"""


def _pending_ids(path: str | Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM pending")}


def test_kill_9_then_a_new_process_delivers_everything_exactly_once(tmp_path):
    path = str(tmp_path / "outbox.db")
    gate = Gate()
    with Sink(gate) as sink:
        with _scripts.Child(tmp_path, KILLED, sink.base_url, path) as producer:
            flushed, delivered = producer.expect("flushed")
            assert flushed == "flushed True"
            gate.close()  # from now on nothing is acknowledged
            producer.send("go")
            _, pending = producer.expect("tracked")
            producer.kill()
        assert producer.process.returncode == -signal.SIGKILL
        assert len(delivered) == len(pending) == 300
        assert gate.accepted == delivered
        assert _pending_ids(path) == set(pending)  # killed with these committed, unacknowledged
        gate.reopen()
        with Ingestion(api_key=API_KEY, base_url=sink.base_url, outbox=path) as recovery:
            assert recovery.flush(10)  # takes over the dead process's events at once
            assert recovery.stats.delivered == 300
    assert sorted(gate.accepted) == sorted(delivered + pending)  # each acknowledged once
    assert _pending_ids(path) == set()


LEFTOVER = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      shutdown_timeout=0.2)
for _ in range(50):
    print(ingestion.track("earlier"))
"""


def test_leftovers_of_an_earlier_process_are_delivered_first(server, tmp_path):
    path = str(tmp_path / "outbox.db")
    with Blackhole() as hanging:
        done = _scripts.run(tmp_path, LEFTOVER, hanging.base_url, path)
    assert done.returncode == 0, done.stderr
    earlier = done.stdout.split()
    assert _pending_ids(path) == set(earlier)
    with Ingestion(
        api_key=API_KEY, base_url=server.base_url, event_name="e", outbox=path, flush_interval=30
    ) as ingestion:
        later = [ingestion.track("later") for _ in range(50)]
        assert ingestion.flush(10)
    stored = server.event_ids()
    assert stored[:50] == earlier
    assert sorted(stored[50:]) == sorted(later)


def test_dead_letters_are_kept_with_the_reason_and_can_be_retried(tmp_path):
    path = tmp_path / "outbox.db"
    old = datetime.now(UTC) - timedelta(minutes=50)
    refuse = RefuseIds({"too-old"}, "timestamp is older than 1 hour")
    with (
        Sink(refuse) as sink,
        Ingestion(
            api_key=API_KEY, base_url=sink.base_url, event_name="e", outbox=path
        ) as ingestion,
    ):
        good = ingestion.track("cus_1")
        ingestion.track("cus_1", event_id="too-old", timestamp=old)
        assert ingestion.flush(10)
        assert ingestion.stats.dead_lettered == 1
    assert refuse.accepted == [good]
    with Outbox(path) as outbox:
        assert outbox.count_pending() == 0
        assert outbox.count_dead_letters() == 1
        (letter,) = outbox.dead_letters()
        assert letter.event.event_id == "too-old"
        assert letter.status_code == 400
        assert "1 hour" in letter.reason
        assert letter.event.timestamp is not None
        assert abs((letter.event.timestamp - old).total_seconds()) < 0.001
        assert outbox.retry_dead_letters(["unknown-id"]) == 0
        assert outbox.retry_dead_letters() == 1
        assert (outbox.count_pending(), outbox.count_dead_letters()) == (1, 0)
    # The next Ingestion on the file takes the retried event over (and the API refuses it again).
    with (
        Sink(refuse) as sink,
        Ingestion(api_key=API_KEY, base_url=sink.base_url, outbox=path) as again,
    ):
        assert again.flush(10)
        assert again.stats.enqueued == 1
    with Outbox(path) as outbox:
        assert [d.event.event_id for d in outbox.dead_letters()] == ["too-old"]


def test_track_returns_after_the_commit(tmp_path):
    path = str(tmp_path / "outbox.db")
    with Blackhole() as hanging:
        ingestion = Ingestion(
            api_key=API_KEY, base_url=hanging.base_url, event_name="e", outbox=path
        )
        event_id = ingestion.track("cus_1", metadata={"k": "v"})
        assert _pending_ids(path) == {event_id}  # visible to another connection at once
        ingestion.close(timeout=0.1)
    assert _pending_ids(path) == {event_id}


def test_tools_can_refuse_to_create_a_missing_outbox(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(FileNotFoundError, match=r"typo\.db"):
        Outbox(missing, create=False)
    assert not missing.exists()
    with Outbox(missing) as created:
        assert created.count_pending() == 0
    with Outbox(missing, create=False) as reopened:
        assert reopened.count_dead_letters() == 0


SHARED = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      batch_size=100, flush_interval=0.05)
for _ in range(2000):
    print(ingestion.track(f"worker-{os.getpid()}"))
print("flushed", ingestion.flush(60))
"""


def test_processes_sharing_one_outbox_send_only_their_own_events(server, tmp_path):
    path = str(tmp_path / "outbox.db")
    script = _scripts.write(tmp_path, SHARED)
    outputs = [tmp_path / f"worker{i}.txt" for i in range(3)]
    workers = []
    for output in outputs:
        with output.open("w") as sink:
            workers.append(
                subprocess.Popen([sys.executable, str(script), server.base_url, path], stdout=sink)
            )
    for worker in workers:
        assert worker.wait(timeout=90) == 0
    tracked: list[str] = []
    for output in outputs:
        *ids, flushed = output.read_text().splitlines()
        assert flushed == "flushed True"  # everything settled before the worker exited
        tracked += ids
    assert len(tracked) == 6000
    assert sorted(server.event_ids()) == sorted(tracked)
    assert server.stats["duplicates_ignored"] == 0  # no worker sent another's events
    assert _pending_ids(path) == set()


def test_an_outbox_that_cannot_be_opened_fails_at_construction(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot be opened"):
        Ingestion(api_key=API_KEY, base_url="http://127.0.0.1:9", outbox=tmp_path / "no" / "x.db")


@pytest.mark.parametrize("path", [":memory:", "", "file::memory:?cache=shared"])
def test_an_in_memory_outbox_is_refused(path):
    with pytest.raises(ConfigurationError, match="outbox must be the path of a file"):
        Ingestion(api_key=API_KEY, base_url="http://127.0.0.1:9", outbox=path)
    with pytest.raises(ConfigurationError, match="outbox must be the path of a file"):
        Outbox(path)


def test_a_failing_outbox_write_is_counted_and_reported_not_raised(server, tmp_path, monkeypatch):
    errors: list[BaseException] = []
    with Ingestion(
        api_key=API_KEY,
        base_url=server.base_url,
        event_name="e",
        outbox=tmp_path / "outbox.db",
        on_error=lambda error, events: errors.append(error),
    ) as ingestion:
        kept = ingestion.track("cus_1")
        assert ingestion.outbox is not None

        def disk_full(*args: object) -> int:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(ingestion.outbox, "append", disk_full)
        ingestion.track("cus_1")  # does not raise into the caller
        assert ingestion.stats.dropped == 1
        assert ingestion.flush(5)
    assert server.event_ids() == [kept]
    assert [(e.reason, e.count) for e in errors] == [("outbox_error", 1)]


def test_only_dead_or_silent_owners_lose_their_events(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path) as alive, Outbox(path, stale_after=0.3) as other:
        alive.register()
        other.register()
        for i in range(3):
            alive.append(f"evt_{i}", time.time(), "{}")
        assert other.reclaim() == 0  # same live process, fresh heartbeat: not taken
        assert other.fetch(10) == []
        with sqlite3.connect(path) as conn:  # its last heartbeat was 0.4 s ago
            conn.execute(
                "UPDATE owners SET heartbeat = ? WHERE owner = ?", (time.time() - 0.4, alive.owner)
            )
        assert other.reclaim() == 3  # alive, but silent for longer than stale_after
        assert [row[0] for row in other.fetch(10)] == ["evt_0", "evt_1", "evt_2"]
        alive.heartbeat()  # the silent owner comes back: it owns nothing any more
        assert alive.fetch(10) == []


def test_one_outbox_object_serves_one_open_ingestion_at_a_time(server, tmp_path):
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    first = Ingestion(api_key=API_KEY, base_url=server.base_url, event_name="e", outbox=outbox)
    with pytest.raises(ConfigurationError, match=re.escape(str(path))):
        Ingestion(api_key=API_KEY, base_url=server.base_url, event_name="e", outbox=outbox)
    # Another Outbox of the same file has its own owner token: both send only their own.
    with Ingestion(api_key=API_KEY, base_url=server.base_url, event_name="e", outbox=path) as b:
        ids = [(first if i % 2 else b).track("cus_1") for i in range(3000)]
        assert first.flush(10) and b.flush(10)
    first.close()
    assert sorted(server.event_ids()) == sorted(ids)  # each event sent once
    assert first.stats.delivered + b.stats.delivered == 3000
    # Once the first is closed, the object may serve a new Ingestion.
    with Ingestion(
        api_key=API_KEY, base_url=server.base_url, event_name="e", outbox=outbox
    ) as again:
        again.track("cus_1")
        assert again.flush(5)
    assert outbox.count_pending() == 0
    outbox.close()


def _owner_rows(path: Path, owner: int) -> int:
    with sqlite3.connect(path) as conn:
        return int(
            conn.execute("SELECT count(*) FROM owners WHERE owner = ?", (owner,)).fetchone()[0]
        )


def _wait_until_stopped(ingestion: Ingestion) -> None:
    thread = ingestion._pipeline._thread
    if thread is not None:
        thread.join(5)
        assert not thread.is_alive()


def test_a_sender_outliving_close_does_not_take_its_ownership_back(tmp_path, monkeypatch):
    monkeypatch.setattr(_pipeline, "HEARTBEAT_INTERVAL", 0.0)  # a heartbeat after every batch
    path = tmp_path / "outbox.db"
    arrived = threading.Event()
    answer = threading.Event()

    def stall(events: list[dict[str, Any]]) -> Answer:
        arrived.set()
        answer.wait(10)
        return accept_all(events)

    with Sink(stall) as sink:
        ingestion = Ingestion(
            api_key=API_KEY, base_url=sink.base_url, event_name="e", outbox=path, batch_size=1
        )
        owner = ingestion.outbox.owner
        ingestion.track("cus_1")
        left = ingestion.track("cus_1")  # waits behind the stuck request
        assert arrived.wait(10)
        ingestion.close(timeout=0.1)
        assert _owner_rows(path, owner) == 0
        answer.set()  # the stuck request completes after close() gave up
        _wait_until_stopped(ingestion)
        assert _owner_rows(path, owner) == 0  # released for good
        with Ingestion(api_key=API_KEY, base_url=sink.base_url, outbox=path) as nxt:
            assert nxt.flush(5)  # the leftover is taken over at once
            assert nxt.stats.delivered == 1
        assert sink.event_ids()[-1] == left


def test_a_released_owner_is_not_recreated_by_a_late_heartbeat(tmp_path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.register()
        outbox.release()
        outbox.heartbeat()
        assert _owner_rows(tmp_path / "outbox.db", outbox.owner) == 0
        outbox.register()  # a new Ingestion on the same object owns again
        assert _owner_rows(tmp_path / "outbox.db", outbox.owner) == 1


def test_close_from_on_error_releases_the_outbox_when_the_sender_stops(tmp_path):
    path = tmp_path / "outbox.db"
    box: list[Ingestion] = []
    refuse_all = RefuseIds({"a", "b", "c"}, "refused")
    with Sink(refuse_all) as sink:
        ingestion = Ingestion(
            api_key=API_KEY,
            base_url=sink.base_url,
            event_name="e",
            outbox=path,
            batch_size=1,
            on_error=lambda error, events: box[0].close(),
        )
        box.append(ingestion)
        owner = ingestion.outbox.owner
        for event_id in ("a", "b", "c"):
            ingestion.track("cus_1", event_id=event_id)
        deadline = time.monotonic() + 5
        while ingestion._pipeline._thread is None and time.monotonic() < deadline:
            time.sleep(0.005)
        _wait_until_stopped(ingestion)
    assert ingestion._pipeline not in _pipeline._LIVE
    assert _owner_rows(path, owner) == 0
    assert len(sink.requests) == 1  # nothing sent after close()
    with Outbox(path) as outbox:
        assert (outbox.count_dead_letters(), outbox.count_pending()) == (1, 2)
