"""The request body the sender builds is what ``json.dumps`` would give: byte for byte with
the :mod:`json` encoder, the same JSON values with orjson (the ``fast`` extra)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dodo_ingest.client import EventInput
from dodo_ingest.client._models import validate_metadata
from dodo_ingest.delivery import _encoding
from dodo_ingest.delivery._encoding import encode_event, event_json, load_fast_encoder
from dodo_ingest.delivery._ids import format_epoch
from dodo_ingest.delivery._queues import QueuedEvent, encode_batch

orjson = pytest.importorskip("orjson", reason="orjson (the fast extra) is a dev dependency")


@pytest.fixture
def json_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata encoded by the json module's C encoder (what runs without orjson)."""
    monkeypatch.setattr(_encoding, "_encode_metadata", _encoding._make_encoder())


@pytest.fixture
def fast_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metadata encoded by orjson, as after the sender thread loaded it (the encoder in use
    before is put back afterwards)."""
    monkeypatch.setattr(_encoding, "_encode_metadata", _encoding._make_encoder())
    assert load_fast_encoder()


def test_bodies_match_json_dumps_byte_for_byte(json_encoder: None):
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


EVENTS = [
    EventInput("evt_plain", "cus_1", "api.call"),
    EventInput(
        "evt_meta",
        "cus_\u00e9",
        "api.call",
        None,
        {
            "s": 'x"y\u0000\u001f\u007f\u2028 \\ / \U0001f600',
            "i": 2**63 - 1,
            "neg": -(2**63),
            "f": 0.1,
            "e": 1e300,
            "tiny": 5e-324,
            "small": 1e-7,
            "big": 1e16,
            "whole": 3.0,
            "z": -0.0,
            "t": True,
            "no": False,
        },
    ),
]


def test_fast_bodies_hold_the_same_json_values(fast_encoder: None):
    """orjson spells some floats differently (``1e-7``, not ``1e-07``): the values, their
    types and the order of the keys are the same."""
    now = time.time()
    for event in EVENTS:
        body = encode_event(event, now)
        assert list(json.loads(body).items()) == list(event_json(event, now).items())
        if event.metadata:
            decoded = json.loads(body)["metadata"]
            assert [type(value) for value in decoded.values()] == [
                type(value) for value in event.metadata.values()
            ]
            assert math.copysign(1.0, decoded["z"]) == -1.0
    assert '"small":1e-7,' in encode_event(EVENTS[1], now)


_values = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@given(st.dictionaries(st.text(min_size=1, max_size=20), _values, max_size=8))
def test_both_encoders_write_the_same_values(metadata: dict[str, object]) -> None:
    try:
        checked = validate_metadata(metadata)
    except Exception:  # refused (lone surrogates...): neither encoder ever sees it
        return
    plain = _encoding._make_encoder()(checked)
    fast = orjson.dumps(checked).decode()
    assert json.loads(fast) == json.loads(plain) == checked
    assert [type(v) for v in json.loads(fast).values()] == [type(v) for v in checked.values()]


def test_the_sender_thread_loads_orjson_and_a_process_without_it_keeps_json() -> None:
    """A started ``Ingestion`` encodes with orjson (the caller's import does not load it);
    where orjson cannot be imported, it keeps the json encoder."""
    script = """
import sys, time
if sys.argv[1] == "blocked":
    sys.modules["orjson"] = None  # import orjson raises ImportError
from dodo_ingest import Ingestion
from dodo_ingest.delivery import _encoding
assert "orjson" not in sys.modules or sys.modules["orjson"] is None
json_encoder = _encoding._encode_metadata
ingestion = Ingestion(api_key="sk_test_x", base_url="http://127.0.0.1:9", event_name="e")
ingestion.track("cus_1", metadata={"small": 1e-7})
deadline = time.monotonic() + 60  # the sender loads the encoder, then builds its transport
while ingestion._pipeline._transport is None and time.monotonic() < deadline:
    time.sleep(0.01)
ingestion.close(timeout=0)
changed = _encoding._encode_metadata is not json_encoder
print(changed, _encoding.encode_fields("evt_1", "cus_1", "e", 0.0, {"small": 1e-7}))
"""
    for mode, changed, text in (
        ("installed", "True", '"small":1e-7}'),
        ("blocked", "False", '"small":1e-07}'),
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split(" ", 1)[0] == changed
        assert text in done.stdout
