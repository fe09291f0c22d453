from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
import pytest
import respx

from dodo_ingest import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncDodoClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DodoClient,
    EventInput,
    EventValidationError,
    FilterCondition,
    InternalServerError,
    MeterAggregation,
    MeterFilter,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from tests.client.conftest import BASE

KEY = "sk_test_0123456789abcdef"


def _event(i: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"evt_{i}",
        "business_id": "bus_1",
        "customer_id": "cus_1",
        "event_name": "api.call",
        "timestamp": "2026-11-25T08:00:00Z",
        "metadata": {"n": i},
    }


def _meter(meter_id: str = "mtr_1") -> dict[str, Any]:
    return {
        "id": meter_id,
        "business_id": "bus_1",
        "name": "Tokens",
        "event_name": "llm",
        "measurement_unit": "tokens",
        "aggregation": {"type": "sum", "key": "inputTokens"},
        "filter": None,
        "description": None,
        "created_at": "2026-11-25T08:00:00Z",
        "updated_at": "2026-11-25T08:00:00Z",
    }


@pytest.fixture
def client() -> Iterator[DodoClient]:
    sleeps: list[float] = []
    with DodoClient(KEY, base_url=BASE) as c:
        c._sleep = sleeps.append  # retries are instant; the waits are recorded
        c.sleeps = sleeps  # type: ignore[attr-defined]
        yield c


# --- configuration ---------------------------------------------------------------------


def test_missing_key_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DODO_PAYMENTS_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DODO_PAYMENTS_API_KEY"):
        DodoClient()


def test_settings_fall_back_to_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_API_KEY", KEY)
    monkeypatch.setenv("DODO_PAYMENTS_ENVIRONMENT", "live_mode")
    monkeypatch.delenv("DODO_PAYMENTS_BASE_URL", raising=False)
    with DodoClient() as c:
        assert c.base_url == "https://live.dodopayments.com"
        assert c.environment == "live_mode"
    monkeypatch.delenv("DODO_PAYMENTS_ENVIRONMENT")
    with DodoClient() as c:
        assert c.base_url == "https://test.dodopayments.com"
    monkeypatch.setenv("DODO_PAYMENTS_BASE_URL", "http://127.0.0.1:8787/")
    with DodoClient() as c:
        assert c.base_url == "http://127.0.0.1:8787"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"api_key": "  "}, "empty"),
        ({"api_key": "sk test"}, "header"),
        ({"api_key": KEY, "environment": "prod"}, "test_mode"),
        ({"api_key": KEY, "base_url": "ftp://x"}, "http"),
        ({"api_key": KEY, "max_retries": -1}, "max_retries"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ConfigurationError, ValueError), match=message) as info:
        DodoClient(**kwargs)
    assert KEY not in str(info.value)


def test_repr_hides_the_key() -> None:
    with DodoClient(KEY, base_url=BASE) as c:
        assert KEY not in repr(c)
        assert KEY not in repr(c._config)
        assert KEY[:6] not in repr(c)


def test_requests_carry_auth_user_agent_and_json(client: DodoClient, api: respx.MockRouter) -> None:
    route = api.post("/events/ingest").respond(200, json={"ingested_count": 1})
    client.events.ingest([EventInput("e1", "c1", "n")])
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"].startswith("dodo-ingest/")
    assert request.headers["content-type"] == "application/json"


# --- events ----------------------------------------------------------------------------


