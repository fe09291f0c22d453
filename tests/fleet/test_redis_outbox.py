"""``RedisOutbox`` against a real ``redis-server``: the stream, the group, dead letters, claims,
the spill while Redis is away, and the status."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import redis

from dodo_ingest import ConfigurationError
from dodo_ingest.delivery import OutboxBackend, OutboxFullError, RedisOutbox, SharedOutboxBackend


def _body(event_id: str, i: int = 0) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": "cus_1",
            "event_name": "e",
            "timestamp": "2026-12-04T00:00:00Z",
            "metadata": {"i": i},
        }
    )


def _append(box: RedisOutbox, count: int, prefix: str = "evt") -> list[str]:
    ids = [f"{prefix}_{i}" for i in range(count)]
    for i, event_id in enumerate(ids):
        box.append(event_id, time.time(), _body(event_id, i))
    return ids


@pytest.fixture
def outbox(redis_server):
    boxes: list[RedisOutbox] = []

    def make(**kwargs):
        box = RedisOutbox(redis_server.url, **kwargs)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()


def test_it_is_a_shared_outbox_backend(outbox):
    box = outbox()
    assert isinstance(box, OutboxBackend)
    assert isinstance(box, SharedOutboxBackend)


def test_entries_leave_the_stream_only_once_acknowledged(outbox, redis_server):
    box = outbox()
    box.register()
    ids = _append(box, 5)
    rows = box.fetch(10)
    assert [row[0] for row in rows] == ids  # in order, with their bodies
    assert json.loads(rows[2][2])["metadata"] == {"i": 2}
    assert [row[3] for row in rows] == sorted(row[3] for row in rows)
    client = redis_server.client()
    assert client.xlen("dodo-usage") == 5  # read, not settled: still there
    assert box.fetch(10) == []  # held by this consumer: not read twice
    box.delete(rows[:3])
    assert client.xlen("dodo-usage") == 2
    assert client.xpending("dodo-usage", "dodo-relays")["pending"] == 2
    box.delete(rows[3:])
    assert client.xlen("dodo-usage") == 0
    assert client.xpending("dodo-usage", "dodo-relays")["pending"] == 0
    assert box.settled_position() >= box.last_position() > 0


def test_a_group_created_late_still_reads_from_the_start(outbox):
    producer = outbox()
    ids = _append(producer, 3)  # before any group exists
    relay = outbox()
    assert [row[0] for row in relay.fetch(10)] == ids


def test_buried_entries_become_dead_letters_and_can_be_retried(outbox, redis_server):
    box = outbox()
    ids = _append(box, 3)
    rows = box.fetch(10)
    box.bury(rows[1:2], "HTTP 422: bad metadata", 422)
    box.delete([rows[0], rows[2]])
    assert box.count_pending() == 0
    assert box.count_dead_letters() == 1
    [letter] = box.dead_letters()
    assert letter.event.event_id == ids[1]
    assert (letter.reason, letter.status_code) == ("HTTP 422: bad metadata", 422)
    assert letter.failed_at.tzinfo is not None
    assert box.retry_dead_letters(["not-there"]) == 0
    assert box.retry_dead_letters([ids[1]]) == 1
    assert box.count_dead_letters() == 0
    [row] = box.fetch(10)
    assert row[0] == ids[1]
    assert json.loads(row[2])["metadata"] == {"i": 1}


def test_a_full_stream_refuses_new_events_and_never_trims(outbox, redis_server):
    box = outbox(maxlen=3)
    _append(box, 3)
    with pytest.raises(OutboxFullError, match="maxlen=3"):
        box.append("evt_x", time.time(), _body("evt_x"))
    assert redis_server.client().xlen("dodo-usage") == 3  # nothing trimmed
    box.delete(box.fetch(1))
    box.append("evt_y", time.time(), _body("evt_y"))  # room again
    assert [row[0] for row in box.fetch(10)] == ["evt_1", "evt_2", "evt_y"]


def test_a_released_consumer_leaves_its_entries_to_the_next_at_once(outbox):
    first = outbox(consumer="first")
    ids = _append(first, 4)
    held = first.fetch(10)
    assert len(held) == 4
    first.release()
    second = outbox(consumer="second", claim_idle=3600)
    assert second.fetch(10) == []  # held by the first: not new
    assert second.reclaim() == 4  # released: claimable although the idle limit is an hour
    assert [row[0] for row in second.fetch(10)] == ids  # same events, same ids


def test_entries_of_a_silent_consumer_are_claimed_after_claim_idle(outbox):
    silent = outbox(consumer="silent")
    ids = _append(silent, 3)
    silent.fetch(10)  # ... and never settles them (its process died)
    other = outbox(consumer="other", claim_idle=0.2)
    deadline = time.monotonic() + 10
    claimed = 0
    while claimed == 0 and time.monotonic() < deadline:
        claimed = other.reclaim()
    assert claimed == 3
    assert [row[0] for row in other.fetch(10)] == ids
    assert other.claimed == 3


def test_a_heartbeat_keeps_entries_from_being_claimed(outbox, redis_server):
    live = outbox(consumer="live")
    _append(live, 2)
    live.fetch(10)
    client = redis_server.client()
    ids = [
        entry["message_id"]
        for entry in client.xpending_range("dodo-usage", "dodo-relays", "-", "+", 10)
    ]
    # As if an hour passed without a sign of life...
    client.xclaim("dodo-usage", "dodo-relays", "live", 0, ids, idle=3_600_000, justid=True)
    live.heartbeat()  # ... but the consumer shows it is alive
    other = outbox(consumer="other", claim_idle=60)
    assert other.reclaim() == 0
    mine = client.xpending_range("dodo-usage", "dodo-relays", "-", "+", 10, consumername="live")
    assert len(mine) == 2


def test_a_reread_returns_what_this_consumer_holds(outbox):
    box = outbox()
    ids = _append(box, 3)
    assert len(box.fetch(10)) == 3
    box.reread()  # a delivery stopped on an unexpected error
    assert [row[0] for row in box.fetch(10)] == ids


def test_a_deleted_stream_is_recreated_with_its_group(outbox, redis_server):
    box = outbox()
    box.register()
    _append(box, 2)
    redis_server.client().delete("dodo-usage")  # FLUSHALL, or a Redis without persistence
    ids = _append(box, 2, prefix="again")
    assert [row[0] for row in box.fetch(10)] == ids


def test_events_wait_in_memory_while_redis_is_down_and_are_written_in_order(outbox, redis_server):
    box = outbox(timeout=0.5)
    box.register()
    before = _append(box, 2, prefix="before")
    redis_server.stop()
    during = _append(box, 5, prefix="during")  # never raises
    assert box.spilled() == 5
    assert box.push_spill() is False
    redis_server.start()
    assert box.push_spill() is True
    assert box.spilled() == 0
    after = _append(box, 2, prefix="after")
    assert [row[0] for row in box.fetch(20)] == before + during + after


def test_a_full_spill_refuses_the_event(outbox, redis_server):
    box = outbox(spill_size=2, timeout=0.5)
    redis_server.stop()
    _append(box, 2)
    with pytest.raises(Exception, match="unreachable") as raised:
        box.append("evt_x", time.time(), _body("evt_x"))
    assert raised.value.drop_reason == "outbox_error"  # type: ignore[attr-defined]
    assert box.take_spill()[0][0] == "evt_0"
    assert box.spilled() == 0


def test_a_redis_that_stops_answering_holds_append_for_at_most_the_timeout(outbox, redis_server):
    box = outbox(timeout=0.3)
    box.register()
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        box.append("evt_a", time.time(), _body("evt_a"))
        first = time.monotonic() - started
        started = time.monotonic()
        box.append("evt_b", time.time(), _body("evt_b"))
        second = time.monotonic() - started
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert first < 0.3 + 1.0  # the documented bound (with room for a slow machine)
    assert second < 0.1  # the spill is not empty: no more waiting on Redis
    assert box.spilled() == 2
    assert box.push_spill()
    assert [row[0] for row in box.fetch(10)] == ["evt_a", "evt_b"]


def test_acknowledgements_that_fail_are_kept_and_never_resent(outbox, redis_server):
    box = outbox(timeout=0.5)
    _append(box, 3)
    rows = box.fetch(10)
    redis_server.stop()
    box.delete(rows[:2])  # the API acknowledged them, Redis is away: remembered
    box.bury(rows[2:], "HTTP 400: no", 400)
    with pytest.raises(redis.ConnectionError):
        box.fetch(10)  # nothing is read while the settlements are not stored
    redis_server.start()
    assert box.fetch(10) == []  # stored first, and not read again
    assert box.count_pending() == 0
    assert [letter.event.event_id for letter in box.dead_letters()] == ["evt_2"]


def test_status_shows_pending_in_flight_lag_and_consumers(outbox):
    box = outbox(consumer="relay-a")
    _append(box, 5)
    box.fetch(2)
    state = box.status()
    assert (state.pending, state.in_flight, state.lag, state.dead_letters) == (5, 2, 3, 0)
    assert state.oldest_age is not None and state.oldest_age >= 0
    assert [(c.name, c.pending) for c in state.consumers] == [("relay-a", 2)]


def test_url_settings_and_their_errors(redis_server):
    url = f"{redis_server.url}?stream=usage-a&group=g1&maxlen=7&consumer=c1&claim_idle=5"
    with RedisOutbox(url) as box:
        assert (box.stream, box.group, box.maxlen, box.consumer, box.claim_idle) == (
            "usage-a",
            "g1",
            7,
            "c1",
            5.0,
        )
        assert box.dead_stream == "usage-a:dead"
    with RedisOutbox(url, stream="usage-b", maxlen=9) as box:  # arguments win
        assert (box.stream, box.maxlen) == ("usage-b", 9)
    with pytest.raises(ConfigurationError, match="maxlen"):
        RedisOutbox(f"{redis_server.url}?maxlen=lots")
    with pytest.raises(ConfigurationError, match="claim_idle"):
        RedisOutbox(redis_server.url, claim_idle=0)
    with pytest.raises(ConfigurationError, match=r"redis\.Redis"):
        RedisOutbox(42)  # type: ignore[arg-type]


def test_the_password_never_shows(redis_server):
    box = RedisOutbox("redis://user:s3cret-pw@127.0.0.1:1/0", timeout=0.2)
    try:
        assert "s3cret-pw" not in repr(box)
        assert "s3cret-pw" not in box.where
        with pytest.raises(redis.RedisError) as raised:
            box.count_pending()
        assert "s3cret-pw" not in str(raised.value)
    finally:
        box.close()


def test_a_given_client_with_decoded_responses_works(redis_server):
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    with RedisOutbox(client) as box:
        ids = _append(box, 2)
        rows = box.fetch(10)
        assert [row[0] for row in rows] == ids
        box.bury(rows[:1], "HTTP 400: no", 400)
        assert box.dead_letters()[0].status_code == 400
        box.delete(rows[1:])
        assert box.status().pending == 0
    assert client.ping()  # a given client is not closed


def test_events_tracked_at_once_by_many_threads_share_round_trips(outbox, redis_server):
    box = outbox()
    batches: list[int] = []
    write = box._write

    def counting_write(batch):
        batches.append(len(batch))
        write(batch)

    box._write = counting_write  # type: ignore[method-assign]
    per_thread = 300

    def produce(slot: int) -> None:
        for i in range(per_thread):
            event_id = f"t{slot}_{i}"
            box.append(event_id, time.time(), _body(event_id, i))

    threads = [threading.Thread(target=produce, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(batches) == 8 * per_thread  # every event written once...
    assert len(batches) < 8 * per_thread  # ... in fewer round trips than events
    assert max(batches) > 1
    entries = redis_server.client().xrange("dodo-usage")
    ids = [fields[b"i"].decode() for _, fields in entries]
    assert len(ids) == len(set(ids)) == 8 * per_thread
    for slot in range(8):  # each thread's events in the order it tracked them
        mine = [int(i.split("_")[1]) for i in ids if i.startswith(f"t{slot}_")]
        assert mine == list(range(per_thread))


def test_a_redis_that_may_evict_the_stream_is_reported(outbox, redis_server, caplog):
    redis_server.client().config_set("maxmemory-policy", "allkeys-lru")
    with caplog.at_level("WARNING", logger="dodo_ingest"):
        outbox().register()
    assert "maxmemory-policy is allkeys-lru" in caplog.text
    caplog.clear()
    redis_server.client().config_set("maxmemory-policy", "noeviction")
    with caplog.at_level("WARNING", logger="dodo_ingest"):
        outbox().register()
    assert "maxmemory-policy" not in caplog.text


def test_settlements_after_redis_lost_everything_do_not_block_the_consumer(outbox, redis_server):
    box = outbox(timeout=0.5)
    _append(box, 2)
    rows = box.fetch(10)
    redis_server.stop()
    box.delete(rows[:1])  # acknowledged by the API while Redis is away: kept for later
    box.bury(rows[1:], "HTTP 400: no", 400)
    # Redis comes back empty (no persistence): the stream and its group are gone.
    for path in redis_server.dir.iterdir():
        if path.is_dir():
            for inner in path.iterdir():
                inner.unlink()
        else:
            path.unlink()
    redis_server.start()
    assert redis_server.client().exists("dodo-usage") == 0
    # Another producer writes first: the stream exists again, its group does not.
    other = outbox()
    ids = _append(other, 2, prefix="later")
    # The settlements are written (the dead letter) or dropped (the lost group's), never
    # stuck in front of what comes next.
    assert [row[0] for row in box.fetch(10)] == ids
    assert [letter.event.event_id for letter in box.dead_letters()] == ["evt_1"]


def test_claims_come_a_batch_at_a_time(outbox, redis_server):
    dead = outbox(consumer="dead")
    _append(dead, 2500)
    while dead.fetch(1000):  # it read everything...
        pass
    dead.release()  # ... and its entries are all claimable now
    other = outbox(consumer="other", claim_idle=60)
    claims = []
    for _ in range(3):
        claims.append(other.reclaim())
        assert other.reclaim_interval == (0.0 if sum(claims) < 2500 else 30.0)
        other.delete(other.fetch(1000))  # sent before more is claimed
    assert claims == [1000, 1000, 500]
    assert redis_server.client().xlen("dodo-usage") == 0
