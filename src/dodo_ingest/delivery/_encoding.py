"""Encoding events as the JSON the API expects, cheaply enough to do for every event.

Metadata is encoded by the C encoder of :mod:`json`, or by orjson once the sender thread has
loaded it (``pip install "dodo-ingest[fast]"``, or orjson brought by another package): about
0.8 µs less per event. Both write the same JSON values; only the spelling of float exponents
differs (``1e-07`` and ``1e-7``), which the API reads as the same number. orjson is loaded in
the sender thread, where its import (about 10 ms, with :mod:`dataclasses` and
:mod:`inspect`) does not delay the caller's first ``track()``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..client import EventInput
from ._ids import format_epoch

__all__ = [
    "encode_event",
    "encode_fields",
    "event_from_json",
    "event_json",
    "load_fast_encoder",
]

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # JSON string literal, C-accelerated


def _make_encoder() -> Callable[[Mapping[str, Any]], str]:
    """The C encoder of the json module built once, else :func:`json.dumps` (other Pythons).

    Building it per call is what makes ``json.dumps`` slow for small objects. Events hold
    only validated scalars, so the circular-reference check is not needed.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            encoder = make(None, _unencodable, _quote, None, ":", ",", False, False, True)
            if "".join(encoder({"k": 1.5}, 0)) == '{"k":1.5}':
                return lambda data: "".join(encoder(data, 0))
        except Exception:  # a different C signature: fall back
            pass
    return _encode_json


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encode_metadata = _make_encoder()
"""The encoder of metadata in use: :func:`load_fast_encoder` replaces it (one assignment, so
a thread encodes with one or the other, never a mix)."""


def load_fast_encoder() -> bool:
    """Encode metadata with orjson from now on when it can be imported; True when it is used.

    Called by the sender thread as it starts (never raises: without orjson, or with one
    that fails to load, the :mod:`json` encoder stays). Only validated metadata reaches the
    encoder (plain ``str`` keys; ``str``, ``bool``, int64 ``int`` and finite ``float``
    values), which both encoders write as the same JSON values.
    """
    global _encode_metadata
    try:
        from orjson import dumps
    except Exception:  # not installed, or a broken build: the json encoder stays
        return False

    def encode(metadata: Mapping[str, Any]) -> str:
        return dumps(metadata).decode()

    _encode_metadata = encode
    return True


def event_json(event: EventInput, timestamp: float) -> dict[str, Any]:
    """The JSON object of one event, with its timestamp fixed."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "event_name": event.event_name,
        "timestamp": format_epoch(timestamp),
    }
    if event.metadata is not None:
        data["metadata"] = event.metadata
    return data


_heads: dict[tuple[str, str], str] = {}
"""Encoded ``customer_id``/``event_name`` part per pair seen (few pairs repeat a lot)."""
_MAX_HEADS = 4096


def _head(customer_id: str, event_name: str) -> str:
    head = _heads.get((customer_id, event_name))
    if head is None:
        if len(_heads) >= _MAX_HEADS:
            _heads.clear()
        head = f',"customer_id":{_quote(customer_id)},"event_name":{_quote(event_name)},'
        _heads[(customer_id, event_name)] = head
    return head


def encode_event(event: EventInput, timestamp: float) -> str:
    """One event as compact JSON text, the same text as ``json.dumps`` of :func:`event_json`
    (built from cached parts, because the sender does this for every event)."""
    return encode_fields(
        event.event_id, event.customer_id, event.event_name, timestamp, event.metadata
    )


def encode_fields(
    event_id: str,
    customer_id: str,
    event_name: str,
    timestamp: float,
    metadata: Mapping[str, Any] | None,
) -> str:
    """:func:`encode_event` of an event given by its fields (already checked)."""
    text = (
        f'{{"event_id":{_quote(event_id)}{_head(customer_id, event_name)}'
        f'"timestamp":"{format_epoch(timestamp)}"'
    )
    if metadata is None:
        return text + "}"
    return f'{text},"metadata":{_encode_metadata(metadata)}}}'


def event_from_json(body: str | bytes) -> EventInput:
    """Rebuild the :class:`EventInput` of a stored JSON event, as it was stored (an event the
    API refused may break its limits, and must still be reported and listed)."""
    return EventInput._restore(json.loads(body))
