"""``stats.ingested`` counts what the API newly stored; replays are delivered but not stored."""

from __future__ import annotations

from collections.abc import Callable

from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer


def test_ingested_separates_new_events_from_ids_the_api_had_seen(
    server: DevServer, make_ingestion: Callable[..., Ingestion]
) -> None:
    first = make_ingestion(base_url=server.base_url, event_name="api.call", flush_interval=0.05)
    ids = [first.track("cus_1", event_id=f"evt_{i}") for i in range(30)]
    assert first.flush(timeout=10)
    assert (first.stats.delivered, first.stats.ingested) == (30, 30)

    replay = make_ingestion(base_url=server.base_url, event_name="api.call", flush_interval=0.05)
    for event_id in ids[:10]:
        replay.track("cus_1", event_id=event_id)
    replay.track("cus_1", event_id="evt_new")
    assert replay.flush(timeout=10)
    assert (replay.stats.delivered, replay.stats.ingested) == (11, 1)
    assert len(server.event_ids()) == 31
