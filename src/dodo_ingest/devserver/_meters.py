"""Meters: checking a ``POST /meters`` body, matching events against a meter's filter, and
aggregating the matching events.

Filter semantics (the API documents the operators, not their edge cases; these are the dev
server's):

- A condition on a metadata key the event does not have is false, whatever the operator.
- ``equals``/``not_equals``: booleans compare only with booleans; numbers, and strings that
  read as numbers, compare numerically (``"2"`` equals ``2.0``); other strings exactly.
- ``greater_than``, ``greater_than_or_equals``, ``less_than``, ``less_than_or_equals``: true
  only when both sides are numbers (or numeric strings).
- ``contains``/``does_not_contain``: substring test on the text forms (JSON text for numbers
  and booleans).

Aggregations use metadata values that are numbers or numeric strings (others are skipped):
``count`` counts the matching events, ``sum`` and ``max`` combine the ``key`` values, ``last``
takes the value of the latest event (by timestamp, then arrival). Values are exact
:class:`~decimal.Decimal` numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ._errors import APIError

__all__ = [
    "AGGREGATIONS",
    "MAX_FILTER_CLAUSES",
    "MAX_FILTER_DEPTH",
    "OPERATORS",
    "Aggregate",
    "aggregate",
    "check_filter",
    "check_meter_body",
    "compile_filter",
    "to_number",
]

AGGREGATIONS = ("count", "sum", "max", "last")
OPERATORS = (
    "equals",
    "not_equals",
    "greater_than",
    "greater_than_or_equals",
    "less_than",
    "less_than_or_equals",
    "contains",
    "does_not_contain",
)
MAX_FILTER_CLAUSES = 10
MAX_FILTER_DEPTH = 3
"""Nested filter levels allowed below the top filter; the deepest holds conditions only."""
MAX_FILTER_KEY_LENGTH = 100

Metadata = Mapping[str, Any]
Predicate = Callable[[Metadata], bool]


def _invalid(message: str) -> APIError:
    return APIError(422, "invalid_request", message)


def _text_field(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(f"{name} is required")
        return None
    if type(value) is not str or (required and not value):
        raise _invalid(f"{name} must be a non-empty string")
    return value


def check_meter_body(body: object) -> dict[str, Any]:
    """Check a ``CreateMeterRequest`` and return its normalised fields.

    Raises :class:`APIError` 422 naming the field: missing ``name``, ``event_name``,
    ``measurement_unit`` or ``aggregation``; an unknown aggregation type; no ``key`` for
    ``sum``/``max``/``last``; a filter breaking the limits of :func:`check_filter`.
    """
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    fields: dict[str, Any] = {
        "name": _text_field(body, "name", required=True),
        "event_name": _text_field(body, "event_name", required=True),
        "measurement_unit": _text_field(body, "measurement_unit", required=True),
        "description": _text_field(body, "description", required=False),
    }
    aggregation = body.get("aggregation")
    if type(aggregation) is not dict:
        raise _invalid("aggregation is required: an object with type and key")
    kind = aggregation.get("type")
    if kind not in AGGREGATIONS:
        raise _invalid(f"aggregation.type must be one of {', '.join(AGGREGATIONS)}; got {kind!r}")
    key = aggregation.get("key")
    if key is not None and type(key) is not str:
        raise _invalid("aggregation.key must be a string or null")
    if kind != "count" and not key:
        raise _invalid(f"aggregation.key is required for {kind!r} aggregation")
    fields["aggregation"] = {"type": kind, "key": key}
    raw_filter = body.get("filter")
    fields["filter"] = None if raw_filter is None else check_filter(raw_filter, "filter", 0)
    return fields


def check_filter(node: object, path: str, depth: int) -> dict[str, Any]:
    """Check a ``MeterFilter``: ``and``/``or`` over 1 to 10 clauses that are all conditions
    or all nested filters, at most 3 nested levels below the top. Raises 422 naming the path."""
    if type(node) is not dict:
        raise _invalid(f"{path} must be an object with conjunction and clauses")
    conjunction = node.get("conjunction")
    if conjunction not in ("and", "or"):
        raise _invalid(f"{path}.conjunction must be 'and' or 'or'; got {conjunction!r}")
    clauses = node.get("clauses")
    if type(clauses) is not list or not 1 <= len(clauses) <= MAX_FILTER_CLAUSES:
        raise _invalid(f"{path}.clauses must be an array of 1 to {MAX_FILTER_CLAUSES} items")
    nested = [type(c) is dict and "conjunction" in c for c in clauses]
    if any(nested) and not all(nested):
        raise _invalid(
            f"{path}.clauses mixes conditions and nested filters; wrap the conditions in a "
            "nested filter"
        )
    if all(nested):
        if depth >= MAX_FILTER_DEPTH:
            raise _invalid(
                f"{path}: filters nest at most {MAX_FILTER_DEPTH} levels below the top filter"
            )
        checked = [
            check_filter(c, f"{path}.clauses[{i}]", depth + 1) for i, c in enumerate(clauses)
        ]
    else:
        checked = [_check_condition(c, f"{path}.clauses[{i}]") for i, c in enumerate(clauses)]
    return {"conjunction": conjunction, "clauses": checked}


def _check_condition(node: object, path: str) -> dict[str, Any]:
    if type(node) is not dict:
        raise _invalid(f"{path} must be a condition object with key, operator and value")
    key = node.get("key")
    if type(key) is not str or not 1 <= len(key) <= MAX_FILTER_KEY_LENGTH:
        raise _invalid(f"{path}.key must be a string of 1 to {MAX_FILTER_KEY_LENGTH} characters")
    operator = node.get("operator")
    if operator not in OPERATORS:
        raise _invalid(f"{path}.operator must be one of {', '.join(OPERATORS)}; got {operator!r}")
    value = node.get("value")
    if type(value) not in (str, int, float, bool):
        raise _invalid(f"{path}.value must be a string, number or boolean")
    return {"key": key, "operator": operator, "value": value}


def to_number(value: object) -> Decimal | None:
    """``value`` as an exact decimal when it is a number or a numeric string, else ``None``."""
    kind = type(value)
    if kind is int:
        return Decimal(value)  # type: ignore[arg-type]
    if kind is float:
        return Decimal(repr(value))
    if kind is str:
        try:
            number = Decimal(value.strip())  # type: ignore[attr-defined]
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _equals(actual: object, expected: object) -> bool:
    if type(actual) is bool or type(expected) is bool:
        return actual is expected
    left, right = to_number(actual), to_number(expected)
    if left is not None and right is not None:
        return left == right
    return actual == expected


def _ordered(compare: Callable[[Decimal, Decimal], bool]) -> Callable[[object, object], bool]:
    def test(actual: object, expected: object) -> bool:
        if type(actual) is bool or type(expected) is bool:
            return False
        left, right = to_number(actual), to_number(expected)
        return left is not None and right is not None and compare(left, right)

    return test


_TESTS: dict[str, Callable[[object, object], bool]] = {
    "equals": _equals,
    "not_equals": lambda a, e: not _equals(a, e),
    "greater_than": _ordered(lambda a, e: a > e),
    "greater_than_or_equals": _ordered(lambda a, e: a >= e),
    "less_than": _ordered(lambda a, e: a < e),
    "less_than_or_equals": _ordered(lambda a, e: a <= e),
    "contains": lambda a, e: _text(e) in _text(a),
    "does_not_contain": lambda a, e: _text(e) not in _text(a),
}

_MISSING = object()


def compile_filter(meter_filter: Mapping[str, Any] | None) -> Predicate:
    """A predicate over an event's metadata (``{}`` when it has none) for a checked filter;
    ``None`` matches every event."""
    if meter_filter is None:
        return lambda metadata: True
    parts = [
        compile_filter(c) if "conjunction" in c else _compile_condition(c)
        for c in meter_filter["clauses"]
    ]
    if meter_filter["conjunction"] == "and":
        return lambda metadata: all(part(metadata) for part in parts)
    return lambda metadata: any(part(metadata) for part in parts)


def _compile_condition(condition: Mapping[str, Any]) -> Predicate:
    key, expected, test = condition["key"], condition["value"], _TESTS[condition["operator"]]

    def predicate(metadata: Metadata) -> bool:
        actual = metadata.get(key, _MISSING)
        return actual is not _MISSING and test(actual, expected)

    return predicate


class Aggregate:
    """Running aggregate of one meter for one customer; feed events in time order."""

    __slots__ = ("events", "key", "kind", "value")

    def __init__(self, kind: str, key: str | None) -> None:
        self.kind = kind
        self.key = key
        self.events = 0
        self.value: Decimal | None = Decimal(0) if kind in ("count", "sum") else None

    def add(self, metadata: Metadata) -> None:
        """Count one matching event."""
        self.events += 1
        if self.kind == "count":
            self.value = Decimal(self.events)
            return
        number = to_number(metadata.get(self.key)) if self.key is not None else None
        if number is None:
            return
        if self.kind == "sum":
            self.value = (self.value or Decimal(0)) + number
        elif self.kind == "max":
            self.value = number if self.value is None or number > self.value else self.value
        else:
            self.value = number

    def total(self) -> Decimal:
        """The aggregated value (0 when no event carried a usable value)."""
        return self.value if self.value is not None else Decimal(0)


def aggregate(
    kind: str, key: str | None, predicate: Predicate, rows: Iterable[tuple[str, str | None]]
) -> dict[str, Aggregate]:
    """Aggregate ``(customer_id, metadata JSON)`` rows (in time order) per customer."""
    totals: dict[str, Aggregate] = {}
    for customer_id, encoded in rows:
        metadata = json.loads(encoded) if encoded else {}
        if not predicate(metadata):
            continue
        total = totals.get(customer_id)
        if total is None:
            total = totals[customer_id] = Aggregate(kind, key)
        total.add(metadata)
    return totals
