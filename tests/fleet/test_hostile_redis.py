"""Hostile review of fleet delivery on Redis Streams: a real ``redis-server``, a real dev server
over HTTP, real signals: each test is an attack that once broke the code (or that it survived)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from dodo_ingest import Ingestion
from dodo_ingest.cli import main
from dodo_ingest.delivery import RedisOutbox, Relay
from dodo_ingest.devserver import DevServer
from tests.delivery.conftest import API_KEY, FAST_RETRIES

STREAM = "dodo-usage"
DEAD = "dodo-usage:dead"


def _wait_until(predicate: Callable[[], object], timeout: float = 15.0) -> bool:
    """Poll observable state until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _body(event_id: str, customer: str = "cus_1") -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "event_name": "e",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metadata": {},
        }
    )


def _write(client, event_id: str) -> None:
    """Write a well-formed entry the way a producer does."""
    client.xadd(STREAM, {"i": event_id, "t": repr(time.time()), "b": _body(event_id)})


def _ids_in(client, key: str) -> list[str]:
    return [fields[b"i"].decode() for _, fields in client.xrange(key) if b"i" in fields]


@pytest.fixture
def server() -> Iterator[DevServer]:
    with DevServer() as running:
        yield running


def _thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- group commit: a follower interrupted by a signal -----------------------------------------


def test_a_signal_that_interrupts_a_waiting_track_does_not_hang_later_tracks(redis_server):
    admin = redis_server.client()
    box = RedisOutbox(redis_server.url, timeout=5.0)
    producer = Ingestion(outbox=box, deliver=False, event_name="e")
    previous = signal.getsignal(signal.SIGUSR1)
    main = threading.get_ident()

    def terminate(signum, frame):  # the usual SIGTERM handler of a web worker
        raise SystemExit(0)

    later: list[str] = []
    stuck: threading.Thread | None = None
    try:
        producer.track("cus_warm")  # the script is loaded
        admin.client_pause(30_000, all=False)  # writes (and scripts) wait: the leader blocks
        leader = _thread(lambda: producer.track("cus_leader"))
        assert _wait_until(lambda: box._leader is not None and not box._waiting)
        signal.signal(signal.SIGUSR1, terminate)

        def interrupt_main_once_it_waits() -> None:
            if _wait_until(lambda: len(box._waiting) == 1):
                signal.pthread_kill(main, signal.SIGUSR1)

        _thread(interrupt_main_once_it_waits)
        with pytest.raises(SystemExit):
            producer.track("cus_main")  # waits behind the leader, then the signal comes
        signal.signal(signal.SIGUSR1, previous)
        admin.client_unpause()
        leader.join(10)
        assert not leader.is_alive()

        stuck = _thread(lambda: later.append(producer.track("cus_later")))
        stuck.join(5)  # a track() must never hang (the bound is the 5 s socket timeout)
        assert not stuck.is_alive(), "track() hangs: the designated leader is gone"
        assert later and later[0] in _ids_in(admin, STREAM)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        admin.client_unpause()
        with box._group_lock:  # free what hangs, so that the test ends
            box._leader = None
            waiting = list(box._waiting)
        for waiter in waiting:
            waiter.done.set()
        if stuck is not None:
            stuck.join(10)
        producer.close(timeout=2)


# --- group commit: the leader's own exception is given to the followers ------------------------


def _blocked(admin) -> set[str]:
    """Ids of the connections whose command waits in Redis (here: on CLIENT PAUSE)."""
    return {c["id"] for c in admin.client_list() if "b" in c["flags"]}


class _Alarm(Exception):
    """What a SIGALRM-based request timeout raises in the thread it interrupts."""


