"""The dev server against the billing API's contract: what it accepts Prism accepts (and what
Prism refuses it refuses), and its responses validate against the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from openapi_core import OpenAPI

from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import ago, events
from tests.devserver._openapi import request_problems, response_problems

HEADERS = {"Authorization": "Bearer sk_test_contract"}


def nested_filter(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {
        "conjunction": "and",
        "clauses": [{"key": "model", "operator": "contains", "value": "gpt"}],
    }
    for _ in range(levels):
        node = {"conjunction": "or", "clauses": [node]}
    return node


def meter(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Tokens",
        "event_name": "llm",
        "measurement_unit": "tokens",
        "aggregation": {"type": "sum", "key": "tokens"},
    }
    return {**body, **overrides}


def accepted_ingest_bodies() -> dict[str, Any]:
    full = events(1, metadata={"i": 150, "f": 0.25, "b": True, "s": "x"}, timestamp=ago(minutes=5))
    return {
        "minimal": {"events": events(1)},
        "full": {"events": full},
        "null-fields": {"events": events(1, metadata=None, timestamp=None)},
        "thousand": {"events": events(1000, metadata={"tokens": 3})},
        "extra-fields": {"events": [{**events(1)[0], "extra": 1}], "trace": "t"},
        "offset-time": {"events": events(1, timestamp=ago(minutes=1).replace("Z", "+00:00"))},
    }


def refused_ingest_bodies() -> dict[str, Any]:
    return {
        "empty": {"events": []},
        "1001": {"events": events(1001)},
        "no-customer": {"events": [{"event_id": "e", "event_name": "n"}]},
        "number-id": {"events": [{"event_id": 1, "customer_id": "c", "event_name": "n"}]},
        "object-metadata": {"events": events(1, metadata={"o": {"a": 1}})},
        "array-metadata": {"events": events(1, metadata={"a": [1]})},
        "bad-time": {"events": events(1, timestamp="yesterday")},
        "no-events": {"items": []},
    }


ACCEPTED_METERS = {
    "count": meter(aggregation={"type": "count"}),
    "sum": meter(),
    "max-filtered": meter(aggregation={"type": "max", "key": "tokens"}, filter=nested_filter(0)),
    "last-3-levels": meter(aggregation={"type": "last", "key": "tokens"}, filter=nested_filter(3)),
    "described": meter(description="LLM tokens"),
}
REFUSED_METERS = {
    "bad-type": meter(aggregation={"type": "avg", "key": "tokens"}),
    "4-levels": meter(filter=nested_filter(4)),
    "no-unit": {k: v for k, v in meter().items() if k != "measurement_unit"},
    "bad-operator": meter(
        filter={"conjunction": "and", "clauses": [{"key": "k", "operator": "like", "value": 1}]}
    ),
}


@pytest.fixture(scope="module")
def dev_url() -> Iterator[str]:
    with DevServer() as server:
        yield server.base_url


def post_both(prism_url: str, dev_url: str, path: str, body: Any) -> tuple[int, int, str]:
    """POST the same body to Prism and the dev server; return both statuses and Prism's
    violations."""
    content = json.dumps(body).encode()
    headers = {**HEADERS, "Content-Type": "application/json"}
    prism = httpx2.post(f"{prism_url}{path}", content=content, headers=headers, timeout=30)
    dev = httpx2.post(f"{dev_url}{path}", content=content, headers=headers, timeout=30)
    return prism.status_code, dev.status_code, prism.headers.get("sl-violations", "")


# --- (a) Prism agrees ----------------------------------------------------------------------


@pytest.mark.contract
@pytest.mark.parametrize("name", list(accepted_ingest_bodies()))
def test_an_ingest_body_the_dev_server_accepts_prism_accepts(
    prism_url: str, dev_url: str, name: str
) -> None:
    prism, dev, violations = post_both(
        prism_url, dev_url, "/events/ingest", accepted_ingest_bodies()[name]
    )
    assert dev == 200
    assert prism == 200, violations


@pytest.mark.contract
@pytest.mark.parametrize("name", list(refused_ingest_bodies()))
def test_an_ingest_body_prism_refuses_the_dev_server_refuses(
    prism_url: str, dev_url: str, name: str
) -> None:
    prism, dev, _ = post_both(prism_url, dev_url, "/events/ingest", refused_ingest_bodies()[name])
    assert prism == 422
    assert 400 <= dev < 500


@pytest.mark.contract
@pytest.mark.parametrize("name", list(ACCEPTED_METERS))
def test_a_meter_the_dev_server_accepts_prism_accepts(
    prism_url: str, dev_url: str, name: str
) -> None:
    prism, dev, violations = post_both(prism_url, dev_url, "/meters", ACCEPTED_METERS[name])
    assert dev == 201
    assert prism == 201, violations


@pytest.mark.contract
@pytest.mark.parametrize("name", list(REFUSED_METERS))
def test_a_meter_prism_refuses_the_dev_server_refuses(
    prism_url: str, dev_url: str, name: str
) -> None:
    prism, dev, _ = post_both(prism_url, dev_url, "/meters", REFUSED_METERS[name])
    assert (prism, dev) == (422, 422)


@pytest.mark.contract
@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 100, "page_number": 0},
        {"customer_id": "c", "event_name": "n", "start": ago(minutes=30), "end": ago(minutes=1)},
    ],
)
def test_a_listing_query_both_accept(prism_url: str, dev_url: str, params: dict[str, Any]) -> None:
    prism = httpx2.get(f"{prism_url}/events", params=params, headers=HEADERS, timeout=30)
    dev = httpx2.get(f"{dev_url}/events", params=params, headers=HEADERS)
    assert (prism.status_code, dev.status_code) == (200, 200)


@pytest.mark.contract
def test_both_refuse_a_missing_token(prism_url: str, dev_url: str) -> None:
    body = {"events": events(1)}
    prism = httpx2.post(f"{prism_url}/events/ingest", json=body, timeout=30)
    dev = httpx2.post(f"{dev_url}/events/ingest", json=body)
    assert (prism.status_code, dev.status_code) == (401, 401)


# --- (b) responses validate against the document ----------------------------------------


def exchanges(url: str) -> Iterator[httpx2.Response]:
    """One response of every documented operation and status the dev server produces."""
    with httpx2.Client(base_url=url, headers=HEADERS) as http:
        batch = events(3, metadata={"tokens": 150, "ratio": 0.5, "model": "gpt", "ok": True})
        yield http.post("/events/ingest", json={"events": batch})
        yield http.post("/events/ingest", json={"events": []})
        yield http.post("/events/ingest", json={"events": [batch[0], batch[0]]})
        yield http.post("/events/ingest", json={"events": batch}, headers={"Authorization": ""})
        yield http.get("/events", params={"page_size": 2})
        yield http.get(f"/events/{batch[0]['event_id']}")
        yield http.get("/events/evt_missing")
        created = http.post("/meters", json=ACCEPTED_METERS["last-3-levels"])
        yield created
        meter_id = created.json()["id"]
        yield http.get("/events", params={"meter_id": meter_id})
        yield http.get("/events", params={"meter_id": "mtr_missing"})
        yield http.get("/meters", params={"archived": "false"})
        yield http.get(f"/meters/{meter_id}")
        yield http.get("/meters/mtr_missing")
        yield http.delete(f"/meters/{meter_id}")
        yield http.post(f"/meters/{meter_id}/unarchive")
        yield http.post("/meters", json=REFUSED_METERS["bad-type"])


def test_every_response_validates_against_the_document(openapi_spec: OpenAPI) -> None:
    statuses = []
    with DevServer() as server:
        for response in exchanges(server.base_url):
            statuses.append(response.status_code)
            assert response_problems(openapi_spec, response) == [], (
                response.request.method,
                response.request.url.path,
                response.status_code,
                response.text[:300],
            )
    assert {200, 201, 204, 400, 401, 404, 422} <= set(statuses)


def test_injected_429s_validate_against_the_document(openapi_spec: OpenAPI) -> None:
    with DevServer(faults="429=1", retry_after=0.5) as server:
        response = httpx2.post(
            f"{server.base_url}/events/ingest", json={"events": events(1)}, headers=HEADERS
        )
    assert response.status_code == 429
    assert response_problems(openapi_spec, response) == []


def test_the_validator_catches_a_response_that_breaks_the_contract(openapi_spec: OpenAPI) -> None:
    request = httpx2.Request("POST", "http://127.0.0.1/events/ingest", headers=HEADERS, json={})
    wrong = httpx2.Response(200, json={"count": 1}, request=request)
    negative = httpx2.Response(200, json={"ingested_count": -1}, request=request)
    assert response_problems(openapi_spec, wrong)
    assert response_problems(openapi_spec, negative)


def test_the_requests_used_here_conform_to_the_document(openapi_spec: OpenAPI) -> None:
    for body in accepted_ingest_bodies().values():
        request = httpx2.Request(
            "POST", "http://127.0.0.1/events/ingest", headers=HEADERS, json=body
        )
        assert request_problems(openapi_spec, request) == []
    for body in refused_ingest_bodies().values():
        request = httpx2.Request(
            "POST", "http://127.0.0.1/events/ingest", headers=HEADERS, json=body
        )
        assert request_problems(openapi_spec, request)