def test_ingest_sends_validated_events(client: DodoClient, api: respx.MockRouter) -> None:
    route = api.post("/events/ingest").respond(200, json={"ingested_count": 2})
    ts = datetime(2026, 11, 25, 8, tzinfo=UTC)
    result = client.events.ingest(
        [
            EventInput("e1", "c1", "llm", ts, {"inputTokens": 3}),
            {"event_id": "e2", "customer_id": "c1", "event_name": "llm"},
        ]
    )
    assert result.ingested_count == 2
    assert json.loads(route.calls.last.request.content) == {
        "events": [
            {
                "event_id": "e1",
                "customer_id": "c1",
                "event_name": "llm",
                "timestamp": "2026-11-25T08:00:00.000Z",
                "metadata": {"inputTokens": 3},
            },
            {"event_id": "e2", "customer_id": "c1", "event_name": "llm"},
        ]
    }


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([], "at least 1"),
        (
            [{"event_id": f"e{i}", "customer_id": "c", "event_name": "n"} for i in range(1001)],
            "at most 1000",
        ),
        (
            [{"event_id": "e", "customer_id": "c", "event_name": "n"}] * 2,
            "events[1].event_id: duplicate",
        ),
        (
            [{"event_id": "e", "customer_id": "c", "event_name": "n", "metadata": {"a": [1]}}],
            "events[0].metadata.a",
        ),
    ],
)
def test_invalid_batches_are_refused_before_sending(
    client: DodoClient, api: respx.MockRouter, events: list[dict[str, Any]], message: str
) -> None:
    route = api.post("/events/ingest").respond(200, json={"ingested_count": 0})
    with pytest.raises(EventValidationError) as info:
        client.events.ingest(events)
    assert message in str(info.value)
    assert not route.called


def test_list_walks_every_page_from_page_zero(client: DodoClient, api: respx.MockRouter) -> None:
    pages = {0: [_event(0), _event(1)], 1: [_event(2), _event(3)], 2: [_event(4)]}
    route = api.get("/events").mock(
        side_effect=lambda req: httpx2.Response(
            200, json={"items": pages[int(req.url.params["page_number"])]}
        )
    )
    events = list(client.events.list(customer_id="cus_1", event_name="api.call", page_size=2))
    assert [e.event_id for e in events] == [f"evt_{i}" for i in range(5)]
    sent = [dict(call.request.url.params) for call in route.calls]
    assert [p["page_number"] for p in sent] == ["0", "1", "2"]
    assert all(p["customer_id"] == "cus_1" and p["page_size"] == "2" for p in sent)


