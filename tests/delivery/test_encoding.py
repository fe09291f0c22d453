"""The request body the sender builds is exactly what ``json.dumps`` would give."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from dodo_ingest.client import EventInput
from dodo_ingest.delivery._encoding import encode_event, event_json
from dodo_ingest.delivery._ids import format_epoch
from dodo_ingest.delivery._queues import QueuedEvent, encode_batch


def test_bodies_match_json_dumps_byte_for_byte():
    now = time.time()
    events = [
        EventInput("evt_plain", "cus_1", "api.call"),
        EventInput('id "quoted" \\ back', "cus_\u00e9\n\t\u2028", "name/\u4e2d", None, {}),
        EventInput(
            "evt_meta",
            "cus_1",
            "api.call",
            None,
            {"s": 'x"y\u0000', "i": 2**63 - 1, "f": 0.1, "e": 1e300, "t": True, "n": -3},
        ),
    ]
    items = [(event.event_id, now + i, event) for i, event in enumerate(events)]
    expected = json.dumps(
        {"events": [event_json(event, ts) for _, ts, event in items]},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    queued = [QueuedEvent(eid, ts, encode_event(event, ts), 0) for eid, ts, event in items]
    assert encode_batch(queued) == expected
    # The memory queue keeps bodies as UTF-8 bytes: the same request, joined as bytes.
    packed = [item._replace(body=item.body.encode()) for item in queued]
    assert encode_batch(packed) == expected
    assert encode_batch([packed[0], queued[1], packed[2]]) == expected  # never mixed, but safe
    for _, ts, event in items:
        assert json.loads(encode_event(event, ts)) == event_json(event, ts)


def test_timestamps_are_rfc3339_utc_milliseconds():
    moment = datetime(2026, 11, 25, 8, 0, 1, 987_654, tzinfo=UTC).timestamp()
    assert format_epoch(moment) == "2026-11-25T08:00:01.987Z"
    assert format_epoch(moment + 0.001) == "2026-11-25T08:00:01.988Z"
    assert format_epoch(moment + 1) == "2026-11-25T08:00:02.987Z"
    assert format_epoch(0.0) == "1970-01-01T00:00:00.000Z"
