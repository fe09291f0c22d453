"""``track()`` and construction: validation in the caller, ids, timestamps, settings."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from dodo_ingest.client import ConfigurationError, DodoClient, EventValidationError
from dodo_ingest.delivery import Ingestion, new_event_id
from tests.delivery._sink import Blackhole, Sink, closed_port_url
from tests.delivery.conftest import API_KEY


def test_track_returns_a_new_sortable_unique_id_without_io(make_ingestion):
    with Blackhole() as hanging:
        ingestion = make_ingestion(base_url=hanging.base_url, event_name="api.call")
        start = time.perf_counter()
        ids = [ingestion.track("cus_1") for _ in range(2000)]
        elapsed = time.perf_counter() - start
    assert len(set(ids)) == 2000
    assert all(i.startswith("evt_") and len(i) == 36 for i in ids)
    # Time-ordered: ids made in different milliseconds sort by creation time.
    first = new_event_id()
    time.sleep(0.002)
    assert new_event_id()[:16] > first[:16]
    # The API hangs (10 s request timeout): had track() waited on it even once, this would show.
    assert elapsed < 5.0
    assert ingestion.stats.enqueued == 2000


def test_track_keeps_the_callers_id_and_timestamp():
    with Sink() as sink:
        ingestion = Ingestion(api_key=API_KEY, base_url=sink.base_url, event_name="api.call")
        when = datetime.now(UTC) - timedelta(minutes=5)
        assert ingestion.track("cus_1", event_id="my-id-1", timestamp=when) == "my-id-1"
        ingestion.track("cus_2", "llm.call", {"model": "m", "inputTokens": 3, "ok": True})
        assert ingestion.flush(5)
        ingestion.close()
    first, second = (event for _, events, _ in sink.requests for event in events)
    assert first["event_id"] == "my-id-1"
    assert first["event_name"] == "api.call"
    parsed = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert abs((parsed - when).total_seconds()) < 0.001
    assert second["metadata"] == {"model": "m", "inputTokens": 3, "ok": True}
    assert second["event_name"] == "llm.call"
    now = datetime.now(UTC)
    stamped = datetime.fromisoformat(second["timestamp"].replace("Z", "+00:00"))
    assert timedelta(0) <= now - stamped < timedelta(seconds=10)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": "c", "metadata": {"k": {"nested": 1}}}, "metadata.k"),
        ({"customer_id": "c", "metadata": {f"k{i}": i for i in range(51)}}, "metadata"),
        ({"customer_id": "c", "metadata": {"k": "x" * 501}}, "metadata.k"),
        ({"customer_id": "c", "event_id": ""}, "event_id"),
        ({"customer_id": "c", "timestamp": datetime(2026, 1, 1)}, "timestamp"),
        ({"customer_id": "c", "timestamp": timedelta(hours=-2)}, "timestamp"),
        ({"customer_id": "c", "timestamp": timedelta(minutes=6)}, "timestamp"),
    ],
)
def test_bad_events_raise_in_the_caller_and_are_not_queued(make_ingestion, kwargs, field):
    if isinstance(kwargs.get("timestamp"), timedelta):  # relative to when the test runs
        kwargs = {**kwargs, "timestamp": datetime.now(UTC) + kwargs["timestamp"]}
    ingestion = make_ingestion(base_url=closed_port_url(), event_name="api.call")
    with pytest.raises(EventValidationError) as caught:
        ingestion.track(**kwargs)
    assert caught.value.field == field
    assert ingestion.stats.enqueued == 0


def test_an_event_name_is_required_from_the_call_or_the_default(make_ingestion):
    ingestion = make_ingestion(base_url=closed_port_url())
    with pytest.raises(EventValidationError) as caught:
        ingestion.track("cus_1")
    assert caught.value.field == "event_name"
    assert ingestion.track("cus_1", "named")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 1001}, "batch_size"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"shutdown_timeout": -1}, "shutdown_timeout"),
        ({"max_event_age": float("nan")}, "max_event_age"),
        ({"max_event_age": math.inf}, "max_event_age"),
        ({"flush_interval": math.inf}, "flush_interval"),
        ({"flush_interval": 1e12}, "flush_interval"),
        ({"queue_full_timeout": math.inf}, "queue_full_timeout"),
        ({"shutdown_timeout": math.inf}, "shutdown_timeout"),
        ({"flush_timeout": math.nan}, "flush_timeout"),
        ({"retry_initial_delay": math.inf}, "retry_initial_delay"),
        ({"retry_max_delay": math.inf}, "retry_max_delay"),
        ({"max_retry_after": math.inf}, "max_retry_after"),
        ({"auth_retry_interval": math.inf}, "auth_retry_interval"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": httpx2.Timeout(10.0, connect=-1.0)}, "timeout.connect"),
        ({"event_name": ""}, "event_name"),
        ({"on_error": "not callable"}, "on_error"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, name):
    with pytest.raises(ConfigurationError, match=name):
        Ingestion(api_key=API_KEY, base_url="http://127.0.0.1:9", **kwargs)


def test_a_missing_api_key_fails_at_construction(monkeypatch):
    monkeypatch.delenv("DODO_PAYMENTS_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DODO_PAYMENTS_API_KEY"):
        Ingestion(base_url="http://127.0.0.1:9")


def test_settings_come_from_a_client_and_the_key_stays_out_of_repr():
    with Sink() as sink, DodoClient(api_key=API_KEY, base_url=sink.base_url) as client:
        with Ingestion(client=client, event_name="e") as ingestion:
            assert API_KEY not in repr(ingestion)
            assert sink.base_url in repr(ingestion)
            ingestion.track("cus_1")
            assert ingestion.flush(5)
        assert sink.requests[0][2] == f"Bearer {API_KEY}"
        with pytest.raises(ConfigurationError, match="either client"):
            Ingestion(client=client, api_key=API_KEY)
