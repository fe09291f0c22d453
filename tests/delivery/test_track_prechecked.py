"""``Ingestion._track_prechecked``: the entry of callers that checked the event already (the
LLM tracker, ``dodo-ingest send``). For the same event it must send the very bytes
``track()`` sends and queue, drop and count exactly as ``track()`` does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dodo_ingest.client import EventInput, EventValidationError
from dodo_ingest.delivery import EventsDroppedError, Ingestion, _ingestion

NOW = time.time()
"""The "now" both entries stamp events with (recent: the sender expires old events)."""


class Bodies:
    """A transport that keeps every request body as sent; ``hold`` blocks sends until set."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived = threading.Event()
        self.hold = threading.Event()
        self.hold.set()

    def send(self, body: bytes) -> int:
        self.arrived.set()
        self.hold.wait(10)
        self.bodies.append(body)
        return body.count(b'"event_id"')

    def close(self) -> None:
        self.hold.set()


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``track()`` and ``_track_prechecked`` stamp events with the same "now"."""
    monkeypatch.setattr(_ingestion, "_time", lambda: NOW)


def _via_track(ingestion: Ingestion, customer: str, name: str, meta: Any, event_id: str) -> str:
    return ingestion.track(customer, name, meta, event_id=event_id)


def _via_prechecked(
    ingestion: Ingestion, customer: str, name: str, meta: Any, event_id: str
) -> str:
    return ingestion._track_prechecked(customer, name, meta, event_id)


ENTRIES = [_via_track, _via_prechecked]
Entry = Callable[[Ingestion, str, str, Any, str], str]


@pytest.mark.parametrize("outbox", [False, True], ids=["memory", "outbox"])
def test_the_body_sent_is_the_same_bytes_as_tracks(fixed_clock, make_ingestion, tmp_path, outbox):
    meta = {"model": "gpt-é", "in": 12, "cost": 0.25, "ok": True, "big": 2**63 - 1, "": None}
    del meta[""]
    sent = []
    for entry in ENTRIES:
        bodies = Bodies()
        ingestion = make_ingestion(
            transport=bodies,
            outbox=tmp_path / f"{entry.__name__}.db" if outbox else None,
        )
        for index, metadata in enumerate([dict(meta), {}, {"emoji": '\U0001f600 "q" \\'}]):
            assert entry(ingestion, "cus_\u00e9", "llm.call", metadata, f"id-{index}") == (
                f"id-{index}"
            )
        assert ingestion.flush(10)
        sent.append(b"".join(bodies.bodies))
    assert sent[0] == sent[1]
    assert sent[0].count(b'"event_id"') == 3


def _stamped(
    ingestion: Ingestion, prechecked: bool, event_id: str, stamp: datetime, meta: Any
) -> str:
    if prechecked:
        return ingestion._track_prechecked("cus_1", "job", meta, event_id, stamp)
    return ingestion.track("cus_1", "job", meta, event_id=event_id, timestamp=stamp)


def test_a_timestamped_event_is_sent_as_the_same_bytes_and_refused_alike(
    fixed_clock, make_ingestion
):
    stamps = [
        datetime.fromtimestamp(NOW - 60, UTC),
        datetime.fromtimestamp(NOW - 3000.123456, timezone(timedelta(hours=5, minutes=30))),
    ]
    sent = []
    for prechecked in (False, True):
        bodies = Bodies()
        ingestion = make_ingestion(transport=bodies)
        for index, stamp in enumerate(stamps):
            _stamped(ingestion, prechecked, f"t-{index}", stamp, {"n": index})
        for stamp, field in [
            (datetime.fromtimestamp(NOW - 7200, UTC), "older than max_event_age"),
            (datetime.fromtimestamp(NOW + 3600, UTC), "in the future"),
        ]:
            with pytest.raises(EventValidationError, match=field) as refused:
                _stamped(ingestion, prechecked, "late", stamp, {})
            assert refused.value.field == "timestamp"
        assert ingestion.flush(10)
        sent.append(b"".join(bodies.bodies))
    assert sent[0] == sent[1]
    assert sent[0].count(b'"event_id"') == 2


def test_after_close_the_event_is_dropped_counted_and_reported_alike(make_ingestion):
    outcomes = []
    for entry in ENTRIES:
        reports: list[tuple[BaseException, list[EventInput]]] = []
        ingestion = make_ingestion(
            transport=Bodies(),
            on_error=lambda error, events, reports=reports: reports.append((error, events)),
        )
        ingestion.close()
        assert entry(ingestion, "cus_1", "e", {"k": 1}, "id-closed") == "id-closed"
        ((error, events),) = reports
        assert isinstance(error, EventsDroppedError)
        stats = ingestion.stats
        outcomes.append(
            (
                (error.reason, error.count),
                [(event.event_id, event.metadata) for event in events],
                (stats.enqueued, stats.dropped, stats.queued),
                ingestion.flush(0),
            )
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ("closed", 1)
    assert outcomes[0][2] == (1, 1, 0)


def test_a_full_queue_drops_counts_and_reports_alike(make_ingestion):
    outcomes = []
    for entry in ENTRIES:
        reports: list[tuple[BaseException, list[EventInput]]] = []
        bodies = Bodies()
        bodies.hold.clear()
        ingestion = make_ingestion(
            transport=bodies,
            batch_size=1,
            max_queue_size=10,
            queue_full_timeout=0.0,
            on_error=lambda error, events, reports=reports: reports.append((error, events)),
        )
        ids = [entry(ingestion, "cus_1", "e", {"n": 0}, "id-0")]
        assert bodies.arrived.wait(10)  # the sender holds the first event in a request
        ids += [entry(ingestion, "cus_1", "e", {"n": n}, f"id-{n}") for n in range(1, 26)]
        stats = ingestion.stats
        counted = (stats.enqueued, stats.dropped, stats.queued)
        bodies.hold.set()
        assert ingestion.flush(10)
        delivered = [event_id for body in bodies.bodies for event_id in _ids_in(body)]
        dropped = [
            (error.reason, error.count, [event.event_id for event in events])
            for error, events in reports
            if isinstance(error, EventsDroppedError)
        ]
        outcomes.append((ids, counted, ingestion.stats.dropped, delivered, dropped))
    assert outcomes[0] == outcomes[1]
    ids, counted, dropped_count, delivered, dropped = outcomes[0]
    assert dropped_count == 15
    assert counted == (26, 15, 11)
    assert dropped == [("queue_full", 15, ids[11:])]
    assert delivered == ids[:11]


def _ids_in(body: bytes) -> list[str]:
    return [event["event_id"] for event in json.loads(body)["events"]]


@pytest.mark.parametrize("entry", ENTRIES, ids=["track", "prechecked"])
def test_an_event_over_the_request_size_raises_and_is_not_queued(make_ingestion, entry):
    ingestion = make_ingestion(transport=Bodies(), max_request_bytes=1024)
    meta = {f"k{i}": "\u00e9" * 100 for i in range(6)}  # 1200 bytes of UTF-8, 600 characters
    with pytest.raises(EventValidationError) as caught:
        entry(ingestion, "cus_1", "e", meta, "id-big")
    assert caught.value.field == "event"
    assert "1024" in str(caught.value)
    assert ingestion.stats.enqueued == 0
    # Just under the limit is queued.
    assert entry(ingestion, "cus_1", "e", {"k": "x" * 400}, "id-ok") == "id-ok"
    assert ingestion.stats.enqueued == 1


keys = st.text(min_size=1, max_size=100)
values = st.one_of(
    st.text(max_size=500),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
names = st.text(min_size=1, max_size=60)


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[Ingestion, Bodies, Ingestion, Bodies]]:
    saved = _ingestion._time
    _ingestion._time = lambda: NOW
    first, second = Bodies(), Bodies()
    a, b = Ingestion(transport=first), Ingestion(transport=second)
    yield a, first, b, second
    a.close(5)
    b.close(5)
    _ingestion._time = saved


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    customer_id=names,
    event_name=names,
    event_id=names,
    meta=st.dictionaries(keys, values, max_size=50),
)
def test_any_checked_event_is_sent_as_the_same_bytes(pair, customer_id, event_name, event_id, meta):
    a, first, b, second = pair
    assert a.track(customer_id, event_name, meta, event_id=event_id) == event_id
    assert b._track_prechecked(customer_id, event_name, dict(meta), event_id) == event_id
    assert a.flush(10) and b.flush(10)
    assert _ids_in(first.bodies[-1]) == [event_id]
    assert first.bodies[-1] == second.bodies[-1]
