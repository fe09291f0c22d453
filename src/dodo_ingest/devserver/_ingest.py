"""Parsing and checking a ``POST /events/ingest`` body against the API's documented rules.

Schema violations (not JSON, wrong types, a missing field, fewer than 1 or more than 1000
events, a malformed timestamp) give 422, as the OpenAPI document's validators do. The rules
stated in the API's prose give 400: a duplicate ``event_id`` inside the request, a timestamp
older than 1 hour or more than 5 minutes ahead, metadata beyond its limits. When a body breaks
both kinds of rule the 422 wins, as a server that deserialises before it checks would answer.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from ._errors import APIError
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

EventRow = tuple[str, str, str, int, str | None]
"""An accepted event as stored: event_id, customer_id, event_name, epoch µs, metadata JSON."""

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
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
        kind = type(value)
        if kind is str:
            if len(value) > MAX_METADATA_VALUE_LENGTH:
                return (
                    "metadata_value_too_long",
                    f"{where}: metadata[{key!r}] has {len(value)} characters; string values may "
                    f"have at most {MAX_METADATA_VALUE_LENGTH}",
                )
        elif kind is not int and kind is not bool and kind is not float:
            return (
                "metadata_value_not_scalar",
                f"{where}: metadata[{key!r}] is {_json_type(value)}; values must be a string, "
                "number or boolean",
            )
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def parse_ingest_body(body: bytes, *, now: int | None = None) -> list[EventRow]:
    """Check an ingest body and return its events as rows to store.

    ``now`` (epoch µs) fills in missing timestamps and anchors the time window. Raises
    :class:`APIError` (400 or 422) naming the first offending event (index and ``event_id``)
    and the rule it breaks.
    """
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise APIError(422, "invalid_json", f"the body is not valid JSON: {error}") from None
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
    rows: list[EventRow] = []
    seen: dict[str, int] = {}
    rule_error: APIError | None = None
    for index, event in enumerate(events):
        if type(event) is not dict:
            raise _schema_error(f"events[{index}] must be an object", index)
        for field in _REQUIRED:
            value = event.get(field)
            if type(value) is not str:
                problem = "is missing" if value is None else "must be a string"
                raise _schema_error(
                    f"events[{index}].{field} {problem}", index, event.get("event_id")
                )
        event_id: str = event["event_id"]
        timestamp = event.get("timestamp")
        if timestamp is None:
            micros = current
        elif type(timestamp) is str:
            try:
                micros = parse_rfc3339_us(timestamp)
            except ValueError:
                raise _schema_error(
                    f"{_where(index, event_id)}: timestamp {timestamp[:60]!r} is not an "
                    "RFC 3339 date-time",
                    index,
                    event_id,
                ) from None
        else:
            raise _schema_error(
                f"{_where(index, event_id)}: timestamp must be a string", index, event_id
            )
        metadata = event.get("metadata")
        encoded: str | None = None
        if metadata is not None:
            if type(metadata) is not dict:
                raise _schema_error(
                    f"{_where(index, event_id)}: metadata must be an object", index, event_id
                )
            for value in metadata.values():
                if type(value) is float and not math.isfinite(value):
                    raise _schema_error(
                        f"{_where(index, event_id)}: metadata numbers must be finite",
                        index,
                        event_id,
                    )
            if rule_error is None:
                broken = _check_metadata(metadata, _where(index, event_id))
                if broken is not None:
                    rule_error = APIError(400, broken[0], broken[1], index=index, event_id=event_id)
            if rule_error is None:
                encoded = _encode(metadata)
        if rule_error is None:
            rule_error = _check_event(event, index, micros, oldest, newest, seen)
        if rule_error is None:
            rows.append((event_id, event["customer_id"], event["event_name"], micros, encoded))
    if rule_error is not None:
        raise rule_error
    return rows


def _check_event(
    event: dict[str, Any], index: int, micros: int, oldest: int, newest: int, seen: dict[str, int]
) -> APIError | None:
    """The first prose rule (ids, empty fields, time window) the event breaks, or ``None``."""
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
    first = seen.setdefault(event_id, index)
    if first != index:
        return APIError(
            400,
            "duplicate_event_id",
            f"{_where(index, event_id)} repeats the event_id of events[{first}]; "
            "ids must be unique within a request, so the whole request was rejected",
            index=index,
            event_id=event_id,
        )
    if micros < oldest:
        return APIError(
            400,
            "timestamp_too_old",
            f"{_where(index, event_id)}: timestamp {event.get('timestamp')!r} is more than "
            "1 hour in the past",
            index=index,
            event_id=event_id,
        )
    if micros > newest:
        return APIError(
            400,
            "timestamp_in_future",
            f"{_where(index, event_id)}: timestamp {event.get('timestamp')!r} is more than "
            "5 minutes in the future",
            index=index,
            event_id=event_id,
        )
    return None
