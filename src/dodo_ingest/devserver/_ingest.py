"""Parsing and checking a ``POST /events/ingest`` body against the API's documented rules.

Schema violations (not JSON, wrong types, a missing field, fewer than 1 or more than 1000
events, a malformed timestamp) give 422, as the OpenAPI document's validators do. The rules
stated in the API's prose give 400: a duplicate ``event_id`` inside the request, a timestamp
older than 1 hour or more than 5 minutes ahead, metadata beyond its limits. When a body breaks
both kinds of rule the 422 wins, as a server that deserialises before it checks would answer.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._errors import APIError
from ._json import loads
from ._time import now_us, parse_rfc3339_us

__all__ = [
    "MAX_AGE_US",
    "MAX_BATCH_SIZE",
    "MAX_LEAD_US",
    "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_LENGTH",
    "MAX_METADATA_VALUE_LENGTH",
    "EventRow",
    "parse_ingest_body",
]

MAX_BATCH_SIZE = 1000
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 100
MAX_METADATA_VALUE_LENGTH = 500
MAX_AGE_US = 3600 * 1_000_000
"""Timestamps may be at most 1 hour old."""
MAX_LEAD_US = 300 * 1_000_000
"""Timestamps may be at most 5 minutes ahead."""

EventRow = list[Any]
"""An accepted event as stored: ``[event_id, customer_id, event_name, epoch µs, metadata]``
(metadata a dict or ``None``)."""

_REQUIRED = ("event_id", "customer_id", "event_name")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _schema_error(message: str, index: int | None = None, event_id: object = None) -> APIError:
    details: dict[str, Any] = {}
    if index is not None:
        details["index"] = index
        if isinstance(event_id, str):
            details["event_id"] = event_id
    return APIError(422, "invalid_request", message, **details)


def _where(index: int, event_id: str) -> str:
    return f"events[{index}] (event_id {event_id!r})"


def _check_metadata(metadata: dict[str, Any], where: str) -> tuple[str, str] | None:
    """The first rule ``metadata`` breaks, as (code, message), or ``None``."""
    if len(metadata) > MAX_METADATA_KEYS:
        return (
            "metadata_too_many_keys",
            f"{where}: metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS} allowed",
        )
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_LENGTH:
            return (
                "metadata_key_too_long",
                f"{where}: metadata key {key[:40]!r} has {len(key)} characters; keys must have "
                f"1 to {MAX_METADATA_KEY_LENGTH}",
            )
        if type(value) is str and len(value) > MAX_METADATA_VALUE_LENGTH:
            return (
                "metadata_value_too_long",
                f"{where}: metadata[{key!r}] has {len(value)} characters; string values may "
                f"have at most {MAX_METADATA_VALUE_LENGTH}",
            )
    return None


def parse_ingest_body(body: bytes, *, now: int | None = None) -> list[EventRow]:
    """Check an ingest body and return its events as rows to store.

    ``now`` (epoch µs) fills in missing timestamps and anchors the time window. Raises
    :class:`APIError` (400 or 422) naming the first offending event (index and ``event_id``)
    and the rule it breaks.
    """
    document = loads(body, parse_constant=_reject_constant)
    if type(document) is not dict or type(document.get("events")) is not list:
        raise _schema_error('the body must be an object with an "events" array')
    events: list[Any] = document["events"]
    if not 1 <= len(events) <= MAX_BATCH_SIZE:
        raise APIError(
            422,
            "invalid_batch_size",
            f"a request carries 1 to {MAX_BATCH_SIZE} events, got {len(events)}",
        )
    current = now_us() if now is None else now
    oldest, newest = current - MAX_AGE_US, current + MAX_LEAD_US
    parsed_times: dict[str, int] = {}
    rows: list[EventRow] = []
    seen: set[str] = set()
    rule_error: APIError | None = None
    for index, event in enumerate(events):
        if type(event) is not dict:
            raise _schema_error(f"events[{index}] must be an object", index)
        event_id = event.get("event_id")
        customer_id = event.get("customer_id")
        event_name = event.get("event_name")
        if type(event_id) is not str or type(customer_id) is not str or type(event_name) is not str:
            raise _field_type_error(event, index)
        timestamp = event.get("timestamp")
        if timestamp is None:
            micros = current
        else:
            micros = parsed_times.get(timestamp, -1) if type(timestamp) is str else -1
            if micros == -1:
                micros = _parse_timestamp(timestamp, index, event_id)
                parsed_times[timestamp] = micros
        metadata = event.get("metadata")
        if metadata is not None:
            if type(metadata) is not dict:
                raise _schema_error(
                    f"{_where(index, event_id)}: metadata must be an object", index, event_id
                )
            if len(metadata) > MAX_METADATA_KEYS or not _plain_metadata(metadata):
                metadata_error = _metadata_error(metadata, index, event_id)
                rule_error = rule_error or metadata_error
        if rule_error is not None:
            continue
        if (
            event_id in seen
            or not (event_id and customer_id and event_name)
            or not oldest <= micros <= newest
        ):
            rule_error = _rule_error(event, index, micros, oldest, newest, rows)
            continue
        seen.add(event_id)
        rows.append([event_id, customer_id, event_name, micros, metadata])
    if rule_error is not None:
        raise rule_error
    return rows


def _plain_metadata(metadata: dict[str, Any]) -> bool:
    """True when every key and value is within limits (the common, fast case)."""
    for key, value in metadata.items():
        kind = type(value)
        if kind is str:
            if len(value) > MAX_METADATA_VALUE_LENGTH:
                return False
        elif kind is float:
            if value - value != 0:  # inf or nan, from numbers such as 1e999
                return False
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                return False
        elif kind is not bool:
            return False
        if not 0 < len(key) <= MAX_METADATA_KEY_LENGTH:
            return False
    return True


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _metadata_error(metadata: dict[str, Any], index: int, event_id: str) -> APIError:
    """The error for metadata that :func:`_plain_metadata` refused: 422 for what the schema
    refuses (a value that is not a string, number or boolean, a non-finite number, an integer
    outside int64), else 400 naming the limit."""
    where = _where(index, event_id)
    for key, value in metadata.items():
        kind = type(value)
        if kind is float and value - value != 0:
            raise _schema_error(
                f"{where}: metadata[{key!r}] is not a finite number", index, event_id
            )
        if kind is int and not INT64_MIN <= value <= INT64_MAX:
            raise _schema_error(
                f"{where}: metadata[{key!r}] is outside the int64 range", index, event_id
            )
        if kind not in (str, int, float, bool):
            raise _schema_error(
                f"{where}: metadata[{key!r}] must be a string, number or boolean "
                f"(objects, arrays and null are refused)",
                index,
                event_id,
            )
    broken = _check_metadata(metadata, where)
    assert broken is not None, "metadata refused by the fast check breaks a rule"
    return APIError(400, broken[0], broken[1], index=index, event_id=event_id)


def _field_type_error(event: dict[str, Any], index: int) -> APIError:
    for field in _REQUIRED:
        value = event.get(field)
        if type(value) is not str:
            problem = "is missing" if value is None else "must be a string"
            return _schema_error(f"events[{index}].{field} {problem}", index, event.get("event_id"))
    raise AssertionError("no field has a wrong type")


def _parse_timestamp(timestamp: object, index: int, event_id: str) -> int:
    if type(timestamp) is not str:
        raise _schema_error(
            f"{_where(index, event_id)}: timestamp must be a string", index, event_id
        )
    try:
        return parse_rfc3339_us(timestamp)
    except ValueError:
        raise _schema_error(
            f"{_where(index, event_id)}: timestamp {timestamp[:60]!r} is not an RFC 3339 date-time",
            index,
            event_id,
        ) from None


def _rule_error(
    event: dict[str, Any], index: int, micros: int, oldest: int, newest: int, rows: list[EventRow]
) -> APIError:
    """The error of an event breaking a prose rule: an empty field, a repeated id, the time
    window (``rows`` are the events accepted before it)."""
    event_id: str = event["event_id"]
    for field in _REQUIRED:
        if not event[field]:
            return APIError(
                400,
                "empty_field",
                f"events[{index}].{field} must not be empty",
                index=index,
                event_id=event_id,
            )
    first = next((i for i, row in enumerate(rows) if row[0] == event_id), None)
    if first is not None:
        return APIError(
            400,
            "duplicate_event_id",
            f"{_where(index, event_id)} repeats the event_id of events[{first}]; "
            "ids must be unique within a request, so the whole request was rejected",
            index=index,
            event_id=event_id,
        )
    when = "older than 1 hour" if micros < oldest else "more than 5 minutes in the future"
    return APIError(
        400,
        "timestamp_too_old" if micros < oldest else "timestamp_in_future",
        f"{_where(index, event_id)}: timestamp {event.get('timestamp')!r} is {when}",
        index=index,
        event_id=event_id,
    )
