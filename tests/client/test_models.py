from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum

import pytest

from dodo_ingest import (
    CreditBalance,
    Event,
    EventInput,
    EventValidationError,
    FilterCondition,
    Meter,
    MeterAggregation,
    MeterFilter,
)
from dodo_ingest.client._models import validate_metadata
from tests.client._mappings import TwoFaced

NOW = datetime(2026, 11, 25, 8, 0, 0, 123456, tzinfo=UTC)


def test_event_input_serialises_to_the_wire_shape() -> None:
    event = EventInput("evt_1", "cus_1", "api.call", NOW, {"tokens": 12, "ok": True, "cost": 0.5})
    assert event.to_dict() == {
        "event_id": "evt_1",
        "customer_id": "cus_1",
        "event_name": "api.call",
        "timestamp": "2026-11-25T08:00:00.123Z",
        "metadata": {"tokens": 12, "ok": True, "cost": 0.5},
    }


def test_event_input_omits_optional_fields() -> None:
    assert EventInput("e", "c", "n").to_dict() == {
        "event_id": "e",
        "customer_id": "c",
        "event_name": "n",
    }


def test_timestamps_in_other_zones_are_sent_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = EventInput("e", "c", "n", datetime(2026, 1, 1, 10, 0, tzinfo=plus_two))
    assert event.to_dict()["timestamp"] == "2026-01-01T08:00:00.000Z"


@pytest.mark.parametrize(
    ("kwargs", "field", "limit"),
    [
        ({"event_id": ""}, "event_id", "non-empty"),
        ({"customer_id": None}, "customer_id", "non-empty"),
        ({"event_name": 3}, "event_name", "non-empty"),
        ({"timestamp": datetime(2026, 1, 1)}, "timestamp", "timezone-aware"),
        ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata", "at most 50 keys"),
        ({"metadata": {"x" * 101: 1}}, "metadata.", "1 to 100 characters"),
        ({"metadata": {"prompt": "y" * 501}}, "metadata.prompt", "at most 500 characters"),
        ({"metadata": {"nested": {"a": 1}}}, "metadata.nested", "got dict"),
        ({"metadata": {"list": [1]}}, "metadata.list", "got list"),
        ({"metadata": {"none": None}}, "metadata.none", "got NoneType"),
        ({"metadata": {"nan": float("nan")}}, "metadata.nan", "finite"),
        ({"metadata": {1: "a"}}, "metadata", "keys must be strings"),
    ],
)
def test_event_input_names_the_field_and_the_limit(
    kwargs: dict[str, object], field: str, limit: str
) -> None:
    base: dict[str, object] = {"event_id": "e", "customer_id": "c", "event_name": "n"}
    base.update(kwargs)
    with pytest.raises(EventValidationError) as info:
        EventInput(**base)  # type: ignore[arg-type]
    assert info.value.field.startswith(field)
    assert limit in info.value.limit
    assert limit in str(info.value)


def test_limits_are_inclusive() -> None:
    metadata = {f"k{i:02d}" + "x" * 97: "v" * 500 for i in range(50)}
    assert len(next(iter(metadata))) == 100
    assert EventInput("e", "c", "n", metadata=metadata).metadata == metadata


def test_enum_and_subclass_values_become_plain_scalars() -> None:
    class Tier(str, Enum):  # noqa: UP042 (str() of such a member is "Tier.PRO")
        PRO = "pro"

    clean = validate_metadata({"tier": Tier.PRO, "n": 3})
    assert clean == {"tier": "pro", "n": 3}
    assert type(clean["tier"]) is str


class _Big(IntEnum):
    SMALL = 7
    HUGE = 2**63


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, _Big.HUGE])
def test_integers_outside_int64_are_refused(value: int) -> None:
    with pytest.raises(EventValidationError) as info:
        EventInput("e", "c", "n", metadata={"big": value})
    assert info.value.field == "metadata.big"
    assert "int64" in info.value.limit


def test_int64_limits_are_inclusive_and_int_enums_become_plain_ints() -> None:
    metadata = {"max": 2**63 - 1, "min": -(2**63), "small": _Big.SMALL}
    stored = EventInput("e", "c", "n", metadata=metadata).metadata
    assert stored == {"max": 2**63 - 1, "min": -(2**63), "small": 7}
    assert stored is not None and type(stored["small"]) is int


