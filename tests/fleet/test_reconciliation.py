"""Exact reconciliation of a fleet: producer processes writing to a Redis stream, relay
processes delivering it through a dev server that misbehaves on purpose, a relay killed
with ``kill -9`` while it holds a batch, a producer killed right after ``track()``, and Redis
restarted (AOF) under them. Every id tracked is stored once; none is missing."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from contextlib import ExitStack

from dodo_ingest import Ingestion
from dodo_ingest.delivery import RedisOutbox, Relay
from dodo_ingest.devserver import DevServer
from tests.fleet._fleet import (
    API_KEY,
    FAULTS,
    GROUP,
    Process,
    ProducerProcess,
    RelayProcess,
    held,
    held_ids,
    pending_ids,
    wait_until,
)

STREAM = "fleet-usage"


def freeze_while_holding(relay: RelayProcess, client, stream: str) -> list[str]:
    """Wait until ``relay`` has delivered something and holds entries read from the stream,
    then stop it (SIGSTOP) in that state; return the ids of the entries it holds."""
    relay.wait_counters(lambda c: c["delivered"] > 0, f"{relay.name} to deliver")
    deadline = time.monotonic() + 30
    while True:
        if held(client, stream).get(relay.name, 0) > 0:
            relay.freeze()  # what it holds can no longer change
            ids = held_ids(client, stream, relay.name)
            if ids:
                return ids
            relay.thaw()  # it settled them in between: try again
        assert time.monotonic() < deadline, relay.failure(f"{relay.name} never held entries")
        time.sleep(0.002)


def test_producers_and_relays_through_faults_a_relay_kill_and_a_redis_restart(
    redis_server, tmp_path
):
    url = f"{redis_server.url}?stream={STREAM}"
    client = redis_server.client()
    started = time.monotonic()
    with DevServer(faults=FAULTS, retry_after=0.05, seed=7) as server, ExitStack() as stack:
        relay_a = stack.enter_context(RelayProcess(url, server.base_url, tmp_path, "relay-a"))
        relay_b = stack.enter_context(RelayProcess(url, server.base_url, tmp_path, "relay-b"))
        producers = [
            stack.enter_context(
                ProducerProcess(url, tmp_path, f"p{k}", minimum=8_000, maximum=12_000)
            )
            for k in range(3)
        ]
        assert relay_a.started() == {"relay": "relay-a", "stream": STREAM, "group": GROUP}
        assert relay_b.started()["relay"] == "relay-b"
        for producer in producers:
            producer.expect(lambda line: line == "ready", "ready")

        # 1. kill -9 relay B while it holds a batch read from the stream.
        freeze_while_holding(relay_b, client, STREAM)
        relay_b.kill()
        orphans = held_ids(client, STREAM, "relay-b")  # final: nobody holds them for it now
        assert orphans, "relay-b held nothing when it was killed"
        relay_c = stack.enter_context(RelayProcess(url, server.base_url, tmp_path, "relay-c"))
        relay_c.started()

        # 2. Restart Redis (clean stop, AOF reloaded) while producers track and relays deliver.
        wait_until(
            lambda: all(p.tracked() >= 1_000 for p in producers), "the producers to be under way"
        )
        before = [p.tracked() for p in producers]
        redis_server.restart()
        wait_until(
            lambda: all(p.tracked() >= n + 500 for p, n in zip(producers, before, strict=True)),
            "every producer to go on tracking after the restart",
            timeout=30,
        )

        # 3. What relay B held was claimed by a live relay and sent again.
        wait_until(
            lambda: held(client, STREAM).get("relay-b", 0) == 0,
            "the entries of the killed relay to be claimed",
            timeout=30,
        )

        # 4. Producers stop; each flush says every event is in Redis.
        reports = [producer.finish() for producer in producers]
        tracked = [event_id for producer in producers for event_id in producer.ids()]

        # 5. The relays drain the stream (bounded).
        wait_until(lambda: client.xlen(STREAM) == 0, "the relays to settle every entry", timeout=60)
        stored = server.event_ids()
        stats = server.stats
        finals = [relay.terminate() for relay in (relay_a, relay_c)]
    elapsed = time.monotonic() - started

    assert len(tracked) == sum(report["tracked"] for report in reports) >= 24_000
    assert len(set(tracked)) == len(tracked)  # every id is unique
    for report in reports:
        assert report["flushed"] is True
        assert (report["enqueued"], report["dropped"]) == (report["tracked"], 0)
    # The restart happened while they tracked: some events waited in memory meanwhile.
    assert sum(report["spilled"] for report in reports) > 0

    assert len(stored) == len(set(stored))  # nothing stored twice
    assert set(stored) == set(tracked)  # nothing missing, nothing extra
    assert client.xlen(f"{STREAM}:dead") == 0  # no dead letters

    faults = stats["faults_injected"]
    assert all(faults[kind] > 0 for kind in ("5xx", "429", "reset", "lost_ack")), faults
    # Lost acknowledgements (and the killed relay's batch) were sent again with the same ids.
    assert stats["duplicates_ignored"] > 0

    for code, last in finals:
        assert code == 0
        assert (last["dead_lettered"], last["pending"], last["dead_letters"]) == (0, 0, 0)
    assert sum(last["retried"] for _, last in finals) > 0
    assert sum(last["claimed"] for _, last in finals) >= len(orphans)
    print(f"{len(tracked)} events in {elapsed:.1f} s; server stats {stats}")


PRODUCE_THEN_BLOCK = """
import json, sys
from dodo_ingest import Ingestion

