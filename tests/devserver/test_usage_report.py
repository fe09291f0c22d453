"""The dev-only usage report ``GET /_dev/usage``: each meter's aggregated value per customer."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import ago, events

HEADERS = {"Authorization": "Bearer k"}


@pytest.fixture
def url(server: DevServer) -> str:
    """The fresh server of the test, with tokens of two customers and one meter per kind."""
    base = server.base_url
    batch: list[dict[str, Any]] = []
    for customer, tokens, minutes in (
        ("cus_a", 100, 50),
        ("cus_a", 300, 40),
        ("cus_a", 200, 30),
        ("cus_b", 7.5, 20),
        ("cus_b", "2.5", 10),
    ):
        [event] = events(1, customer_id=customer, event_name="llm")
        event["timestamp"] = ago(minutes=minutes)
        event["metadata"] = {"tokens": tokens, "model": "gpt" if customer == "cus_a" else "claude"}
        batch.append(event)
    batch += events(2, customer_id="cus_a", event_name="other", metadata={"tokens": 1000})
    batch += events(1, customer_id="cus_c", event_name="llm", metadata={"model": "gpt"})
    response = httpx2.post(f"{base}/events/ingest", json={"events": batch}, headers=HEADERS)
    assert response.json() == {"ingested_count": 8}
    for kind in ("count", "sum", "max", "last"):
        meter = {
            "name": kind,
            "event_name": "llm",
            "measurement_unit": "tokens",
            "aggregation": {"type": kind, "key": None if kind == "count" else "tokens"},
        }
        assert httpx2.post(f"{base}/meters", json=meter, headers=HEADERS).status_code == 201
    return base


def report(url: str, **params: str) -> dict[tuple[str, str], str]:
    response = httpx2.get(f"{url}/_dev/usage", params=params)
    assert response.status_code == 200, response.text
    return {
        (item["meter_name"], item["customer_id"]): item["value"]
        for item in response.json()["items"]
    }


def test_each_meter_aggregates_per_customer(url: str) -> None:
    assert report(url) == {
        ("count", "cus_a"): "3",
        ("count", "cus_b"): "2",
        ("count", "cus_c"): "1",
        ("sum", "cus_a"): "600",
        ("sum", "cus_b"): "10.0",
        ("sum", "cus_c"): "0",
        ("max", "cus_a"): "300",
        ("max", "cus_b"): "7.5",
        ("max", "cus_c"): "0",
        ("last", "cus_a"): "200",
        ("last", "cus_b"): "2.5",
        ("last", "cus_c"): "0",
    }


def test_the_report_filters_by_customer_meter_and_time(url: str) -> None:
    assert report(url, customer_id="cus_b") == {
        ("count", "cus_b"): "2",
        ("sum", "cus_b"): "10.0",
        ("max", "cus_b"): "7.5",
        ("last", "cus_b"): "2.5",
    }
    meters = httpx2.get(f"{url}/meters", headers=HEADERS).json()["items"]
    sum_id = next(m["id"] for m in meters if m["name"] == "sum")
    assert report(url, meter_id=sum_id, start=ago(minutes=45), end=ago(minutes=15)) == {
        ("sum", "cus_a"): "500",
        ("sum", "cus_b"): "7.5",
    }


def test_the_report_names_the_meter_and_counts_events(url: str) -> None:
    items = httpx2.get(f"{url}/_dev/usage", params={"customer_id": "cus_a"}).json()["items"]
    sum_item = next(item for item in items if item["meter_name"] == "sum")
    assert sum_item["event_name"] == "llm"
    assert sum_item["measurement_unit"] == "tokens"
    assert sum_item["aggregation"] == {"type": "sum", "key": "tokens"}
    assert sum_item["event_count"] == 3


def test_a_meter_filter_applies_to_the_report(server: DevServer) -> None:
    base = server.base_url
    batch = events(3, event_name="llm", metadata={"model": "gpt", "tokens": 10})
    batch[0]["metadata"] = {"model": "claude", "tokens": 99}
    httpx2.post(f"{base}/events/ingest", json={"events": batch}, headers=HEADERS)
    meter = {
        "name": "gpt tokens",
        "event_name": "llm",
        "measurement_unit": "tokens",
        "aggregation": {"type": "sum", "key": "tokens"},
        "filter": {
            "conjunction": "and",
            "clauses": [{"key": "model", "operator": "equals", "value": "gpt"}],
        },
    }
    httpx2.post(f"{base}/meters", json=meter, headers=HEADERS)
    assert report(base) == {("gpt tokens", "cus_1"): "20"}


def test_an_unknown_meter_or_bad_time_is_refused(server: DevServer) -> None:
    base = server.base_url
    assert httpx2.get(f"{base}/_dev/usage", params={"meter_id": "mtr_x"}).status_code == 404
    assert httpx2.get(f"{base}/_dev/usage", params={"start": "soon"}).status_code == 422