def test_str_enum_and_float_subclass_values_are_stored_as_plain_values() -> None:
    class Plan(StrEnum):
        PRO = "pro"

    class Cost(float):
        pass

    stored = validate_metadata({"plan": Plan.PRO, "cost": Cost(0.5)})
    assert [type(value) for value in stored.values()] == [str, float]
    assert json.dumps(stored) == '{"plan": "pro", "cost": 0.5}'


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_also_from_float_subclasses(value: float) -> None:
    class Cost(float):
        pass

    for candidate in (value, Cost(value)):
        with pytest.raises(EventValidationError, match="finite"):
            validate_metadata({"cost": candidate})


class _Changing(Mapping[str, object]):
    """Plain values the first time it is read, an object after."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: str) -> object:
        self.reads += 1
        return 1 if self.reads == 1 else object()

    def __iter__(self) -> Iterator[str]:
        return iter(["calls"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    "metadata",
    [
        TwoFaced({"calls": 1}, {"calls": object()}),
        TwoFaced({"calls": 1}, {"calls": 1, "extra": [1, 2]}),
        _Changing(),
    ],
    ids=["items-vs-getitem", "items-vs-keys", "changes-between-reads"],
)
def test_a_mapping_is_read_once_and_what_was_checked_is_what_is_stored(
    metadata: Mapping[str, object],
) -> None:
    event = EventInput("e", "c", "n", metadata=metadata)  # type: ignore[arg-type]
    assert event.metadata == {"calls": 1}
    assert type(event.metadata) is dict
    assert json.loads(json.dumps(event.to_dict()))["metadata"] == {"calls": 1}


def test_a_mapping_that_cannot_be_read_is_a_validation_error() -> None:
    broken = TwoFaced({}, {})
    broken.items = lambda: iter([("a", 1), ("b",)])  # type: ignore[method-assign]
    with pytest.raises(EventValidationError, match="could not be read") as info:
        validate_metadata(broken)
    assert info.value.field == "metadata"


def test_a_mapping_yielding_far_more_items_than_its_len_is_refused() -> None:
    crowded = TwoFaced({}, {})
    crowded.items = lambda: ((f"k{i}", i) for i in range(10**6))  # type: ignore[method-assign]
    with pytest.raises(EventValidationError, match="at most 50 keys"):
        validate_metadata(crowded)


def test_a_value_lying_about_its_class_is_refused_as_such() -> None:
    class Impostor:
        __class__ = str  # type: ignore[assignment]

    with pytest.raises(EventValidationError, match="got Impostor"):
        validate_metadata({"x": Impostor()})


class _Zone(tzinfo):
    """A tzinfo whose ``utcoffset`` answers from a list, one answer per call (the last one
    repeated), raising the answers that are exceptions."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize(
    "timestamp",
    [
        datetime(2026, 1, 1, tzinfo=_Zone(RuntimeError("no tz database"))),
        datetime(2026, 1, 1, tzinfo=_Zone("+01:00")),
        datetime(2026, 1, 1, tzinfo=_Zone(timedelta(days=1))),
        datetime(2026, 1, 1, tzinfo=_Zone(timedelta(hours=-30))),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=1))),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-1))),
        "2026-01-01T00:00:00Z",
    ],
    ids=["raises", "not-timedelta", "a-day", "beyond-a-day", "min-ahead", "max-behind", "text"],
)
def test_unusable_timestamps_are_validation_errors(timestamp: object) -> None:
    with pytest.raises(EventValidationError) as info:
        EventInput("e", "c", "n", timestamp)  # type: ignore[arg-type]
    assert info.value.field == "timestamp"


def test_the_utc_offset_is_read_once_and_the_event_keeps_the_instant_in_utc() -> None:
    zone = _Zone(timedelta(hours=2), RuntimeError("asked twice"))
    event = EventInput("e", "c", "n", datetime(2026, 1, 1, 10, 0, tzinfo=zone))
    assert event.timestamp == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert event.timestamp is not None and event.timestamp.tzinfo is UTC
    assert event.to_dict()["timestamp"] == "2026-01-01T08:00:00.000Z"


