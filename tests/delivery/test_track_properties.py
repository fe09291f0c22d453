"""Property-based tests of ``track()``: whatever the input, it either raises
``EventValidationError`` in the caller or queues an event the API's rules accept, and the
pipeline then delivers every accepted event exactly once (through a recording transport, no
sockets)."""

from __future__ import annotations

import enum
import json
import math
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dodo_ingest.client import EventValidationError
from dodo_ingest.delivery import Ingestion

INT64 = (-(2**63), 2**63 - 1)


class Recorder:
    """A transport that acknowledges everything and keeps the decoded events."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def send(self, body: bytes) -> int:
        events = json.loads(body.decode("utf-8"))["events"]
        assert 1 <= len(events) <= 1000
        ids = [event["event_id"] for event in events]
        assert len(ids) == len(set(ids))  # the API refuses a request with duplicate ids
        with self.lock:
            self.events.extend(events)
        return len(events)

    def close(self) -> None:
        pass


class Level(enum.IntEnum):
    LOW = 1
    HUGE = 2**63  # outside int64: the API refuses it


class Lying(Mapping[str, Any]):
    """A mapping whose contents change every time it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: str) -> Any:
        self.reads += 1
        return "x" * self.reads

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        return iter(["a"] * (self.reads % 3 + 1))

    def __len__(self) -> int:
        return 1


scalars = st.one_of(
    st.text(max_size=600),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from([Level.LOW, Level.HUGE]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
metadata = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=120), scalars, max_size=55),
    st.builds(Lying),
)
offsets = st.one_of(
    st.none(),
    st.builds(
        lambda minutes, zone: datetime.now(UTC) + timedelta(minutes=minutes) if zone else None,
        st.integers(min_value=-120, max_value=20),
        st.booleans(),
    ),
    st.builds(
        lambda hours: datetime.now(timezone(timedelta(hours=hours))),
        st.integers(min_value=-23, max_value=23),
    ),
    st.just(datetime.now()),  # naive
    st.just(datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))),
)


def _check_accepted(event: dict[str, Any]) -> None:
    """The API's documented rules for one event."""
    for field in ("event_id", "customer_id", "event_name"):
        assert isinstance(event[field], str) and event[field]
    meta = event.get("metadata")
    if meta is not None:
        assert len(meta) <= 50
        for key, value in meta.items():
            assert len(key) <= 100
            assert isinstance(value, (str, int, float, bool)) and value is not None
            if isinstance(value, str):
                assert len(value) <= 500
            elif isinstance(value, float):
                assert math.isfinite(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                assert INT64[0] <= value <= INT64[1]


@pytest.fixture(scope="module")
def pipeline() -> Iterator[tuple[Ingestion, Recorder]]:
    recorder = Recorder()
    ingestion = Ingestion(transport=recorder, flush_interval=0.05)
    yield ingestion, recorder
    ingestion.close(5)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    customer_id=st.one_of(st.text(max_size=40), st.integers(), st.none()),
    event_name=st.one_of(st.text(max_size=40), st.none()),
    meta=metadata,
    timestamp=offsets,
)
def test_track_refuses_with_a_typed_error_or_queues_an_acceptable_event(
    pipeline, customer_id, event_name, meta, timestamp
):
    ingestion, recorder = pipeline
    refusal: EventValidationError | None = None
    try:
        event_id = ingestion.track(customer_id, event_name or "e", meta, timestamp=timestamp)
    except EventValidationError as error:
        refusal = error
    if refusal is not None:
        assert refusal.field and refusal.limit  # names the field and the limit
        return
    assert ingestion.flush(10)
    (event,) = [e for e in recorder.events if e["event_id"] == event_id]
    _check_accepted(event)
    stats = ingestion.stats
    assert stats.enqueued == stats.delivered + stats.dead_lettered + stats.dropped + stats.queued
    assert stats.queued == 0
