"""``Ingestion`` on a Redis outbox: producers only, produce-and-deliver, relays, and Redis
going away under them (real ``redis-server``, real dev server over HTTP)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from dodo_ingest import ConfigurationError, Ingestion
from dodo_ingest.delivery import EventsDroppedError, RedisOutbox, Relay
from dodo_ingest.devserver import DevServer
from tests.delivery.conftest import API_KEY, FAST_RETRIES


def _wait_until(predicate, timeout: float = 20.0) -> bool:
    """Poll observable state until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def server():
    with DevServer() as running:
        yield running


def test_a_producer_writes_to_the_stream_and_needs_no_key(redis_server, monkeypatch):
    monkeypatch.delenv("DODO_PAYMENTS_API_KEY", raising=False)
    with Ingestion(outbox=redis_server.url, deliver=False, event_name="e") as producer:
        ids = [producer.track("cus_1", metadata={"i": i}) for i in range(20)]
        # In the stream when track() returns: nothing waits in this process.
        assert redis_server.client().xlen("dodo-usage") == 20
        assert producer.flush(5)
        stats = producer.stats
        assert (stats.enqueued, stats.delivered, stats.queued, stats.dropped) == (20, 0, 0, 0)
    client = redis_server.client()
    bodies = [fields[b"i"].decode() for _, fields in client.xrange("dodo-usage")]
    assert bodies == ids


def test_deliver_false_needs_a_shared_outbox(tmp_path):
    with pytest.raises(ConfigurationError, match="deliver=False needs a shared outbox"):
        Ingestion(outbox=tmp_path / "o.db", deliver=False)
    with pytest.raises(ConfigurationError, match="deliver=False"):
        Ingestion(api_key=API_KEY, deliver=False)
    with pytest.raises(ConfigurationError, match="deliver must be True or False"):
        Ingestion(api_key=API_KEY, deliver="no")  # type: ignore[arg-type]


def test_a_relay_delivers_what_producers_wrote_exactly_once(redis_server, server):
    producers = [
        Ingestion(outbox=redis_server.url, deliver=False, event_name="e") for _ in range(2)
    ]
    tracked = [
        p.track(f"cus_{n}", metadata={"i": i}) for i in range(300) for n, p in enumerate(producers)
    ]
    for producer in producers:
        producer.close()
    with Relay(redis_server.url, api_key=API_KEY, base_url=server.base_url) as relay:
        assert _wait_until(lambda: relay.stats.pending == 0)
        stats = relay.stats
        assert (stats.received, stats.delivered, stats.dead_lettered) == (600, 600, 0)
        assert stats.lag == 0
    assert Counter(server.event_ids()) == Counter(tracked)


def test_produce_and_deliver_flush_waits_until_the_api_has_them(redis_server, server):
    with Ingestion(
        outbox=redis_server.url, api_key=API_KEY, base_url=server.base_url, event_name="e"
    ) as ingestion:
        ids = [ingestion.track("cus_1", metadata={"i": i}) for i in range(250)]
        assert ingestion.flush(20)
        assert set(server.event_ids()) == set(ids)  # flush returned: stored
        assert redis_server.client().xlen("dodo-usage") == 0  # and acknowledged in the stream
        assert ingestion.stats.delivered == 250


def test_flush_waits_for_entries_another_consumer_holds(redis_server, server):
    """A flush settles once the whole group settled every entry up to this process's newest,
    whoever holds them."""
    with Ingestion(outbox=redis_server.url, deliver=False, event_name="e") as producer:
        earlier = producer.track("cus_1")
    with RedisOutbox(redis_server.url, consumer="slow") as slow:
        held = slow.fetch(10)  # another relay holds the earlier event...
        assert [row[0] for row in held] == [earlier]
        with Ingestion(
            outbox=RedisOutbox(redis_server.url, consumer="fast"),
            api_key=API_KEY,
            base_url=server.base_url,
            event_name="e",
            flush_interval=0.05,
        ) as ingestion:
            mine = ingestion.track("cus_1")
            assert _wait_until(lambda: mine in server.event_ids())  # ours went through
            assert not ingestion.flush(0.3)  # ... but the earlier one is not settled
            slow.delete(held)  # the other relay settles it
            assert ingestion.flush(10)


def test_redis_down_at_track_time_costs_at_most_the_timeout_and_loses_nothing(redis_server, server):
    producer = Ingestion(
        outbox=RedisOutbox(redis_server.url, timeout=0.3), deliver=False, event_name="e"
    )
    try:
        first = producer.track("cus_1")
        os.kill(redis_server.process.pid, signal.SIGSTOP)  # Redis stops answering
        try:
            started = time.monotonic()
            stalled = producer.track("cus_1")
            waited = time.monotonic() - started
            started = time.monotonic()
            more = [producer.track("cus_1", metadata={"i": i}) for i in range(50)]
            rest = time.monotonic() - started
            assert producer.stats.queued == 51  # in memory, counted
            assert not producer.flush(0.2)  # not in Redis yet: a flush says so
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert waited < 0.3 + 1.0
        assert rest < 1.0  # no more waiting on Redis once the first call timed out
        assert producer.flush(10)  # the sender wrote them when Redis answered again
        assert producer.stats.queued == 0
    finally:
        producer.close()
    with Relay(redis_server.url, api_key=API_KEY, base_url=server.base_url) as relay:
        assert _wait_until(lambda: relay.stats.pending == 0)
    ids = [first, stalled, *more]
    assert Counter(server.event_ids()) == Counter(ids)