def test_a_datetime_subclass_is_stored_as_the_plain_utc_instant_timestamp_gives() -> None:
    class Odd(datetime):
        def utcoffset(self) -> timedelta | None:  # datetime's arithmetic does not ask this
            return "soon"  # type: ignore[return-value]

    moment = Odd(2026, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    event = EventInput("e", "c", "n", moment)
    assert type(event.timestamp) is datetime
    assert event.timestamp == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    assert event.timestamp.timestamp() == moment.timestamp()


def test_timestamps_before_the_year_1000_keep_four_digit_years_and_round_trip() -> None:
    event = EventInput("e", "c", "n", datetime(999, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC))
    assert event.to_dict()["timestamp"] == "0999-03-04T05:06:07.891Z"
    assert EventInput.from_dict(json.loads(json.dumps(event.to_dict()))) == event


def test_from_dict_parses_timestamps_and_reports_bad_ones() -> None:
    event = EventInput.from_dict(
        {
            "event_id": "e",
            "customer_id": "c",
            "event_name": "n",
            "timestamp": "2026-11-25T08:00:00Z",
        }
    )
    assert event.timestamp == datetime(2026, 11, 25, 8, tzinfo=UTC)
    with pytest.raises(EventValidationError, match="RFC 3339"):
        EventInput.from_dict(
            {"event_id": "e", "customer_id": "c", "event_name": "n", "timestamp": "yesterday"}
        )


def test_response_models_ignore_unknown_fields() -> None:
    event = Event.from_dict(
        {
            "event_id": "e",
            "business_id": "b",
            "customer_id": "c",
            "event_name": "n",
            "timestamp": "2026-11-25T08:00:00+00:00",
            "metadata": {"a": 1},
            "something_new": True,
        }
    )
    assert event.metadata == {"a": 1}
    balance = CreditBalance.from_dict(
        {
            "customer_id": "c",
            "credit_entitlement_id": "ce",
            "balance": "10.50",
            "overage": "0",
            "id": "x",
        }
    )
    assert balance.balance == Decimal("10.50")


def test_meter_round_trip_with_nested_filters() -> None:
    flt = MeterFilter(
        "or",
        (
            MeterFilter("and", (FilterCondition("model", "equals", "gpt-4o"),)),
            MeterFilter("and", (FilterCondition("tokens", "greater_than", 10),)),
        ),
    )
    meter = Meter.from_dict(
        {
            "id": "m1",
            "business_id": "b",
            "name": "tokens",
            "event_name": "llm",
            "measurement_unit": "tokens",
            "aggregation": {"type": "sum", "key": "tokens"},
            "filter": flt.to_dict(),
            "created_at": "2026-11-25T08:00:00Z",
            "updated_at": "2026-11-25T08:00:00Z",
        }
    )
    assert meter.filter == flt
    assert meter.aggregation == MeterAggregation("sum", "tokens")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: MeterAggregation("avg"), "aggregation.type"),  # type: ignore[arg-type]
        (lambda: MeterAggregation("sum"), "aggregation.key"),
        (lambda: FilterCondition("k", "like", 1), "filter operator"),  # type: ignore[arg-type]
        (lambda: MeterFilter("and", ()), "1 to 10"),
        (
            lambda: MeterFilter(
                "and", tuple(FilterCondition(f"k{i}", "equals", i) for i in range(11))
            ),
            "1 to 10",
        ),
        (
            lambda: MeterFilter(
                "and",
                (
                    FilterCondition("a", "equals", 1),
                    MeterFilter("or", (FilterCondition("b", "equals", 2),)),
                ),  # type: ignore[arg-type]
            ),
            "cannot be mixed",
        ),
    ],
)
def test_meter_definitions_are_checked(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_filter_nesting_depth_is_limited() -> None:
    leaf = MeterFilter("and", (FilterCondition("a", "equals", 1),))
    three = MeterFilter("and", (MeterFilter("and", (MeterFilter("and", (leaf,)),)),))
    assert three.depth() == 3
    with pytest.raises(ValueError, match="nested levels"):
        MeterFilter("and", (three,))
