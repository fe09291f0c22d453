"""The typed client against Prism serving the billing API's real OpenAPI document.

Prism validates every request against the contract (401 without a bearer token, 422 with the
reason for a body or query that breaks the schema), so these tests fail if the client sends a
shape the real API would refuse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from dodo_ingest import (
    AsyncDodoClient,
    AuthenticationError,
    DodoClient,
    EventInput,
    EventValidationError,
    FilterCondition,
    MeterAggregation,
    MeterFilter,
    UnprocessableEntityError,
)

pytestmark = pytest.mark.contract


def test_ingest_is_accepted_by_the_contract(client: DodoClient) -> None:
    now = datetime.now(UTC)
    result = client.events.ingest(
        [
            EventInput(
                f"evt_{i}",
                "cus_1",
                "llm.chat_completion",
                now - timedelta(seconds=i),
                {"inputTokens": 120, "model": "gpt-4o", "cached": False, "cost": 0.25},
            )
            for i in range(1000)
        ]
    )
    assert result.ingested_count >= 0


def test_a_body_the_contract_refuses_fails(client: DodoClient) -> None:
    with pytest.raises(UnprocessableEntityError, match="customer_id"):
        client.events.ingest_json(b'{"events":[{"event_id":"e","event_name":"n"}]}')


def test_invalid_events_never_reach_the_server(
    client: DodoClient, sent: list[httpx2.Request]
) -> None:
    with pytest.raises(EventValidationError):
        client.events.ingest(
            [{"event_id": "e", "customer_id": "c", "event_name": "n", "metadata": {"a": {}}}]
        )
    assert sent == []


def test_list_pages_and_filters_match_the_contract(
    client: DodoClient, sent: list[httpx2.Request]
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    events = list(
        client.events.list(
            customer_id="cus_1", event_name="llm", start=start, end=datetime.now(UTC)
        )
    )
    assert events and events[0].event_id  # one short page: iteration stops
    assert len(sent) == 1
    sent.clear()
    # Prism answers every page with one item: page_size=1 walks pages 0, 1, 2 until the limit.
    assert len(list(client.events.list(meter_id="mtr_1", page_size=1, limit=3))) == 3
    assert [r.url.params["page_number"] for r in sent] == ["0", "1", "2"]


def test_retrieve(client: DodoClient) -> None:
    assert client.events.retrieve("evt_1").timestamp.tzinfo is not None


def test_meters_match_the_contract(client: DodoClient) -> None:
    meter = client.meters.create(
        name="Input tokens",
        event_name="llm.chat_completion",
        measurement_unit="tokens",
        aggregation=MeterAggregation("sum", "inputTokens"),
        filter=MeterFilter(
            "or",
            (
                MeterFilter("and", (FilterCondition("model", "equals", "gpt-4o"),)),
                MeterFilter("and", (FilterCondition("inputTokens", "greater_than", 0),)),
            ),
        ),
        description="tokens sent to the model",
    )
    assert meter.id
    assert list(client.meters.list(archived=False))
    assert client.meters.retrieve(meter.id).aggregation.type in ("count", "sum", "max", "last")
    client.meters.archive(meter.id)
    client.meters.unarchive(meter.id)


def test_missing_bearer_token_is_refused(prism_url: str) -> None:
    with httpx2.Client() as http:
        response = http.post(f"{prism_url}/events/ingest", json={"events": []})
    assert response.status_code == 401


def test_wrong_auth_maps_to_authentication_error(prism_url: str) -> None:
    def drop_auth(request: httpx2.Request) -> None:
        del request.headers["authorization"]

    http = httpx2.Client(event_hooks={"request": [drop_auth]})
    with (
        DodoClient("k" * 16, base_url=prism_url, max_retries=0, http_client=http) as c,
        pytest.raises(AuthenticationError),
    ):
        c.events.retrieve("evt_1")
    http.close()


@pytest.mark.anyio
async def test_async_client_against_the_contract(prism_url: str) -> None:
    async with AsyncDodoClient("test_contract_key", base_url=prism_url, max_retries=0) as c:
        await c.events.ingest([EventInput("evt_async", "cus_1", "api.call", metadata={"n": 1})])
        assert [e async for e in c.events.list(limit=1)]
        await c.events.retrieve("evt_async")
        assert [m async for m in c.meters.list(limit=1)]
