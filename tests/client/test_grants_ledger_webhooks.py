"""Grants, the ledger and webhook endpoints through the typed client, against a real dev
server over HTTP (and respx where the server cannot show a shape: cursor pages, bad input)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx2
import pytest
import respx

from dodo_ingest import (
    AsyncDodoClient,
    DodoClient,
    EventInput,
    InternalServerError,
    MeterAggregation,
    NotFoundError,
    UnexpectedResponseError,
)
from dodo_ingest.client import CreditGrant, CreditLedgerEntry, WebhookEndpoint
from dodo_ingest.client.webhooks import CreditAddedEvent, Webhook, WebhookVerificationError
from dodo_ingest.devserver import DevServer

from .conftest import BASE


@pytest.fixture
def server() -> Iterator[DevServer]:
    with DevServer() as running:
        yield running


@pytest.fixture
def client(server: DevServer) -> Iterator[DodoClient]:
    with DodoClient(api_key="sk-test", base_url=server.base_url) as opened:
        yield opened


def test_grants_show_expiry_fifo_draws_and_status(server: DevServer, client: DodoClient) -> None:
    ent = client.credits.create_entitlement(name="Characters", unit="characters", precision=0)
    meter = client.meters.create(
        name="Characters",
        event_name="tts",
        measurement_unit="characters",
        aggregation=MeterAggregation("sum", "characters"),
    )
    server.link_meter_to_credits(meter.id, ent.id, "1")
    soon = server.clock.now() + timedelta(days=10)
    server_http = httpx2.post(
        f"{server.base_url}/credit-entitlements/{ent.id}/balances/cus_1/ledger-entries",
        headers={"Authorization": "Bearer sk-test"},
        json={"amount": "100", "entry_type": "credit", "expires_at": soon.isoformat()},
    )
    assert server_http.status_code == 201
    client.credits.create_ledger_entry(ent.id, "cus_1", amount=50, reason="bonus")
    client.events.ingest(
        [EventInput("evt_1", "cus_1", "tts", server.clock.now(), {"characters": 30})]
    )

    grants = list(client.credits.grants(ent.id, "cus_1"))
    assert [type(grant) for grant in grants] == [CreditGrant, CreditGrant]
    first, second = grants  # oldest first: usage drew on the first
    assert (first.initial_amount, first.remaining_amount) == (Decimal(100), Decimal(70))
    assert first.expires_at is not None
    assert abs(first.expires_at - soon) < timedelta(seconds=1)
    assert (second.remaining_amount, second.expires_at, second.status) == (
        Decimal(50),
        None,
        "active",
    )
    assert first.source_type == "api" and first.customer_id == "cus_1"

    server.clock.advance(days=11)
    expired = list(client.credits.grants(ent.id, "cus_1", status="expired"))
    assert [(g.id, g.status, g.remaining_amount) for g in expired] == [
        (first.id, "expired", Decimal(70))
    ]
    assert [g.id for g in client.credits.grants(ent.id, "cus_1", status="active")] == [second.id]

    ledger = list(client.credits.ledger(ent.id, "cus_1"))  # newest first
    assert [entry.transaction_type for entry in ledger] == [
        "credit_expired",
        "credit_deducted",
        "credit_added",
        "credit_added",
    ]
    assert all(isinstance(entry, CreditLedgerEntry) for entry in ledger)
    assert [entry.entry_type for entry in ledger] == ["debit", "debit", "credit", "credit"]
    assert ledger[0].amount == Decimal(70) and ledger[0].grant_id == first.id
    assert ledger[1].reference_id == meter.id
    assert ledger[2].description == "bonus"
    assert ledger[0].balance_after == Decimal(50)

    only = list(client.credits.ledger(ent.id, "cus_1", transaction_type="credit_added"))
    assert len(only) == 2
    later = list(
        client.credits.ledger(ent.id, "cus_1", start=server.clock.now() - timedelta(days=2))
    )
    assert [entry.transaction_type for entry in later] == ["credit_expired"]
    assert len(list(client.credits.ledger(ent.id, "cus_1", limit=3, page_size=1))) == 3


def test_grants_of_a_customer_without_a_balance_are_not_found(client: DodoClient) -> None:
    ent = client.credits.create_entitlement(name="Credits", unit="credits")
    with pytest.raises(NotFoundError):
        list(client.credits.grants(ent.id, "cus_nobody"))


def test_bad_filters_fail_before_sending(client: DodoClient) -> None:
    with pytest.raises(ValueError, match="status must be one of active, expired, depleted"):
        client.credits.grants("cent_1", "cus_1", status="gone")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="transaction_type must be one of credit_added"):
        client.credits.ledger("cent_1", "cus_1", transaction_type="bonus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="url must be an http or https URL"):
        client.webhooks.create("ftp://example.com/hooks")
    with pytest.raises(ValueError, match="filter_types must be a list"):
        client.webhooks.create("https://example.com/hooks", filter_types="credit.added")
    with pytest.raises(ValueError, match="rate_limit must be an int >= 0"):
        client.webhooks.update("wh_1", rate_limit=-1)
    with pytest.raises(ValueError, match="page_size must be an int from 1 to 100"):
        client.webhooks.list(page_size=101)


def test_webhook_endpoints_crud(client: DodoClient) -> None:
    endpoint = client.webhooks.create(
        "https://hooks.example.com/dodo",
        description="billing alerts",
        filter_types=["credit.added", "credit.balance_low"],
        metadata={"team": "billing"},
    )
    assert isinstance(endpoint, WebhookEndpoint)
    assert endpoint.filter_types == ("credit.added", "credit.balance_low")
    assert (endpoint.description, endpoint.metadata, endpoint.disabled) == (
        "billing alerts",
        {"team": "billing"},
        False,
    )
    assert client.webhooks.retrieve(endpoint.id) == endpoint
    secret = client.webhooks.secret(endpoint.id)
    assert secret.startswith("whsec_")

    changed = client.webhooks.update(endpoint.id, disabled=True, filter_types=["credit.added"])
    assert (changed.disabled, changed.filter_types, changed.description) == (
        True,
        ("credit.added",),
        "billing alerts",  # not given: kept
    )
    others = [client.webhooks.create(f"https://hooks.example.com/{n}") for n in range(4)]
    listed = list(client.webhooks.list(page_size=2))
    assert [e.id for e in listed] == [endpoint.id, *(e.id for e in others)]
    assert len(list(client.webhooks.list(page_size=2, limit=3))) == 3

    for other in others:
        client.webhooks.delete(other.id)
    with pytest.raises(NotFoundError):
        client.webhooks.retrieve(others[0].id)
    with pytest.raises(NotFoundError):
        client.webhooks.delete(others[0].id)
    assert [e.id for e in client.webhooks.list()] == [endpoint.id]


def test_a_registered_endpoint_receives_deliveries_the_verifier_accepts(
    server: DevServer, client: DodoClient
) -> None:
    """The client registers a loopback endpoint and reads its secret; the deliveries the
    server sends there verify with ``Webhook(secret)``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    bodies: list[tuple[bytes, dict[str, str]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            bodies.append((self.rfile.read(length), dict(self.headers.items())))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = client.webhooks.create(
            f"http://127.0.0.1:{receiver.server_address[1]}/hooks", filter_types=["credit.added"]
        )
        ent = client.credits.create_entitlement(name="Credits", unit="credits")
        client.credits.create_ledger_entry(ent.id, "cus_1", amount="12.50")
        deadline = time.monotonic() + 10
        while not bodies and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert len(bodies) == 1, bodies
    body, headers = bodies[0]
    event = Webhook(client.webhooks.secret(endpoint.id)).unwrap(body, headers)
    assert isinstance(event, CreditAddedEvent)
    assert (event.data.customer_id, event.data.amount) == ("cus_1", Decimal("12.50"))
    with pytest.raises(WebhookVerificationError, match="signature"):
        Webhook("whsec_" + "QUJD" * 8).unwrap(body, headers)


def test_webhook_list_follows_the_iterator_until_done(api: respx.MockRouter) -> None:
    def endpoint(n: int) -> dict[str, object]:
        return {
            "id": f"wh_{n}",
            "url": f"https://x.test/{n}",
            "description": "",
            "metadata": {},
            "created_at": "2026-12-01T00:00:00Z",
            "updated_at": "2026-12-01T00:00:00Z",
        }

    pages = {
        None: {"data": [endpoint(1), endpoint(2)], "done": False, "iterator": "wh_2"},
        "wh_2": {"data": [endpoint(3)], "done": True, "iterator": None},
    }
    seen: list[dict[str, str]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        params = dict(request.url.params)
        seen.append(params)
        return httpx2.Response(200, json=pages[params.get("iterator")])

    api.get("/webhooks").mock(side_effect=answer)
    with DodoClient(api_key="sk-test", base_url=BASE) as client:
        assert [e.id for e in client.webhooks.list(page_size=2)] == ["wh_1", "wh_2", "wh_3"]
    assert seen == [{"limit": "2"}, {"limit": "2", "iterator": "wh_2"}]


def test_webhook_list_stops_when_the_iterator_does_not_move(api: respx.MockRouter) -> None:
    page = {
        "data": [
            {"id": "wh_1", "url": "https://x.test/1", "description": "", "metadata": {}},
        ],
        "done": False,
        "iterator": "wh_1",
    }
    route = api.get("/webhooks").respond(200, json=page)
    with DodoClient(api_key="sk-test", base_url=BASE) as client:
        assert [e.id for e in client.webhooks.list()] == ["wh_1", "wh_1"]
    assert route.call_count == 2  # the second page pointed at itself: no endless walk


def test_a_secret_answer_without_a_secret_is_refused(api: respx.MockRouter) -> None:
    api.get("/webhooks/wh_1/secret").respond(200, json={})
    with (
        DodoClient(api_key="sk-test", base_url=BASE) as client,
        pytest.raises(UnexpectedResponseError, match="no secret"),
    ):
        client.webhooks.secret("wh_1")


def test_webhook_create_is_not_resent_after_a_lost_answer(api: respx.MockRouter) -> None:
    route = api.post("/webhooks").respond(503)
    with DodoClient(api_key="sk-test", base_url=BASE, max_retries=2) as client:
        client._sleep = lambda seconds: None
        with pytest.raises(InternalServerError):
            client.webhooks.create("https://x.test/hooks")
    assert route.call_count == 1  # creating twice would register two endpoints
    body = json.loads(route.calls[0].request.content)
    assert body == {"url": "https://x.test/hooks"}


@pytest.mark.anyio
async def test_async_client_mirrors_grants_ledger_and_webhooks(server: DevServer) -> None:
    async with AsyncDodoClient(api_key="sk-test", base_url=server.base_url) as client:
        ent = await client.credits.create_entitlement(name="Credits", unit="credits")
        await client.credits.create_ledger_entry(ent.id, "cus_1", amount=5)
        await client.credits.create_ledger_entry(ent.id, "cus_1", amount=2, entry_type="debit")
        grants = [grant async for grant in client.credits.grants(ent.id, "cus_1")]
        assert [(g.initial_amount, g.remaining_amount) for g in grants] == [
            (Decimal(5), Decimal(3))
        ]
        kinds = [e.transaction_type async for e in client.credits.ledger(ent.id, "cus_1")]
        assert kinds == ["manual_adjustment", "credit_added"]

        endpoint = await client.webhooks.create("https://x.test/a", rate_limit=5)
        assert (await client.webhooks.retrieve(endpoint.id)).rate_limit == 5
        assert (await client.webhooks.secret(endpoint.id)).startswith("whsec_")
        updated = await client.webhooks.update(endpoint.id, url="https://x.test/b")
        assert updated.url == "https://x.test/b"
        assert [e.url async for e in client.webhooks.list()] == ["https://x.test/b"]
        await client.webhooks.delete(endpoint.id)
        assert [e async for e in client.webhooks.list()] == []
        now = datetime.now(UTC)
        assert [
            e async for e in client.credits.ledger(ent.id, "cus_1", start=now + timedelta(1))
        ] == []


def test_entitlement_rollover_and_overage_settings_round_trip(client: DodoClient) -> None:
    created = client.credits.create_entitlement(
        name="Characters",
        unit="characters",
        precision=0,
        rollover_enabled=True,
        rollover_percentage=50,
        max_rollover_count=1,
        rollover_timeframe_count=2,
        rollover_timeframe_interval="Week",
        overage_enabled=True,
        overage_behavior="invoice_at_billing",
        expires_after_days=30,
    )
    read = client.credits.entitlement(created.id)
    assert read == created
    assert (
        read.rollover_percentage,
        read.max_rollover_count,
        read.rollover_timeframe_count,
        read.rollover_timeframe_interval,
        read.overage_behavior,
        read.expires_after_days,
    ) == (50, 1, 2, "Week", "invoice_at_billing", 30)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("rollover_percentage", 101, "rollover_percentage must be an int from 0 to 100"),
        ("max_rollover_count", -1, "max_rollover_count must be an int from 0"),
        ("expires_after_days", True, "expires_after_days must be an int"),
        ("rollover_timeframe_interval", "Fortnight", "must be one of Day, Week, Month, Year"),
        ("overage_behavior", "ignore", "overage_behavior must be one of forgive_at_reset"),
    ],
)
def test_bad_entitlement_settings_fail_before_sending(
    setting: str, value: object, message: str, api: respx.MockRouter
) -> None:
    route = api.post("/credit-entitlements").respond(201, json={})
    with (
        DodoClient(api_key="sk-test", base_url=BASE) as client,
        pytest.raises(ValueError, match=message),
    ):
        client.credits.create_entitlement(name="C", unit="c", **{setting: value})  # type: ignore[arg-type]
    assert not route.called


def test_usage_history_reads_exact_units_per_period(api: respx.MockRouter) -> None:
    period = {
        "start_date": "2026-11-01T00:00:00Z",
        "end_date": "2026-12-01T00:00:00Z",
        "meters": [
            {
                "id": "mtr_1",
                "name": "Tokens",
                "currency": "USD",
                "free_threshold": 1000,
                "price_per_unit": "0.00001",
                "consumed_units": "123456.5",
                "chargeable_units": "122456.5",
                "total_price": 122,
            }
        ],
    }
    route = api.get("/subscriptions/sub_1/usage-history").respond(200, json={"items": [period]})
    with DodoClient(api_key="sk-test", base_url=BASE) as client:
        (read,) = client.subscriptions.usage_history("sub_1", meter_id="mtr_1")
    assert read.start_date == datetime(2026, 11, 1, tzinfo=UTC)
    (meter,) = read.meters
    assert (meter.consumed_units, meter.chargeable_units, meter.price_per_unit) == (
        Decimal("123456.5"),
        Decimal("122456.5"),
        Decimal("0.00001"),
    )
    assert (meter.free_threshold, meter.total_price, meter.currency) == (1000, 122, "USD")
    assert dict(route.calls[0].request.url.params)["meter_id"] == "mtr_1"
