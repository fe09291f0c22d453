from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

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