def test_redis_stopped_and_back_later(redis_server, server):
    producer = Ingestion(
        outbox=RedisOutbox(redis_server.url, timeout=0.3),
        deliver=False,
        event_name="e",
        flush_interval=0.05,
    )
    try:
        redis_server.stop()
        ids = [producer.track("cus_1", metadata={"i": i}) for i in range(30)]
        assert producer.stats.queued == 30
        redis_server.start()
        assert producer.flush(10)
    finally:
        producer.close()
    with Relay(redis_server.url, api_key=API_KEY, base_url=server.base_url) as relay:
        assert _wait_until(lambda: relay.stats.pending == 0)
    assert Counter(server.event_ids()) == Counter(ids)


def test_events_never_stored_are_counted_as_dropped_at_close(redis_server):
    errors: list[BaseException] = []
    producer = Ingestion(
        outbox=RedisOutbox(redis_server.url, timeout=0.2),
        deliver=False,
        event_name="e",
        on_error=lambda error, events: errors.append(error),
    )
    redis_server.stop()
    for _ in range(4):
        producer.track("cus_1")
    producer.close(timeout=0.3)
    stats = producer.stats
    assert (stats.dropped, stats.queued) == (4, 0)
    assert not producer.flush()
    assert [(e.reason, e.count) for e in errors if isinstance(e, EventsDroppedError)] == [
        ("shutdown", 4)
    ]


def test_a_full_stream_drops_and_counts(redis_server):
    errors: list[BaseException] = []
    with Ingestion(
        outbox=RedisOutbox(redis_server.url, maxlen=5),
        deliver=False,
        event_name="e",
        on_error=lambda error, events: errors.append(error),
    ) as producer:
        for _ in range(8):
            producer.track("cus_1")  # never raises
        assert producer.stats.dropped == 3
    assert redis_server.client().xlen("dodo-usage") == 5
    assert [(e.reason, e.count) for e in errors if isinstance(e, EventsDroppedError)] == [
        ("outbox_full", 3)
    ]


def test_refused_events_become_dead_letters_in_redis(redis_server):
    reported: list[tuple[BaseException, list[str]]] = []
    with DevServer() as server:
        with Ingestion(
            outbox=redis_server.url,
            api_key=API_KEY,
            base_url=server.base_url,
            event_name="e",
            on_error=lambda error, events: reported.append(
                (error, [event.event_id for event in events])
            ),
            **FAST_RETRIES,
        ) as ingestion:
            good = ingestion.track("cus_1")
            # A metadata value the server refuses (the API limits values to 500 characters);
            # track() refuses it too, so write it to the stream the way a foreign producer would.
            box = ingestion.outbox
            assert isinstance(box, RedisOutbox)
            bad_body = (
                '{"event_id":"evt_bad","customer_id":"cus_1","event_name":"e",'
                '"timestamp":"2026-12-04T00:00:00Z","metadata":{"k":"' + "x" * 600 + '"}}'
            )
            box.append("evt_bad", time.time(), bad_body)
            assert ingestion.flush(20)
            assert ingestion.stats.dead_lettered == 1
            [letter] = ingestion.dead_letters()
            assert letter.event.event_id == "evt_bad"
            assert letter.status_code in (400, 422)
            assert len(letter.event.metadata["k"]) == 600  # as stored, though over the limit
        assert server.event_ids() == [good]
        # on_error heard of it with its event, though the event breaks the limits.
        assert [ids for _, ids in reported] == [["evt_bad"]]


def test_an_entry_older_than_max_event_age_is_dead_lettered_unsent(redis_server, server):
    with RedisOutbox(redis_server.url) as box:
        stale = time.time() - 2 * 3600  # sat in Redis for two hours
        body = (
            '{"event_id":"evt_stale","customer_id":"cus_1","event_name":"e",'
            '"timestamp":"2026-12-03T00:00:00Z"}'
        )
        box.append("evt_stale", stale, body)
    with Relay(redis_server.url, api_key=API_KEY, base_url=server.base_url) as relay:
        assert _wait_until(lambda: relay.stats.dead_letters == 1)
        assert relay.stats.pending == 0
        [letter] = relay.outbox.dead_letters()
        assert letter.event.event_id == "evt_stale"
        assert letter.reason.startswith("expired")
    assert server.event_ids() == []  # never sent: the API would refuse it