def test_an_exception_in_the_leading_thread_does_not_drop_the_followers_events(redis_server):
    admin = redis_server.client()
    box = RedisOutbox(redis_server.url, timeout=1.0)
    errors: list[tuple[BaseException, list]] = []
    producer = Ingestion(
        outbox=box,
        deliver=False,
        event_name="e",
        on_error=lambda error, events: errors.append((error, events)),
    )
    previous = signal.getsignal(signal.SIGUSR1)
    main = threading.get_ident()

    def alarm(signum, frame):
        raise _Alarm("request took too long")

    follower_id: list[str] = []
    try:
        producer.track("cus_warm")
        admin.client_pause(30_000, all=False)
        # A first leader blocks until its read times out (1 s); the main thread, then a
        # worker, queue behind it. The main thread leads the next write, for both.
        first = _thread(lambda: producer.track("cus_first"))
        assert _wait_until(lambda: box._leader is not None and not box._waiting)
        assert _wait_until(lambda: _blocked(admin))  # its script waits in Redis
        before = _blocked(admin)
        signal.signal(signal.SIGUSR1, alarm)

        def orchestrate() -> None:
            assert _wait_until(lambda: len(box._waiting) == 1)  # the main thread
            worker = _thread(lambda: follower_id.append(producer.track("cus_worker")))
            assert _wait_until(lambda: len(box._waiting) == 2)
            # The first write times out; the main thread takes both and writes: the signal
            # comes once that write waits in Redis (a new blocked connection).
            assert _wait_until(lambda: box._leader == main and not box._waiting, 10)
            assert _wait_until(lambda: _blocked(admin) - before, 10)
            signal.pthread_kill(main, signal.SIGUSR1)
            worker.join(10)

        helper = _thread(orchestrate)
        with contextlib.suppress(_Alarm):  # the caller's own alarm may reach it: its business
            producer.track("cus_main")
        helper.join(15)
        signal.signal(signal.SIGUSR1, previous)
        first.join(10)
        admin.client_unpause()
        assert follower_id, "the worker's track() did not return"
        assert producer.flush(10)
        dropped = [event.event_id for _, events in errors for event in events]
        assert follower_id[0] not in dropped  # another thread's event is not dropped ...
        assert follower_id[0] in _ids_in(admin, STREAM)  # ... it is stored
    finally:
        signal.signal(signal.SIGUSR1, previous)
        admin.client_unpause()
        producer.close(timeout=2)


# --- poison entries ------------------------------------------------------------------------


