"""Exact reconciliation: every tracked id stored once by a server that misbehaves on purpose."""

from __future__ import annotations

import threading
from collections import Counter

from dodo_ingest.devserver import DevServer
from tests.delivery.conftest import FAST_RETRIES

FAULTS = "5xx=0.12,429=0.08,reset=0.08,lost_ack=0.08,slow=0.06"


def test_50k_events_through_faults_arrive_exactly_once(make_ingestion):
    with DevServer(faults=FAULTS, retry_after=0.05, seed=7, slow_delay=0.4) as server:
        ingestion = make_ingestion(
            base_url=server.base_url,
            event_name="api.call",
            batch_size=500,
            flush_interval=0.05,
            timeout=0.3,  # shorter than a slow answer: those time out after being stored
            **FAST_RETRIES,
        )
        tracked: list[list[str]] = [[] for _ in range(4)]

        def produce(slot: int) -> None:
            for i in range(12_500):
                tracked[slot].append(ingestion.track(f"cus_{slot}", metadata={"i": i}))

        threads = [threading.Thread(target=produce, args=(slot,)) for slot in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert ingestion.flush(60)
        stored = server.event_ids()
        expected = {event_id for ids in tracked for event_id in ids}
        assert len(expected) == 50_000
        assert Counter(stored).most_common(1)[0][1] == 1  # nothing stored twice
        assert set(stored) == expected  # nothing missing, nothing extra
        faults = server.stats["faults_injected"]
        assert all(faults[kind] > 0 for kind in ("5xx", "429", "reset", "lost_ack", "slow"))
        assert server.stats["duplicates_ignored"] > 0  # lost acks were resent with the same ids
        stats = ingestion.stats
        assert (stats.enqueued, stats.delivered, stats.dead_lettered, stats.dropped) == (
            50_000,
            50_000,
            0,
            0,
        )
        assert stats.retried > 0
