"""The queue-full policy: block briefly, then drop, count and report; an outbox never drops."""

from __future__ import annotations

import threading
import time
from typing import Any

from dodo_ingest.client import EventInput
from dodo_ingest.delivery import EventsDroppedError
from tests.delivery._sink import Answer, Sink, accept_all


def _stalled_sink(release: threading.Event) -> Sink:
    def stall(events: list[dict[str, Any]]) -> Answer:
        release.wait(10)
        return accept_all(events)

    return Sink(stall)


def test_a_full_queue_blocks_briefly_then_drops_counts_and_reports(make_ingestion):
    release = threading.Event()
    reports: list[tuple[BaseException, list[EventInput]]] = []
    with _stalled_sink(release) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            batch_size=100,
            max_queue_size=200,
            queue_full_timeout=0.05,
            on_error=lambda error, events: reports.append((error, events)),
        )
        ids = [ingestion.track("cus_1") for _ in range(100)]
        while not sink.requests:  # the sender is stuck on the first batch
            time.sleep(0.005)
        start = time.monotonic()
        ids += [ingestion.track("cus_1") for _ in range(250)]
        blocked = time.monotonic() - start
        stats = ingestion.stats
        assert stats.dropped == 50
        assert stats.enqueued == 350  # every event track() returned an id for
        assert stats.queued == 300
        # The first overflow waited queue_full_timeout; the queue stayed full, so the next
        # 49 were dropped at once rather than each waiting 0.05 s more.
        assert 0.05 <= blocked < 1.0
        release.set()
        assert ingestion.flush(10)
        assert ingestion.stats.delivered == 300
        assert ingestion.stats.queued == 0
        assert ingestion.stats.enqueued == 350
        delivered = set(sink.event_ids())
        assert delivered == set(ids[:300])  # the newest events were the ones dropped
        ((error, events),) = reports
        assert isinstance(error, EventsDroppedError)
        assert (error.reason, error.count) == ("queue_full", 50)
        assert [event.event_id for event in events] == ids[300:]


def test_with_an_outbox_the_memory_bound_does_not_drop(make_ingestion, tmp_path):
    release = threading.Event()
    with _stalled_sink(release) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            batch_size=100,
            max_queue_size=200,
            queue_full_timeout=0.0,
            outbox=tmp_path / "outbox.db",
        )
        ids = [ingestion.track("cus_1") for _ in range(600)]
        assert ingestion.stats.dropped == 0
        assert ingestion.outbox is not None
        assert ingestion.outbox.count_pending() == 600
        release.set()
        assert ingestion.flush(10)
        assert sorted(sink.event_ids()) == sorted(ids)
        assert ingestion.outbox.count_pending() == 0
