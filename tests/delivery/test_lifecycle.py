"""Process lifecycle with real subprocesses: exit without flush, fork, unreachable API, threads."""

from __future__ import annotations

import json
import threading
import time

import pytest

from dodo_ingest.delivery import Outbox
from tests.delivery import _scripts
from tests.delivery._sink import Blackhole

EXIT_WITHOUT_FLUSH = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", flush_interval=60)
for _ in range(8500):
    print(ingestion.track("cus_1"))
"""


def test_exit_without_flush_delivers_everything(server, tmp_path):
    done = _scripts.run(tmp_path, EXIT_WITHOUT_FLUSH, server.base_url)
    assert done.returncode == 0, done.stderr
    tracked = done.stdout.split()
    assert len(tracked) == 8500
    assert sorted(server.event_ids()) == sorted(tracked)


FORK = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", flush_interval=60,
                      outbox=OUTBOX)
parent_ids = [ingestion.track("parent") for _ in range(300)]  # still queued at fork time
pid = os.fork()
if pid == 0:
    child_ids = [ingestion.track("child") for _ in range(200)]
    flushed = ingestion.flush(10)
    stats = ingestion.stats
    print(json.dumps({"child": child_ids, "flushed": flushed,
                      "enqueued": stats.enqueued, "delivered": stats.delivered}), flush=True)
    ingestion.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
flushed = ingestion.flush(10)
print(json.dumps({"parent": parent_ids, "flushed": flushed, "child_status": status}), flush=True)
"""


@pytest.mark.parametrize("outbox", [False, True], ids=["memory", "outbox"])
def test_a_forked_child_sends_its_own_events_and_not_the_parents(server, tmp_path, outbox):
    path = str(tmp_path / "outbox.db") if outbox else "-"
    done = _scripts.run(tmp_path, FORK, server.base_url, path)
    assert done.returncode == 0, done.stderr
    child, parent = (json.loads(line) for line in done.stdout.splitlines())
    assert parent["child_status"] == 0
    assert child["flushed"] and parent["flushed"]
    assert (child["enqueued"], child["delivered"]) == (200, 200)  # a fresh queue in the child
    stored = server.event_ids()
    assert sorted(stored) == sorted(child["child"] + parent["parent"])
    assert server.stats["duplicates_ignored"] == 0  # the parent's queue was not sent twice
    if outbox:
        assert Outbox(path).count_pending() == 0


UNREACHABLE = """
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      shutdown_timeout=0.5)
for _ in range(3000):
    ingestion.track("cus_1")
if OUTBOX is None:  # the sender loads the HTTP stack first: wait until a batch is in a request
    deadline = time.monotonic() + 20
    while not ingestion._pipeline._sender.unsettled() and time.monotonic() < deadline:
        time.sleep(0.005)
print(time.monotonic(), flush=True)
"""


@pytest.mark.parametrize("outbox", [False, True], ids=["memory", "outbox"])
def test_exit_is_quick_when_the_api_hangs_and_the_outbox_keeps_the_events(tmp_path, outbox):
    path = str(tmp_path / "outbox.db") if outbox else "-"
    with Blackhole() as hanging:
        done = _scripts.run(tmp_path, UNREACHABLE, hanging.base_url, path, timeout=30)
        exited = time.monotonic()
    assert done.returncode == 0, done.stderr
    last_track = float(done.stdout.split()[0])
    assert exited - last_track < 3.0  # shutdown_timeout 0.5 s, not the 10 s request timeout
    if outbox:
        with Outbox(path) as kept:
            assert kept.count_pending() == 3000
    else:  # one batch is stuck in a request, the rest is counted as lost
        assert "2000 event(s) not delivered" in done.stderr
        assert "1000 event(s) still in a request" in done.stderr


def test_thread_count_is_stable_over_100_create_close_cycles(server, make_ingestion):
    from dodo_ingest.delivery import Ingestion

    def cycle() -> None:
        with Ingestion(
            api_key="sk_test_cycle_key_123456", base_url=server.base_url, event_name="e"
        ) as ingestion:
            ingestion.track("cus_1")

    cycle()  # warm up anything started once per process
    before = set(threading.enumerate())  # threads of other tests may end meanwhile
    for _ in range(100):
        cycle()
    assert [thread for thread in threading.enumerate() if thread not in before] == []
    assert len(server.event_ids()) == 101


