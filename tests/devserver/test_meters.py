"""Meters: create, list, retrieve, archive, unarchive, over real HTTP and with our client."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from dodo_ingest import (
    DodoClient,
    FilterCondition,
    MeterAggregation,
    MeterFilter,
    NotFoundError,
)
from dodo_ingest.devserver import BUSINESS_ID, DevServer


def meter_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Tokens",
        "event_name": "llm.chat_completion",
        "measurement_unit": "tokens",
        "aggregation": {"type": "sum", "key": "totalTokens"},
    }
    body.update(overrides)
    return body


def condition(key: str = "model", operator: str = "equals", value: Any = "gpt") -> dict[str, Any]:
    return {"key": key, "operator": operator, "value": value}


def nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"conjunction": "and", "clauses": [condition()]}
    for _ in range(levels):
        node = {"conjunction": "or", "clauses": [node]}
    return node


def test_create_answers_201_with_the_meter(http: httpx2.Client) -> None:
    body = meter_body(description="LLM tokens", filter=nested(0))
    response = http.post("/meters", json=body)
    assert response.status_code == 201
    meter = response.json()
    assert meter["id"].startswith("mtr_")
    assert meter["business_id"] == BUSINESS_ID
    assert {k: meter[k] for k in body} == body
    assert meter["created_at"] == meter["updated_at"]
    assert http.get(f"/meters/{meter['id']}").json() == meter


@pytest.mark.parametrize("kind", ["count", "sum", "max", "last"])
def test_every_aggregation_type_is_accepted(http: httpx2.Client, kind: str) -> None:
    aggregation = {"type": kind} if kind == "count" else {"type": kind, "key": "n"}
    response = http.post("/meters", json=meter_body(aggregation=aggregation))
    assert response.status_code == 201
    assert response.json()["aggregation"] == {"key": aggregation.get("key"), "type": kind}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (meter_body(aggregation={"type": "sum"}), "aggregation.key is required"),
        (meter_body(aggregation={"type": "max", "key": None}), "aggregation.key is required"),
        (meter_body(aggregation={"type": "avg", "key": "n"}), "aggregation.type"),
        ({k: v for k, v in meter_body().items() if k != "name"}, "name is required"),
        ({k: v for k, v in meter_body().items() if k != "aggregation"}, "aggregation is required"),
        (meter_body(measurement_unit=""), "measurement_unit"),
        (meter_body(filter={"conjunction": "xor", "clauses": [condition()]}), "conjunction"),
        (meter_body(filter={"conjunction": "and", "clauses": []}), "1 to 10"),
        (meter_body(filter={"conjunction": "and", "clauses": [condition()] * 11}), "1 to 10"),
        (
            meter_body(filter={"conjunction": "and", "clauses": [condition(operator="like")]}),
            "operator",
        ),
        (meter_body(filter={"conjunction": "and", "clauses": [condition(key="k" * 101)]}), "key"),
        (meter_body(filter={"conjunction": "and", "clauses": [condition(value=[1])]}), "value"),
        (meter_body(filter={"conjunction": "and", "clauses": [condition(), nested(0)]}), "mixes"),
        (meter_body(filter=nested(4)), "nest at most 3"),
    ],
    ids=[
        "sum-without-key",
        "max-null-key",
        "unknown-type",
        "no-name",
        "no-aggregation",
        "empty-unit",
        "bad-conjunction",
        "no-clauses",
        "11-clauses",
        "bad-operator",
        "long-key",
        "array-value",
        "mixed-clauses",
        "4-levels",
    ],
)
def test_an_invalid_meter_gets_422_naming_the_field(
    http: httpx2.Client, body: dict[str, Any], needle: str
) -> None:
    response = http.post("/meters", json=body)
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_request"
    assert needle in response.json()["message"]


def test_three_nested_levels_are_accepted(http: httpx2.Client) -> None:
    assert http.post("/meters", json=meter_body(filter=nested(3))).status_code == 201


def test_every_operator_is_accepted(http: httpx2.Client) -> None:
    operators = [
        "equals",
        "not_equals",
        "greater_than",
        "greater_than_or_equals",
        "less_than",
        "less_than_or_equals",
        "contains",
        "does_not_contain",
    ]
    clauses = [condition(operator=op, value=1) for op in operators]
    response = http.post(
        "/meters", json=meter_body(filter={"conjunction": "or", "clauses": clauses})
    )
    assert response.status_code == 201


def test_list_archive_and_unarchive(server: DevServer) -> None:
    with DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client:
        created = [
            client.meters.create(
                name=f"meter {i}",
                event_name="api.call",
                measurement_unit="calls",
                aggregation=MeterAggregation("count"),
            )
            for i in range(5)
        ]
        assert [m.id for m in client.meters.list(page_size=2)] == [m.id for m in created]
        assert list(client.meters.list(archived=True)) == []

        client.meters.archive(created[1].id)
        client.meters.archive(created[3].id)
        assert [m.id for m in client.meters.list()] == [created[i].id for i in (0, 2, 4)]
        assert [m.id for m in client.meters.list(archived=False)] == [
            created[i].id for i in (0, 2, 4)
        ]
        assert [m.id for m in client.meters.list(archived=True)] == [created[i].id for i in (1, 3)]
        assert client.meters.retrieve(created[1].id) == created[1]  # archived, still readable

        client.meters.unarchive(created[1].id)
        assert [m.id for m in client.meters.list(archived=True)] == [created[3].id]


def test_archive_answers_204_and_unarchive_200_without_body(http: httpx2.Client) -> None:
    meter_id = http.post("/meters", json=meter_body()).json()["id"]
    archived = http.delete(f"/meters/{meter_id}")
    unarchived = http.post(f"/meters/{meter_id}/unarchive")
    assert (archived.status_code, archived.content) == (204, b"")
    assert (unarchived.status_code, unarchived.content) == (200, b"")


def test_meter_pages_are_0_based(server: DevServer) -> None:
    url = server.base_url
    headers = {"Authorization": "Bearer k"}
    created = [
        httpx2.post(f"{url}/meters", json=meter_body(name=f"m{i}"), headers=headers).json()["id"]
        for i in range(3)
    ]
    pages = [
        [
            m["id"]
            for m in httpx2.get(
                f"{url}/meters", params={"page_size": 2, "page_number": n}, headers=headers
            ).json()["items"]
        ]
        for n in range(3)
    ]
    assert pages == [created[:2], created[2:], []]


def test_unknown_meters_are_404(client: DodoClient) -> None:
    for call in (client.meters.retrieve, client.meters.archive, client.meters.unarchive):
        with pytest.raises(NotFoundError):
            call("mtr_missing")


def test_our_client_round_trips_a_filtered_meter(client: DodoClient) -> None:
    meter_filter = MeterFilter(
        "or",
        (
            MeterFilter("and", (FilterCondition("model", "contains", "gpt"),)),
            MeterFilter("and", (FilterCondition("tokens", "greater_than", 10),)),
        ),
    )
    created = client.meters.create(
        name="Tokens",
        event_name="llm",
        measurement_unit="tokens",
        aggregation=MeterAggregation("max", "tokens"),
        filter=meter_filter,
        description="largest call",
    )
    assert created.filter == meter_filter
    assert client.meters.retrieve(created.id) == created


def test_meters_need_a_token(shared_server: DevServer) -> None:
    assert httpx2.get(f"{shared_server.base_url}/meters").status_code == 401
    assert httpx2.post(f"{shared_server.base_url}/meters", json=meter_body()).status_code == 401
