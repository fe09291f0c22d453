"""``GET /events`` (filters, meters, paging) and ``GET /events/{event_id}``, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from dodo_ingest import AsyncDodoClient, DodoClient, FilterCondition, MeterAggregation, MeterFilter
from dodo_ingest.devserver import BUSINESS_ID, DevServer
from tests.devserver._helpers import ago, events, unique


def ingest(http: httpx2.Client, batch: list[dict[str, Any]]) -> None:
    response = http.post("/events/ingest", json={"events": batch})
    assert response.status_code == 200, response.text


def ids(http: httpx2.Client, **params: Any) -> list[str]:
    response = http.get("/events", params={"page_size": 100, **params})
    assert response.status_code == 200, response.text
    return [item["event_id"] for item in response.json()["items"]]


def test_an_event_comes_back_with_every_field(http: httpx2.Client) -> None:
    [event] = events(1, metadata={"tokens": 12}, timestamp=ago(minutes=3))
    ingest(http, [event])
    got = http.get(f"/events/{event['event_id']}").json()
    assert got == {**event, "business_id": BUSINESS_ID}


def test_an_unknown_event_is_404(http: httpx2.Client) -> None:
    response = http.get("/events/evt_does_not_exist")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_any_event_id_can_be_retrieved(client: DodoClient) -> None:
    odd = [f"{unique('evt')}/{suffix}" for suffix in ("a", "b?c=d", "é ✓", "%2F")]
    client.events.ingest([{"event_id": i, "customer_id": "c", "event_name": "n"} for i in odd])
    assert [client.events.retrieve(i).event_id for i in odd] == odd


def test_event_ids_are_case_sensitive(http: httpx2.Client) -> None:
    [event] = events(1, prefix=unique("CaseID"))
    ingest(http, [event])
    assert http.get(f"/events/{event['event_id'].lower()}").status_code == 404


def test_filters_by_customer_and_event_name(http: httpx2.Client) -> None:
    customer = unique("cus")
    name = unique("name")
    a = events(2, customer_id=customer, event_name=name)
    b = events(1, customer_id=customer, event_name="other.name")
    c = events(1, customer_id=unique("cus"), event_name=name)
    ingest(http, a + b + c)
    assert set(ids(http, customer_id=customer)) == {e["event_id"] for e in a + b}
    assert set(ids(http, event_name=name)) == {e["event_id"] for e in a + c}
    assert set(ids(http, customer_id=customer, event_name=name)) == {e["event_id"] for e in a}


def test_filters_by_time_range_and_lists_newest_first(http: httpx2.Client) -> None:
    customer = unique("cus")
    batch = events(3, customer_id=customer)
    for event, minutes in zip(batch, (50, 30, 10), strict=True):
        event["timestamp"] = ago(minutes=minutes)
    ingest(http, batch)
    old, middle, new = (e["event_id"] for e in batch)
    assert ids(http, customer_id=customer) == [new, middle, old]
    assert ids(http, customer_id=customer, start=ago(minutes=40)) == [new, middle]
    assert ids(http, customer_id=customer, end=ago(minutes=20)) == [middle, old]
    assert ids(http, customer_id=customer, start=ago(minutes=40), end=ago(minutes=20)) == [middle]


def test_pages_are_0_based_stable_and_complete(http: httpx2.Client) -> None:
    customer = unique("cus")
    batch = events(25, customer_id=customer, timestamp=ago(minutes=1))
    ingest(http, batch)
    pages = [ids(http, customer_id=customer, page_size=10, page_number=n) for n in range(4)]
    assert [len(page) for page in pages] == [10, 10, 5, 0]
    seen = [event_id for page in pages for event_id in page]
    assert sorted(seen) == sorted(e["event_id"] for e in batch)
    assert ids(http, customer_id=customer, page_size=10, page_number=1) == pages[1]


def test_the_default_page_holds_10_events(http: httpx2.Client) -> None:
    customer = unique("cus")
    ingest(http, events(12, customer_id=customer))
    response = http.get("/events", params={"customer_id": customer})
    assert len(response.json()["items"]) == 10


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 101},
        {"page_size": -1},
        {"page_number": -1},
        {"page_number": 2**31},
        {"page_size": "ten"},
        {"start": "yesterday"},
        {"end": "2026-01-01"},
    ],
)
def test_bad_query_parameters_get_422(http: httpx2.Client, params: dict[str, Any]) -> None:
    response = http.get("/events", params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_query"


def test_listing_needs_a_token(shared_server: DevServer) -> None:
    response = httpx2.get(f"{shared_server.base_url}/events")
    assert response.status_code == 401


# --- meter_id: the meter's event name and filter ----------------------------------------


METADATA = [
    {"tier": "pro", "tokens": 150, "model": "gpt-4o"},
    {"tier": "free", "tokens": 50, "model": "claude-3"},
    {"tier": "pro", "tokens": "300", "model": "gpt-4o-mini"},
    {},
    {"tier": "enterprise", "tokens": 100, "cached": True},
]


def cond(key: str, operator: str, value: Any) -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("meter_filter", "expected"),
    [
        ({"conjunction": "and", "clauses": [cond("tier", "equals", "pro")]}, {0, 2}),
        ({"conjunction": "and", "clauses": [cond("tier", "not_equals", "pro")]}, {1, 4}),
        ({"conjunction": "and", "clauses": [cond("tokens", "greater_than", 100)]}, {0, 2}),
        (
            {"conjunction": "and", "clauses": [cond("tokens", "greater_than_or_equals", 100)]},
            {0, 2, 4},
        ),
        ({"conjunction": "and", "clauses": [cond("tokens", "less_than", 100)]}, {1}),
        (
            {"conjunction": "and", "clauses": [cond("tokens", "less_than_or_equals", 100)]},
            {1, 4},
        ),
        ({"conjunction": "and", "clauses": [cond("model", "contains", "gpt")]}, {0, 2}),
        ({"conjunction": "and", "clauses": [cond("model", "does_not_contain", "mini")]}, {0, 1}),
        ({"conjunction": "and", "clauses": [cond("cached", "equals", True)]}, {4}),
        (
            {
                "conjunction": "and",
                "clauses": [cond("tier", "equals", "pro"), cond("tokens", "greater_than", 200)],
            },
            {2},
        ),
        (
            {
                "conjunction": "or",
                "clauses": [
                    cond("tier", "equals", "free"),
                    cond("tokens", "greater_than_or_equals", 300),
                ],
            },
            {1, 2},
        ),
        (
            {
                "conjunction": "or",
                "clauses": [
                    {
                        "conjunction": "and",
                        "clauses": [
                            cond("tier", "equals", "pro"),
                            cond("model", "contains", "mini"),
                        ],
                    },
                    {"conjunction": "and", "clauses": [cond("tier", "equals", "enterprise")]},
                ],
            },
            {2, 4},
        ),
        (
            {
                "conjunction": "and",
                "clauses": [
                    {
                        "conjunction": "or",
                        "clauses": [
                            {
                                "conjunction": "and",
                                "clauses": [
                                    {
                                        "conjunction": "or",
                                        "clauses": [cond("tokens", "less_than", 60)],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            },
            {1},
        ),
        (None, {0, 1, 2, 3, 4}),
    ],
    ids=[
        "equals",
        "not_equals",
        "greater_than",
        "greater_than_or_equals",
        "less_than",
        "less_than_or_equals",
        "contains",
        "does_not_contain",
        "equals-bool",
        "and",
        "or",
        "nested",
        "three-levels",
        "no-filter",
    ],
)
def test_meter_id_applies_the_meters_event_name_and_filter(
    http: httpx2.Client, meter_filter: dict[str, Any] | None, expected: set[int]
) -> None:
    name = unique("metered")
    batch = events(len(METADATA), event_name=name)
    for event, metadata in zip(batch, METADATA, strict=True):
        event["metadata"] = metadata
    ingest(http, [*batch, *events(2, event_name=unique("other"), metadata=METADATA[0])])
    meter = {
        "name": "m",
        "event_name": name,
        "measurement_unit": "calls",
        "aggregation": {"type": "count"},
        "filter": meter_filter,
    }
    meter_id = http.post("/meters", json=meter).json()["id"]
    assert set(ids(http, meter_id=meter_id)) == {batch[i]["event_id"] for i in expected}


def test_meter_id_pages_over_the_filtered_events(http: httpx2.Client) -> None:
    name = unique("paged")
    batch = events(30, event_name=name, timestamp=ago(minutes=2))
    for i, event in enumerate(batch):
        event["metadata"] = {"even": i % 2 == 0}
    ingest(http, batch)
    meter_filter = {"conjunction": "and", "clauses": [cond("even", "equals", True)]}
    meter = {
        "name": "m",
        "event_name": name,
        "measurement_unit": "calls",
        "aggregation": {"type": "count"},
        "filter": meter_filter,
    }
    meter_id = http.post("/meters", json=meter).json()["id"]
    pages = [ids(http, meter_id=meter_id, page_size=4, page_number=n) for n in range(5)]
    assert [len(page) for page in pages] == [4, 4, 4, 3, 0]
    assert sorted(i for page in pages for i in page) == sorted(e["event_id"] for e in batch[::2])


def test_an_event_name_that_disagrees_with_the_meter_is_400(
    http: httpx2.Client, client: DodoClient
) -> None:
    meter = client.meters.create(
        name="m",
        event_name="agreed.name",
        measurement_unit="calls",
        aggregation=MeterAggregation("count"),
    )
    agree = http.get("/events", params={"meter_id": meter.id, "event_name": "agreed.name"})
    disagree = http.get("/events", params={"meter_id": meter.id, "event_name": "other.name"})
    assert agree.status_code == 200
    assert disagree.status_code == 400
    assert disagree.json()["code"] == "event_name_mismatch"


def test_an_unknown_meter_is_404(http: httpx2.Client) -> None:
    response = http.get("/events", params={"meter_id": "mtr_unknown"})
    assert response.status_code == 404


def test_our_client_lists_every_page_with_a_meter(client: DodoClient, http: httpx2.Client) -> None:
    name = unique("client")
    batch = events(23, event_name=name, metadata={"tokens": 5})
    batch[4]["metadata"] = {"tokens": 500}
    ingest(http, batch)
    meter = client.meters.create(
        name="big calls",
        event_name=name,
        measurement_unit="tokens",
        aggregation=MeterAggregation("sum", "tokens"),
        filter=MeterFilter("and", (FilterCondition("tokens", "less_than", 100),)),
    )
    listed = list(client.events.list(meter_id=meter.id, page_size=5))
    assert len(listed) == 22
    assert batch[4]["event_id"] not in {e.event_id for e in listed}
    assert len(list(client.events.list(event_name=name, page_size=7))) == 23


@pytest.mark.anyio
async def test_our_async_client_sees_the_same_events(shared_server: DevServer) -> None:
    customer = unique("cus")
    batch = events(12, customer_id=customer, metadata={"tokens": 1})
    async with AsyncDodoClient(
        api_key="k", base_url=shared_server.base_url, max_retries=0
    ) as client:
        assert (await client.events.ingest(batch)).ingested_count == 12
        listed = [
            event.event_id async for event in client.events.list(customer_id=customer, page_size=5)
        ]
        retrieved = await client.events.retrieve(batch[0]["event_id"])
    assert sorted(listed) == sorted(e["event_id"] for e in batch)
    assert retrieved.metadata == {"tokens": 1}