def test_list_stops_on_an_empty_page_and_at_the_limit(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.get("/events").mock(
        side_effect=lambda req: httpx2.Response(
            200,
            json={"items": [_event(0), _event(1)] if req.url.params["page_number"] == "0" else []},
        )
    )
    assert len(list(client.events.list(page_size=2))) == 2
    assert route.call_count == 2
    assert len(list(client.events.list(page_size=2, limit=1))) == 1
    assert route.call_count == 3


def test_list_sends_time_filters_as_rfc3339(client: DodoClient, api: respx.MockRouter) -> None:
    route = api.get("/events").respond(200, json={"items": []})
    start = datetime(2026, 11, 25, 7, tzinfo=UTC)
    list(client.events.list(meter_id="mtr_1", start=start, end="2026-11-25T09:00:00Z"))
    params = route.calls.last.request.url.params
    assert params["start"] == "2026-11-25T07:00:00.000Z"
    assert params["end"] == "2026-11-25T09:00:00Z"
    assert params["meter_id"] == "mtr_1"


def test_list_checks_page_size(client: DodoClient) -> None:
    with pytest.raises(ValueError, match="page_size"):
        client.events.list(page_size=101)


def test_retrieve_quotes_the_id(client: DodoClient, api: respx.MockRouter) -> None:
    route = api.get("/events/evt%2F1").respond(200, json=_event(1))
    assert client.events.retrieve("evt/1").event_id == "evt_1"
    assert route.called


# --- meters ----------------------------------------------------------------------------


def test_meter_lifecycle(client: DodoClient, api: respx.MockRouter) -> None:
    create = api.post("/meters").respond(201, json=_meter())
    api.get("/meters/mtr_1").respond(200, json=_meter())
    archive = api.delete("/meters/mtr_1").respond(204)
    unarchive = api.post("/meters/mtr_1/unarchive").respond(200)
    listing = api.get("/meters").respond(200, json={"items": [_meter("a"), _meter("b")]})

    meter = client.meters.create(
        name="Tokens",
        event_name="llm",
        measurement_unit="tokens",
        aggregation=MeterAggregation("sum", "inputTokens"),
        filter=MeterFilter("and", (FilterCondition("model", "equals", "gpt-4o"),)),
    )
    assert meter.id == "mtr_1"
    assert json.loads(create.calls.last.request.content) == {
        "name": "Tokens",
        "event_name": "llm",
        "measurement_unit": "tokens",
        "aggregation": {"type": "sum", "key": "inputTokens"},
        "filter": {
            "conjunction": "and",
            "clauses": [{"key": "model", "operator": "equals", "value": "gpt-4o"}],
        },
    }
    assert client.meters.retrieve("mtr_1").aggregation.key == "inputTokens"
    assert [m.id for m in client.meters.list(archived=True)] == ["a", "b"]
    assert listing.calls.last.request.url.params["archived"] == "true"
    client.meters.archive("mtr_1")
    client.meters.unarchive("mtr_1")
    assert archive.called and unarchive.called


# --- credits ---------------------------------------------------------------------------


def test_credit_balances_are_decimals(client: DodoClient, api: respx.MockRouter) -> None:
    balance = {
        "id": "bal_1",
        "customer_id": "cus_1",
        "credit_entitlement_id": "ce_1",
        "balance": "12.345678901234567890",
        "overage": "0.10",
        "created_at": "2026-11-25T08:00:00Z",
        "updated_at": "2026-11-25T08:00:00Z",
    }
    api.get("/credit-entitlements/ce_1/balances/cus_1").respond(200, json=balance)
    api.get("/credit-entitlements/ce_1/balances").respond(200, json={"items": [balance]})
    got = client.credits.balance("ce_1", "cus_1")
    assert got.balance == Decimal("12.345678901234567890")
    assert got.overage == Decimal("0.10")
    assert [b.customer_id for b in client.credits.balances("ce_1")] == ["cus_1"]


def test_entitlements_and_ledger_entries(client: DodoClient, api: respx.MockRouter) -> None:
    create = api.post("/credit-entitlements").respond(
        201,
        json={
            "id": "ce_1",
            "name": "Credits",
            "unit": "credits",
            "precision": 2,
            "overage_enabled": False,
            "rollover_enabled": False,
        },
    )
    grant = api.post("/credit-entitlements/ce_1/balances/cus_1/ledger-entries").respond(
        201,
        json={
            "id": "le_1",
            "customer_id": "cus_1",
            "credit_entitlement_id": "ce_1",
            "entry_type": "credit",
            "amount": "100.00",
            "balance_after": "100.00",
            "is_credit": True,
            "metadata": {},
            "created_at": "2026-11-25T08:00:00Z",
        },
    )
    entitlement = client.credits.create_entitlement(name="Credits", unit="credits")
    assert entitlement.precision == 2
    assert json.loads(create.calls.last.request.content)["unit"] == "credits"
    entry = client.credits.create_ledger_entry("ce_1", "cus_1", amount=Decimal("100.00"))
    assert entry.balance_after == Decimal("100.00")
    assert json.loads(grant.calls.last.request.content) == {
        "amount": "100.00",
        "entry_type": "credit",
    }
    with pytest.raises(ValueError, match="positive"):
        client.credits.create_ledger_entry("ce_1", "cus_1", amount="-1")


# --- errors and retries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (422, UnprocessableEntityError),
        (418, APIStatusError),
    ],
)
def test_non_retryable_statuses_raise_at_once(
    client: DodoClient, api: respx.MockRouter, status: int, error: type[APIStatusError]
) -> None:
    route = api.get("/events/e1").respond(
        status, json={"code": "x", "message": "why it failed"}, headers={"x-request-id": "req_9"}
    )
    with pytest.raises(error) as info:
        client.events.retrieve("e1")
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.message == "why it failed"
    assert info.value.request_id == "req_9"
    assert "req_9" in str(info.value)
    assert route.call_count == 1
    assert KEY not in str(info.value) and KEY not in repr(info.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, APIStatusError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, InternalServerError),
        (503, InternalServerError),
    ],
)
def test_transient_statuses_are_retried_then_raised(
    client: DodoClient, api: respx.MockRouter, status: int, error: type[APIStatusError]
) -> None:
    route = api.get("/events/e1").respond(status)
    with pytest.raises(error):
        client.events.retrieve("e1")
    assert route.call_count == 3  # 1 + max_retries (2)
    sleeps = client.sleeps  # type: ignore[attr-defined]
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter under the exponential cap