POISONS = {
    "timestamp-not-a-number": {"i": "evt_poison", "t": "yesterday", "b": _body("evt_poison")},
    "timestamp-missing": {"i": "evt_poison", "b": _body("evt_poison")},
    "body-missing": {"i": "evt_poison", "t": repr(time.time())},
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_a_malformed_entry_does_not_block_the_relay(redis_server, server, poison):
    client = redis_server.client()
    _write(client, "evt_before")
    client.xadd(STREAM, POISONS[poison])  # a foreign producer, an old version, a typo
    _write(client, "evt_after")
    relay = Relay(
        RedisOutbox(redis_server.url, claim_idle=1.0),
        api_key=API_KEY,
        base_url=server.base_url,
        poll_interval=0.05,
        **FAST_RETRIES,
    )
    try:
        _wait_until(lambda: relay.outbox.received >= 3, 5)
        _write(client, "evt_later")  # written while the relay runs
        wanted = {"evt_before", "evt_after", "evt_later"}
        assert _wait_until(lambda: wanted <= set(server.event_ids()), 15), (
            f"delivered only {sorted(set(server.event_ids()))}"
        )
        # The malformed entry itself is kept where an operator sees it.
        assert "evt_poison" in _ids_in(client, STREAM) + _ids_in(client, DEAD)
    finally:
        relay.close(timeout=2)


def test_a_dead_letter_whose_body_is_not_json_does_not_break_the_listing(redis_server, server):
    client = redis_server.client()
    with Ingestion(
        outbox=redis_server.url,
        api_key=API_KEY,
        base_url=server.base_url,
        event_name="e",
        **FAST_RETRIES,
    ) as ingestion:
        refused = (
            '{"event_id":"evt_refused","customer_id":"cus_1","event_name":"e",'
            '"timestamp":"2026-12-04T00:00:00Z","metadata":{"k":"' + "x" * 600 + '"}}'
        )
        client.xadd(STREAM, {"i": "evt_refused", "t": repr(time.time()), "b": refused})
        client.xadd(STREAM, {"i": "evt_garbled", "t": repr(time.time()), "b": "{not json"})
        good = ingestion.track("cus_1")
        assert ingestion.flush(20)
        assert good in server.event_ids()
        assert set(_ids_in(client, DEAD)) == {"evt_refused", "evt_garbled"}  # both refused
        letters = ingestion.dead_letters()  # raises JSONDecodeError today
        assert "evt_refused" in [letter.event.event_id for letter in letters]


# --- a dead-letter key of the wrong type -----------------------------------------------------


def _refused_body(event_id: str) -> str:
    return (
        '{"event_id":"' + event_id + '","customer_id":"cus_1","event_name":"e",'
        '"timestamp":"2026-12-04T00:00:00Z","metadata":{"k":"' + "x" * 600 + '"}}'
    )


def test_a_refused_event_is_never_lost_when_the_dead_letter_key_is_unusable(redis_server, server):
    client = redis_server.client()
    client.set(DEAD, "someone else's key")  # a name clash, or an operator's mistake
    with Ingestion(
        outbox=redis_server.url,
        api_key=API_KEY,
        base_url=server.base_url,
        event_name="e",
        **FAST_RETRIES,
    ) as ingestion:
        box = ingestion.outbox
        assert isinstance(box, RedisOutbox)
        box.append("evt_refused", time.time(), _refused_body("evt_refused"))
        ingestion.flush(0.1)  # wakes the sender
        assert _wait_until(lambda: ingestion.stats.dead_lettered == 1)
        # The API refused it and it could not be buried: it must still be in the stream.
        assert "evt_refused" in _ids_in(client, STREAM)


def test_a_burial_that_keeps_failing_does_not_stop_delivery(redis_server, server):
    client = redis_server.client()
    client.set(DEAD, "someone else's key")
    with Ingestion(
        outbox=redis_server.url,
        api_key=API_KEY,
        base_url=server.base_url,
        event_name="e",
        flush_interval=0.05,
        **FAST_RETRIES,
    ) as ingestion:
        box = ingestion.outbox
        assert isinstance(box, RedisOutbox)
        box.append("evt_refused", time.time(), _refused_body("evt_refused"))
        ingestion.flush(0.1)
        assert _wait_until(lambda: ingestion.stats.dead_lettered == 1)
        later = ingestion.track("cus_1")
        assert _wait_until(lambda: later in server.event_ids(), 10)


# --- secrets -------------------------------------------------------------------------------


def test_a_password_given_in_the_url_query_never_shows(caplog):
    url = "redis://127.0.0.1:1/0?stream=s&password=s3cret-pw"  # nothing listens on port 1
    with caplog.at_level(logging.DEBUG, logger="dodo_ingest"):
        producer = Ingestion(outbox=url, deliver=False, event_name="e")
        try:
            producer.track("cus_1")  # Redis is unreachable: spilled, logged
            box = producer.outbox
            shown = [repr(box), getattr(box, "where", ""), repr(producer), caplog.text]
        finally:
            producer.close(timeout=0.2)
    assert "s3cret-pw" not in "\n".join([*shown, caplog.text])


# --- flush() after close() ---------------------------------------------------------------------


def test_flush_after_close_is_false_when_a_consumer_delivered_nothing(redis_server):
    with DevServer(faults="5xx=1.0") as failing:  # the API answers 500 to everything
        ingestion = Ingestion(
            outbox=redis_server.url,
            api_key=API_KEY,
            base_url=failing.base_url,
            event_name="e",
            flush_interval=0.05,
            **FAST_RETRIES,
        )
        ingestion.track("cus_1")
        ingestion.close(timeout=0.3)
        assert ingestion.stats.delivered == 0
        assert redis_server.client().xlen(STREAM) == 1  # not settled: still in the stream
        assert ingestion.flush() is False


# --- close() while Redis hangs ---------------------------------------------------------------


def test_a_relay_stops_within_its_shutdown_timeout_when_redis_hangs(redis_server, server):
    relay = Relay(
        RedisOutbox(redis_server.url, timeout=2.0),  # as `dodo-ingest relay` builds it
        api_key=API_KEY,
        base_url=server.base_url,
        shutdown_timeout=1.0,
    )
    assert _wait_until(lambda: relay.stats.pending == 0)  # it runs and Redis answers
    process = redis_server.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        relay.stop()
        started = time.monotonic()
        relay.run(stats_interval=0.05, on_stats=lambda stats: None)
        took = time.monotonic() - started
    finally:
        os.kill(process.pid, signal.SIGCONT)
    # The documented bound: shutdown_timeout, plus one Redis timeout for the one call made
    # before the relay learns that Redis stopped answering (then it makes no other).
    assert took < 1.0 + 2.0 + 1.0, f"the relay took {took:.1f} s to stop"


# --- attacks the code survives -------------------------------------------------------------


_FORKING_PRODUCER = """
import json, os, sys
from dodo_ingest import Ingestion

producer = Ingestion(outbox=sys.argv[1], deliver=False, event_name="e")
producer.track("cus_parent", event_id="parent_0")
pid = os.fork()
if pid == 0:  # the child: its own connections and consumer name, nothing of the parent's
    for i in range(50):
        producer.track("cus_child", event_id=f"child_{i}")
    ok = producer.flush(5)
    producer.close(2)
    os._exit(0 if ok and producer.stats.dropped == 0 else 3)
for i in range(1, 51):
    producer.track("cus_parent", event_id=f"parent_{i}")
_, status = os.waitpid(pid, 0)
for i in range(51, 101):  # the child closed its connections: the parent's still work
    producer.track("cus_parent", event_id=f"parent_{i}")
ok = producer.flush(5)
producer.close(2)
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "ok": ok,
                  "dropped": producer.stats.dropped, "spilled": producer.outbox.spilled_total}))
"""


def test_a_forked_producer_and_its_parent_each_write_their_own_events_once(redis_server):
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_PRODUCER, redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"child": 0, "ok": True, "dropped": 0, "spilled": 0}
    ids = _ids_in(redis_server.client(), STREAM)
    expected = [f"parent_{i}" for i in range(101)] + [f"child_{i}" for i in range(50)]
    assert sorted(ids) == sorted(expected)  # each exactly once: no copy of the parent's


