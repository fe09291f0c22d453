"""Whatever an event is built from, it is refused with ``EventValidationError`` or it is stored
as plain values that encode as JSON and decode to the same event."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dodo_ingest.client._errors import EventValidationError
from dodo_ingest.client._models import (
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    EventInput,
    validate_metadata,
)
from dodo_ingest.delivery._encoding import encode_event
from tests.client._mappings import TwoFaced

PLAIN = (str, int, float, bool)


class Level(IntEnum):
    LOW = 1
    TOP = 2**63 - 1
    OVER = 2**63
    UNDER = -(2**63) - 1


class Plan(StrEnum):
    FREE = "free"
    LONG = "x" * 501


class Text(str):
    def __len__(self) -> int:  # lies: validation must measure the text itself
        return 1


class Number(int):
    pass


class Ratio(float):
    pass


class Fickle(Mapping[str, object]):
    """Gives the next of its dicts each time it is read."""

    def __init__(self, versions: list[dict[Any, Any]]) -> None:
        self.versions, self.reads = versions, 0

    def _now(self) -> dict[Any, Any]:
        self.reads += 1
        return self.versions[self.reads % len(self.versions)]

    def __getitem__(self, key: str) -> object:
        return self._now()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._now()))

    def __len__(self) -> int:
        return len(self._now())


class Zone(tzinfo):
    """A tzinfo answering ``utcoffset`` from a list, one answer per call (exceptions raised)."""

    def __init__(self, answers: list[object]) -> None:
        self.answers, self.calls = answers, 0

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        answer = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


texts = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(exclude_categories=()), max_size=4),  # lone surrogates too
    st.text(st.characters(max_codepoint=127), min_size=MAX_METADATA_VALUE_LENGTH - 1, max_size=502),
)
keys = st.one_of(
    st.text(max_size=8),
    st.text(st.characters(exclude_categories=()), max_size=3),
    st.text(min_size=MAX_METADATA_KEY_LENGTH, max_size=MAX_METADATA_KEY_LENGTH + 1),
    st.integers(0, 3),
    st.builds(Text, st.text(max_size=3)),
)
values = st.one_of(
    texts,
    st.integers(),
    st.integers(-(2**63) - 2, -(2**63) + 1),
    st.integers(2**63 - 2, 2**63 + 1),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.sampled_from(list(Level)),
    st.sampled_from(list(Plan)),
    st.builds(Text, texts),
    st.builds(Number, st.integers()),
    st.builds(Ratio, st.floats()),
    st.just(object()),
)
dicts = st.dictionaries(keys, values, max_size=MAX_METADATA_KEYS + 2)
metadata = st.one_of(
    st.none(),
    dicts,
    st.builds(MappingProxyType, dicts),
    st.builds(TwoFaced, dicts, dicts),
    st.builds(Fickle, st.lists(dicts, min_size=2, max_size=3)),
    st.lists(st.tuples(st.text(max_size=3), st.integers()), max_size=2),  # not a mapping
)
zones = st.one_of(
    st.just(UTC),
    st.timezones(),
    st.builds(timezone, st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23))),
    st.builds(
        Zone,
        st.lists(
            st.one_of(
                st.timedeltas(timedelta(days=-2), timedelta(days=2)),
                st.none(),
                st.just("+01:00"),
                st.just(RuntimeError("no tz database")),
            ),
            min_size=1,
            max_size=3,
        ),
    ),
)
timestamps = st.one_of(
    st.none(),
    st.datetimes(timezones=zones),
    st.sampled_from([datetime.min, datetime.max]).flatmap(
        lambda edge: zones.map(lambda zone: edge.replace(tzinfo=zone))
    ),
    st.datetimes(),  # naive
    st.just("2026-01-01T00:00:00Z"),
)
ids = st.one_of(st.text(max_size=8), st.none(), st.integers(0, 3), st.builds(Text, st.text()))


_EXACT_FLOATS = (datetime(1970, 1, 2, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
"""Times whose ``timestamp()`` float keeps the microsecond (the sender is handed floats)."""


def _assert_plain(checked: dict[str, object]) -> None:
    assert type(checked) is dict
    assert len(checked) <= MAX_METADATA_KEYS
    for key, value in checked.items():
        assert type(key) is str and 1 <= len(key) <= MAX_METADATA_KEY_LENGTH
        assert type(value) in PLAIN
        if type(value) is str:
            assert len(value) <= MAX_METADATA_VALUE_LENGTH
        if type(value) is int:
            assert -(2**63) <= value < 2**63


@settings(max_examples=600, deadline=None)
@given(metadata)
def test_metadata_is_refused_or_returned_as_plain_json_values(raw: object) -> None:
    if raw is None:
        return
    try:
        checked = validate_metadata(raw)  # type: ignore[arg-type]
    except EventValidationError as error:
        field = error.field
    else:
        field = None
    if field is not None:
        assert field == "metadata" or field.startswith("metadata.")
        return
    _assert_plain(checked)  # type: ignore[arg-type]
    assert json.loads(json.dumps(checked, allow_nan=False)) == checked


@settings(max_examples=600, deadline=None)
@given(ids, ids, ids, timestamps, metadata)
def test_an_event_is_refused_or_round_trips_through_json(
    event_id: object, customer_id: object, event_name: object, timestamp: object, raw: object
) -> None:
    try:
        event = EventInput(event_id, customer_id, event_name, timestamp, raw)  # type: ignore[arg-type]
    except EventValidationError:
        return
    if event.metadata is not None:
        _assert_plain(event.metadata)  # type: ignore[arg-type]
    text = json.dumps(event.to_dict(), allow_nan=False)
    again = EventInput.from_dict(json.loads(text))
    assert again == event
    assert json.dumps(again.to_dict(), allow_nan=False) == text
    # The sender's own encoder takes it too, and says the same.
    moment = event.timestamp.timestamp() if event.timestamp is not None else 1.7e9
    sent = json.loads(encode_event(event, moment))
    assert sent.get("metadata") == event.to_dict().get("metadata")
    if event.timestamp is not None and _EXACT_FLOATS[0] <= event.timestamp < _EXACT_FLOATS[1]:
        assert sent["timestamp"] == event.to_dict()["timestamp"]