ingestion = Ingestion(outbox=sys.argv[1], deliver=False, event_name="fleet.call",
                      flush_interval=60)
ids = [ingestion.track("cus_killed", metadata={"n": n}) for n in range(500)]
print("ids " + json.dumps(ids), flush=True)
sys.stdin.readline()  # blocks until killed
"""


def test_a_producer_killed_right_after_track_returned_loses_nothing(redis_server, tmp_path):
    url = f"{redis_server.url}?stream={STREAM}"
    script = tmp_path / "produce_then_block.py"
    script.write_text(PRODUCE_THEN_BLOCK)
    with Process([sys.executable, str(script), url], tmp_path, "producer") as producer:
        _, line = producer.expect(lambda text: text.startswith("ids "), "its ids")
        producer.kill()  # no close(), no flush(), no atexit: kill -9
    ids = json.loads(line.removeprefix("ids "))
    client = redis_server.client()
    assert client.xlen(STREAM) == 500  # in Redis once track() returned
    with DevServer(faults=FAULTS, retry_after=0.05, seed=3) as server:
        with Relay(url, api_key=API_KEY, base_url=server.base_url) as relay:
            wait_until(lambda: relay.stats.pending == 0, "the relay to deliver them")
            assert (relay.stats.delivered, relay.stats.dead_lettered) == (500, 0)
        assert Counter(server.event_ids()) == Counter(ids)


def test_redis_restarted_while_a_relay_holds_entries_loses_nothing(redis_server, tmp_path):
    url = f"{redis_server.url}?stream={STREAM}"
    client = redis_server.client()
    with Ingestion(outbox=url, deliver=False, event_name="fleet.call") as producer:
        ids = [producer.track("cus_1", metadata={"n": n}) for n in range(3_000)]
    with (
        DevServer(faults=FAULTS, retry_after=0.05, seed=3) as server,
        RelayProcess(url, server.base_url, tmp_path, "relay-a", "--batch-size", "100") as relay,
    ):
        relay.started()
        holding = freeze_while_holding(relay, client, STREAM)
        redis_server.restart()  # clean stop (AOF written) and start, the relay frozen meanwhile
        # The group came back from the AOF with what the relay holds.
        assert set(held_ids(client, STREAM, "relay-a")) == set(holding)
        assert set(holding) <= pending_ids(client, STREAM)
        relay.thaw()  # its connections to Redis broke meanwhile; it goes on
        wait_until(lambda: client.xlen(STREAM) == 0, "the relay to settle every entry", 30)
        code, last = relay.terminate()
        assert code == 0
        assert (last["delivered"], last["dead_lettered"], last["pending"]) == (3_000, 0, 0)
        stored = server.event_ids()
    assert len(stored) == len(set(stored))
    assert set(stored) == set(ids)


def test_a_live_relay_waiting_out_a_retry_after_keeps_its_entries(redis_server):
    """A relay waiting 3 s on ``Retry-After`` (claim_idle 1.5 s) must keep showing it is
    alive: the entries it holds must not become claimable by another relay.

    Regression test of a bug in 6d6f324: ``Pipeline._sleep`` waited in chunks of
    ``HEARTBEAT_INTERVAL`` (10 s) instead of the outbox's ``heartbeat_interval``
    (``claim_idle / 3``), so a live relay's entries were claimed during a retry delay."""
    with Ingestion(outbox=redis_server.url, deliver=False, event_name="e") as producer:
        for n in range(10):
            producer.track("cus_1", metadata={"n": n})
    with (
        DevServer(faults="429=1.0", retry_after=3.0) as server,
        RedisOutbox(redis_server.url, consumer="waiting", claim_idle=1.5) as box,
        Relay(box, api_key=API_KEY, base_url=server.base_url),
        RedisOutbox(redis_server.url, consumer="other", claim_idle=1.5) as other,
    ):
        wait_until(lambda: server.stats["requests"].get("429", 0) >= 1, "the first 429")
        paused_at = time.monotonic()
        client = redis_server.client()
        assert held(client, "dodo-usage") == {"waiting": 10}
        while time.monotonic() - paused_at < 2.5:  # within the 3 s pause
            assert other.reclaim() == 0, "a relay claimed the entries of a live relay"
            time.sleep(0.05)