def test_retry_succeeds_with_the_same_body(client: DodoClient, api: respx.MockRouter) -> None:
    route = api.post("/events/ingest").mock(
        side_effect=[
            httpx2.Response(503),
            httpx2.ConnectError("refused"),
            httpx2.Response(200, json={"ingested_count": 1}),
        ]
    )
    assert client.events.ingest([EventInput("e1", "c", "n")]).ingested_count == 1
    bodies = {call.request.content for call in route.calls}
    assert route.call_count == 3 and len(bodies) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
    ],
)
def test_retry_after_is_honoured(
    client: DodoClient, api: respx.MockRouter, headers: dict[str, str], expected: float
) -> None:
    route = api.get("/events/e1").mock(
        side_effect=[httpx2.Response(429, headers=headers), httpx2.Response(200, json=_event(1))]
    )
    client.events.retrieve("e1")
    assert route.call_count == 2
    assert client.sleeps == [expected]  # type: ignore[attr-defined]


def test_retry_after_as_http_date(client: DodoClient, api: respx.MockRouter) -> None:
    from email.utils import format_datetime

    when = datetime.now(UTC).replace(microsecond=0)
    when = when.fromtimestamp(when.timestamp() + 5, UTC)
    api.get("/events/e1").mock(
        side_effect=[
            httpx2.Response(429, headers={"retry-after": format_datetime(when, usegmt=True)}),
            httpx2.Response(200, json=_event(1)),
        ]
    )
    client.events.retrieve("e1")
    (slept,) = client.sleeps  # type: ignore[attr-defined]
    assert 3.0 < slept <= 5.0


@pytest.mark.parametrize("asked", ["3600", "1e999", "inf"])
def test_a_retry_after_beyond_the_cap_waits_the_cap(
    client: DodoClient, api: respx.MockRouter, asked: str
) -> None:
    api.get("/events/e1").mock(
        side_effect=[
            httpx2.Response(429, headers={"retry-after": asked}),
            httpx2.Response(200, json=_event(1)),
        ]
    )
    client.events.retrieve("e1")
    assert client.sleeps == [60.0]  # type: ignore[attr-defined]


def test_the_client_and_the_pipeline_share_one_retry_policy() -> None:
    from dodo_ingest.client._errors import RateLimitError
    from dodo_ingest.client._retry import DEFAULT_RETRY_POLICY, RetryPolicy
    from dodo_ingest.delivery._batch_sender import BatchSender
    from dodo_ingest.delivery._queues import MemoryQueue
    from dodo_ingest.delivery._settings import Settings

    sender = BatchSender(
        Settings(retry_initial_delay=0.5, retry_max_delay=8.0, max_retry_after=60.0),
        None,
        MemoryQueue(1, 1 << 20),
        lambda error, items: None,
        lambda seconds, wake: True,
        str,
    )
    assert sender.retry_policy == DEFAULT_RETRY_POLICY == RetryPolicy(0.5, 8.0, 60.0)
    limited = RateLimitError("slow down", status_code=429, retry_after=3600.0)
    assert DEFAULT_RETRY_POLICY.delay(0, limited) == 60.0
    assert DEFAULT_RETRY_POLICY.delay(10, None, jitter=lambda low, high: high) == 8.0


def test_rate_limit_error_carries_retry_after(api: respx.MockRouter) -> None:
    api.get("/events/e1").respond(429, headers={"retry-after": "2"})
    with DodoClient(KEY, base_url=BASE, max_retries=0) as c, pytest.raises(RateLimitError) as info:
        c.events.retrieve("e1")
    assert info.value.retry_after == 2.0