def test_outbox_commands_on_a_redis_that_has_no_stream_yet(redis_server):
    runner = CliRunner()
    url = f"{redis_server.url}?stream=never-written"
    status = runner.invoke(main, ["outbox", "status", url, "--json"], catch_exceptions=False)
    assert status.exit_code == 0, status.output
    state = json.loads(status.output)
    assert (state["pending"], state["in_flight"], state["dead_letters"]) == (0, 0, 0)
    assert state["consumers"] == [] and state["oldest_age"] is None
    letters = runner.invoke(main, ["outbox", "dead-letters", url, "--json"], catch_exceptions=False)
    assert letters.exit_code == 0 and json.loads(letters.output) == []
    retried = runner.invoke(main, ["outbox", "retry", url, "--json"], catch_exceptions=False)
    assert retried.exit_code == 0 and json.loads(retried.output)["retried"] == 0
    assert redis_server.client().exists("never-written") == 0  # inspecting creates nothing


def test_a_consumer_group_destroyed_under_a_running_relay_loses_nothing(redis_server, server):
    client = redis_server.client()
    with Relay(
        redis_server.url, api_key=API_KEY, base_url=server.base_url, poll_interval=0.05
    ) as relay:
        for i in range(20):
            _write(client, f"before_{i}")
        assert _wait_until(lambda: relay.stats.pending == 0)
        client.xgroup_destroy(STREAM, "dodo-relays")  # an operator's mistake
        for i in range(20):
            _write(client, f"after_{i}")
        assert _wait_until(lambda: relay.stats.pending == 0)
    delivered = server.event_ids()
    expected = [f"before_{i}" for i in range(20)] + [f"after_{i}" for i in range(20)]
    assert sorted(set(delivered)) == sorted(expected)