def test_close_is_idempotent_and_track_after_close_is_counted(server, make_ingestion, caplog):
    reports: list[tuple[BaseException, list[str]]] = []
    ingestion = make_ingestion(
        base_url=server.base_url,
        event_name="e",
        on_error=lambda error, events: reports.append((error, [e.event_id for e in events])),
    )
    ingestion.track("cus_1")
    ingestion.close()
    ingestion.close()
    late = [ingestion.track("cus_1"), ingestion.track("cus_1")]
    stats = ingestion.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (1, 2, 0)
    assert caplog.text.count("after close()") == 1  # logged once
    # ...and reported to on_error right away, from the thread that called track().
    assert [(e.reason, e.count, ids) for e, ids in reports] == [  # type: ignore[attr-defined]
        ("closed", 1, [late[0]]),
        ("closed", 1, [late[1]]),
    ]
    assert not ingestion.flush(0.1)  # the late events were dropped, not delivered


def test_close_is_bounded_when_the_api_stalls_and_counts_what_it_drops(make_ingestion):
    from typing import Any

    from tests.delivery._sink import Answer, Sink, accept_all

    release = threading.Event()
    errors: list[BaseException] = []

    def stall(events: list[dict[str, Any]]) -> Answer:
        release.wait(10)
        return accept_all(events)

    with Sink(stall) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            on_error=lambda error, events: errors.append(error),
        )
        for _ in range(3000):
            ingestion.track("cus_1")
        while not sink.requests:
            time.sleep(0.005)
        start = time.monotonic()
        ingestion.close(timeout=0.3)
        assert time.monotonic() - start < 1.5
        # Queued behind the stuck request (2000) and in it (1000), counted at once.
        stats = ingestion.stats
        assert (stats.dropped, stats.queued, stats.delivered) == (3000, 0, 0)
        assert [(e.reason, e.count) for e in errors] == [("shutdown", 3000)]
        sender = ingestion._pipeline._thread
        assert sender is not None
        release.set()
        sender.join(5)  # the request in flight completes, and the sender ends
        assert not sender.is_alive()
        assert ingestion.stats == stats  # a late answer changes no counter
        assert len(sink.requests) == 1  # and nothing was sent after close() gave up


@pytest.mark.anyio
async def test_infinite_wait_timeouts_wait_as_long_as_needed_and_nan_is_refused(
    server, make_ingestion
):
    import math

    ingestion = make_ingestion(base_url=server.base_url, event_name="e", flush_interval=60)
    ingestion.track("cus_1")
    assert ingestion.flush(math.inf)
    ingestion.track("cus_1")
    assert await ingestion.aflush(math.inf)
    with pytest.raises(ValueError, match="timeout"):
        ingestion.flush(math.nan)
    ingestion.track("cus_1")
    ingestion.close(math.inf)
    assert (ingestion.stats.delivered, ingestion.stats.dropped) == (3, 0)
    with pytest.raises(ValueError, match="timeout"):
        ingestion.close(math.nan)
    other = make_ingestion(base_url=server.base_url, event_name="e", flush_interval=60)
    other.track("cus_1")
    await other.aclose(math.inf)
    assert other.stats.delivered == 1
    assert len(server.event_ids()) == 4


MULTIPROCESSING = """
import multiprocessing
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", flush_interval=60)

def work(name):
    ingestion.track("cus_1", event_id=name)  # no flush(): the child's exit must send it

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=work, args=(f"process-{i}",)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    pool = context.Pool(2)
    pool.map(work, [f"pool-{i}" for i in range(4)])
    pool.close()  # workers exit normally (terminate() would kill them before they flush)
    pool.join()
    print(json.dumps([child.exitcode for child in children]), flush=True)
"""


def test_multiprocessing_children_flush_at_exit(server, tmp_path):
    done = _scripts.run(tmp_path, MULTIPROCESSING, server.base_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [0, 0]
    assert sorted(server.event_ids()) == sorted(
        [f"process-{i}" for i in range(2)] + [f"pool-{i}" for i in range(4)]
    )