def test_server_can_veto_or_request_a_retry(client: DodoClient, api: respx.MockRouter) -> None:
    veto = api.get("/events/a").respond(500, headers={"x-should-retry": "false"})
    with pytest.raises(InternalServerError):
        client.events.retrieve("a")
    assert veto.call_count == 1
    ask = api.get("/events/b").respond(400, headers={"x-should-retry": "true"})
    with pytest.raises(BadRequestError):
        client.events.retrieve("b")
    assert ask.call_count == 3


def test_connection_errors_and_timeouts(client: DodoClient, api: respx.MockRouter) -> None:
    api.get("/events/a").mock(side_effect=httpx2.ConnectError("refused"))
    with pytest.raises(APIConnectionError, match="refused") as info:
        client.events.retrieve("a")
    assert not isinstance(info.value, APITimeoutError)
    timeout = api.get("/events/b").mock(side_effect=httpx2.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError):
        client.events.retrieve("b")
    assert timeout.call_count == 3


def test_with_options_shares_the_pool_and_changes_retries(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.get("/events/a").respond(503)
    once = client.with_options(max_retries=0)
    assert once._http is client._http
    with pytest.raises(InternalServerError):
        once.events.retrieve("a")
    assert route.call_count == 1
    once.close()
    assert not client._http.is_closed


def test_error_message_from_prism_violations_header(
    client: DodoClient, api: respx.MockRouter
) -> None:
    violations = json.dumps([{"message": "events must NOT have more than 1000 items"}])
    api.post("/events/ingest").respond(422, headers={"sl-violations": violations})
    with pytest.raises(UnprocessableEntityError, match="more than 1000 items"):
        client.events.ingest_json(b'{"events": []}')


def test_a_caller_supplied_http_client_is_used_and_not_closed() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json=_event(1))

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    with DodoClient(KEY, base_url=BASE, http_client=http) as c:
        c.events.retrieve("evt_1")
    assert len(seen) == 1 and not http.is_closed
    http.close()


def test_no_log_record_holds_the_key(
    client: DodoClient, api: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.get("/events/a").respond(500)
    with pytest.raises(InternalServerError):
        client.events.retrieve("a")
    assert all(KEY not in record.getMessage() for record in caplog.records)


# --- async -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_client_mirrors_the_sync_one(api: respx.MockRouter) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    api.post("/events/ingest").mock(
        side_effect=[httpx2.Response(503), httpx2.Response(200, json={"ingested_count": 1})]
    )
    api.get("/events").mock(
        side_effect=lambda req: httpx2.Response(
            200, json={"items": [_event(0)] if req.url.params["page_number"] == "0" else []}
        )
    )
    api.get("/events/evt_0").respond(200, json=_event(0))
    api.post("/meters").respond(201, json=_meter())
    api.get("/meters").respond(200, json={"items": [_meter()]})
    api.delete("/meters/mtr_1").respond(204)
    api.post("/meters/mtr_1/unarchive").respond(200)
    api.get("/credit-entitlements/ce/balances/c").respond(
        200,
        json={"customer_id": "c", "credit_entitlement_id": "ce", "balance": "1", "overage": "0"},
    )
    async with AsyncDodoClient(KEY, base_url=BASE) as c:
        c._sleep = record
        assert (await c.events.ingest([EventInput("e", "c", "n")])).ingested_count == 1
        assert sleeps and 0 <= sleeps[0] <= 0.5
        assert [e.event_id async for e in c.events.list(page_size=1)] == ["evt_0"]
        assert (await c.events.retrieve("evt_0")).metadata == {"n": 0}
        meter = await c.meters.create(
            name="T", event_name="llm", measurement_unit="t", aggregation=MeterAggregation("count")
        )
        assert [m.id async for m in c.meters.list()] == [meter.id]
        await c.meters.archive(meter.id)
        await c.meters.unarchive(meter.id)
        assert (await c.credits.balance("ce", "c")).balance == Decimal("1")
