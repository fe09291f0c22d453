"""Every documented rule of ``POST /events/ingest``, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from dodo_ingest import BadRequestError, DodoClient, EventInput
from dodo_ingest.devserver import MAX_BODY_BYTES, DevServer
from tests.devserver._helpers import ago, events, unique


def ingest(http: httpx2.Client, batch: list[dict[str, Any]], **kwargs: Any) -> httpx2.Response:
    return http.post("/events/ingest", json={"events": batch}, **kwargs)


def stored(server: DevServer, batch: list[dict[str, Any]]) -> set[str]:
    ids = set(server.event_ids())
    return {event["event_id"] for event in batch} & ids


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Token abc"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "bearer"},
    ],
    ids=["missing", "other-scheme", "basic", "no-token"],
)
def test_a_request_without_a_bearer_token_gets_401(
    shared_server: DevServer, headers: dict[str, str]
) -> None:
    batch = events(1)
    response = httpx2.post(
        f"{shared_server.base_url}/events/ingest", json={"events": batch}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert not stored(shared_server, batch)


def test_any_non_empty_token_is_accepted_when_no_key_is_set(shared_server: DevServer) -> None:
    response = httpx2.post(
        f"{shared_server.base_url}/events/ingest",
        json={"events": events(1)},
        headers={"Authorization": "Bearer whatever"},
    )
    assert response.status_code == 200
    assert shared_server.api_key is None


def test_only_the_configured_key_is_accepted_and_never_echoed() -> None:
    secret = "sk_test_only_this_one_123456"
    with DevServer(api_key=secret) as server:
        url = f"{server.base_url}/events/ingest"
        wrong = httpx2.post(
            url, json={"events": events(1)}, headers={"Authorization": "Bearer sk_test_other"}
        )
        right = httpx2.post(
            url, json={"events": events(1)}, headers={"Authorization": f"Bearer {secret}"}
        )
        listing = httpx2.get(
            f"{server.base_url}/events", headers={"Authorization": "Bearer sk_test_other"}
        )
        assert server.api_key == secret
    assert wrong.status_code == 401
    assert secret not in wrong.text
    assert "sk_test_other" not in wrong.text
    assert right.status_code == 200
    assert listing.status_code == 401


# --- batch size, duplicates, idempotency -----------------------------------------------


def test_one_and_a_thousand_events_are_accepted(http: httpx2.Client) -> None:
    assert ingest(http, events(1)).json() == {"ingested_count": 1}
    assert ingest(http, events(1000)).json() == {"ingested_count": 1000}


@pytest.mark.parametrize("count", [0, 1001])
def test_an_empty_or_oversized_batch_is_refused(
    http: httpx2.Client, shared_server: DevServer, count: int
) -> None:
    batch = events(count)
    response = ingest(http, batch)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_batch_size"
    assert str(count) in response.json()["message"]
    assert not stored(shared_server, batch)


def test_a_duplicate_id_inside_a_request_rejects_the_whole_request(
    http: httpx2.Client, shared_server: DevServer
) -> None:
    batch = events(5)
    batch[3]["event_id"] = batch[1]["event_id"]
    response = ingest(http, batch)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "duplicate_event_id"
    assert body["index"] == 3
    assert body["event_id"] == batch[1]["event_id"]
    assert "events[1]" in body["message"]
    assert not stored(shared_server, batch)


def test_an_id_ingested_before_is_ignored_and_not_counted_twice(
    http: httpx2.Client, shared_server: DevServer
) -> None:
    first = events(3)
    assert ingest(http, first).json() == {"ingested_count": 3}
    replay = [*first[1:], *events(2)]
    assert ingest(http, replay).json() == {"ingested_count": 2}
    assert ingest(http, replay).json() == {"ingested_count": 0}
    ids = shared_server.event_ids()
    for event in first:
        assert ids.count(event["event_id"]) == 1


def test_the_replayed_copy_does_not_overwrite_the_stored_event(http: httpx2.Client) -> None:
    [event] = events(1, metadata={"n": 1})
    ingest(http, [event])
    ingest(http, [{**event, "metadata": {"n": 2}}])
    assert http.get(f"/events/{event['event_id']}").json()["metadata"] == {"n": 1}


def test_duplicates_are_counted_in_the_stats(server: DevServer) -> None:
    headers = {"Authorization": "Bearer k"}
    batch = events(4)
    httpx2.post(f"{server.base_url}/events/ingest", json={"events": batch}, headers=headers)
    httpx2.post(f"{server.base_url}/events/ingest", json={"events": batch}, headers=headers)
    stats = server.stats
    assert stats["events_ingested"] == 4
    assert stats["duplicates_ignored"] == 4
    assert stats["requests"] == {"200": 2}


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes_ago", "code"),
    [(61, "timestamp_too_old"), (-6, "timestamp_in_future")],
    ids=["older-than-1h", "more-than-5min-ahead"],
)
def test_a_timestamp_outside_the_window_rejects_the_request(
    http: httpx2.Client, shared_server: DevServer, minutes_ago: int, code: str
) -> None:
    timestamp = ago(minutes=minutes_ago)
    batch = events(3)
    batch[2]["timestamp"] = timestamp
    response = ingest(http, batch)
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["index"], body["event_id"]) == (code, 2, batch[2]["event_id"])
    assert timestamp in body["message"]
    assert not stored(shared_server, batch)


def test_timestamps_inside_the_window_are_kept_as_sent(http: httpx2.Client) -> None:
    batch = events(3)
    batch[0]["timestamp"] = ago(minutes=59)
    batch[1]["timestamp"] = ago(minutes=-4)
    batch[2]["timestamp"] = ago(minutes=30).replace("Z", "+00:00")
    assert ingest(http, batch).json() == {"ingested_count": 3}
    for event in batch:
        got = http.get(f"/events/{event['event_id']}").json()["timestamp"]
        assert got[:23] == event["timestamp"][:23]


def test_an_event_without_timestamp_gets_the_current_time(http: httpx2.Client) -> None:
    [event] = events(1)
    before = ago(seconds=1)
    ingest(http, [event])
    after = ago(seconds=-1)
    stamp = http.get(f"/events/{event['event_id']}").json()["timestamp"]
    assert before <= stamp <= after


# --- metadata limits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ({f"k{i}": i for i in range(51)}, "metadata_too_many_keys"),
        ({"k" * 101: 1}, "metadata_key_too_long"),
        ({"note": "x" * 501}, "metadata_value_too_long"),
    ],
    ids=["51-keys", "101-char-key", "501-char-value"],
)
def test_metadata_beyond_the_limits_rejects_the_request(
    http: httpx2.Client, shared_server: DevServer, metadata: dict[str, Any], code: str
) -> None:
    batch = events(2)
    batch[1]["metadata"] = metadata
    response = ingest(http, batch)
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], body["index"], body["event_id"]) == (code, 1, batch[1]["event_id"])
    assert not stored(shared_server, batch)


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, 2], None, 2**63, -(2**63) - 1],
    ids=["object", "array", "null", "int64-max-plus-1", "int64-min-minus-1"],
)
def test_metadata_values_the_schema_refuses_are_422(
    http: httpx2.Client, shared_server: DevServer, value: Any
) -> None:
    batch = events(2)
    batch[1]["metadata"] = {"k": value}
    response = ingest(http, batch)
    assert response.status_code == 422
    body = response.json()
    assert (body["index"], body["event_id"]) == (1, batch[1]["event_id"])
    assert "metadata['k']" in body["message"]
    assert not stored(shared_server, batch)


def test_metadata_at_the_limits_is_accepted(http: httpx2.Client) -> None:
    metadata: dict[str, Any] = {f"k{i}": i for i in range(48)}
    metadata["k" * 100] = "v" * 500
    metadata["flag"] = True
    [event] = events(1, metadata=metadata)
    assert ingest(http, [event]).json() == {"ingested_count": 1}
    assert http.get(f"/events/{event['event_id']}").json()["metadata"] == metadata


def test_metadata_values_keep_their_json_types(http: httpx2.Client) -> None:
    metadata = {"i": 150, "f": 0.25, "b": False, "s": "é ✓", "big": 2**53 + 1}
    [event] = events(1, metadata=metadata)
    ingest(http, [event])
    assert http.get(f"/events/{event['event_id']}").json()["metadata"] == metadata


# --- malformed bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"events": [', b"not json", b'{"events": [{"a": NaN}]}', b"\xff\xfe"],
    ids=["truncated", "unclosed", "text", "nan", "bad-utf8"],
)
def test_malformed_json_gets_422(http: httpx2.Client, body: bytes) -> None:
    response = http.post(
        "/events/ingest", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e.pop("customer_id"), "customer_id is missing"),
        (lambda e: e.update(event_name=7), "event_name must be a string"),
        (lambda e: e.update(timestamp="yesterday"), "RFC 3339"),
        (lambda e: e.update(timestamp="2026-11-25T10:00:00"), "RFC 3339"),
        (lambda e: e.update(timestamp=1700000000), "timestamp must be a string"),
        (lambda e: e.update(metadata=[1]), "metadata must be an object"),
    ],
    ids=["missing-field", "wrong-type", "bad-date", "no-offset", "number-date", "list-metadata"],
)
def test_a_schema_violation_gets_422_naming_the_event(
    http: httpx2.Client, shared_server: DevServer, mutate: Any, needle: str
) -> None:
    batch = events(3)
    mutate(batch[2])
    response = ingest(http, batch)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["index"] == 2
    assert needle in body["message"]
    assert not stored(shared_server, batch)


def test_a_number_too_large_to_be_finite_gets_422(http: httpx2.Client) -> None:
    batch = events(2, timestamp=ago(hours=2))  # the 400 of event 0 loses to the 422 of event 1
    body = json.dumps({"events": batch}).replace(
        '"timestamp"', '"metadata": {"n": 1e999}, "timestamp"', 2
    )
    body = body.replace('"metadata": {"n": 1e999}, ', "", 1)
    response = http.post(
        "/events/ingest", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert (response.json()["index"], response.json()["event_id"]) == (1, batch[1]["event_id"])
    assert "finite" in response.json()["message"]


@pytest.mark.parametrize(
    "document", [[], {"events": {}}, {"event": []}, "x"], ids=["array", "obj", "key", "str"]
)
def test_a_body_that_is_not_an_events_object_gets_422(http: httpx2.Client, document: Any) -> None:
    response = http.post("/events/ingest", json=document)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"


def test_a_schema_violation_wins_over_an_earlier_rule_violation(http: httpx2.Client) -> None:
    batch = events(3)
    batch[0]["timestamp"] = ago(hours=2)
    del batch[2]["event_name"]
    assert ingest(http, batch).status_code == 422


def test_an_empty_id_is_refused(http: httpx2.Client) -> None:
    batch = events(2)
    batch[1]["customer_id"] = ""
    response = ingest(http, batch)
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["index"]) == ("empty_field", 1)


def test_a_body_that_is_not_sent_as_json_gets_422(http: httpx2.Client) -> None:
    body = json.dumps({"events": events(1)})
    response = http.post("/events/ingest", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 422
    assert response.json()["code"] == "unsupported_media_type"


def test_unknown_fields_are_tolerated(http: httpx2.Client) -> None:
    batch = events(1)
    batch[0]["source"] = "extra"
    response = http.post("/events/ingest", json={"events": batch, "trace": "x"})
    assert response.json() == {"ingested_count": 1}


# --- body size -----------------------------------------------------------------------------


def oversized_body() -> bytes:
    filler = "x" * 400
    batch = events(1000, metadata={f"k{i}": filler for i in range(12)})
    body = json.dumps({"events": batch}).encode()
    assert len(body) > MAX_BODY_BYTES
    return body


def test_an_oversized_body_gets_413(http: httpx2.Client, shared_server: DevServer) -> None:
    body = oversized_body()
    response = http.post(
        "/events/ingest", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert "4 MiB" in response.json()["message"]
    assert http.get("/events", params={"page_size": 1}).status_code == 200  # still serving


def test_an_oversized_chunked_body_gets_413(http: httpx2.Client) -> None:
    body = oversized_body()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    response = http.post(
        "/events/ingest", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


# --- our typed client ----------------------------------------------------------------------


def test_our_client_reads_the_rule_errors(client: DodoClient) -> None:
    event = EventInput(unique("evt"), "cus_1", "api.call")
    assert client.events.ingest([event]).ingested_count == 1
    assert client.events.ingest([event]).ingested_count == 0
    stale = {"event_id": unique("evt"), "customer_id": "c", "event_name": "n"}
    body = json.dumps({"events": [{**stale, "timestamp": ago(hours=3)}]}).encode()
    with pytest.raises(BadRequestError) as caught:
        client.events.ingest_json(body)
    assert caught.value.status_code == 400
    assert "1 hour" in caught.value.message
