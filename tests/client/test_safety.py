"""Retry safety of non-idempotent calls, key redaction in errors, odd answers, bad text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import httpx2
import pytest
import respx

from dodo_ingest import (
    APIConnectionError,
    AsyncDodoClient,
    BadRequestError,
    DodoClient,
    EventInput,
    EventValidationError,
    MeterAggregation,
    RateLimitError,
)
from dodo_ingest.devserver import DevServer
from tests.client.conftest import BASE

KEY = "sk_test_SECRET_0123456789abcdef"
LEDGER = "/credit-entitlements/ce_1/balances/cus_1/ledger-entries"
ENTRY = {
    "id": "le_1",
    "customer_id": "cus_1",
    "credit_entitlement_id": "ce_1",
    "entry_type": "credit",
    "amount": "100",
}


@pytest.fixture
def client() -> Iterator[DodoClient]:
    with DodoClient(KEY, base_url=BASE) as c:
        c._sleep = lambda _delay: None
        yield c


def test_a_ledger_entry_is_not_resent_after_a_lost_answer(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post(LEDGER).mock(side_effect=httpx2.ReadTimeout("answer lost"))
    with pytest.raises(APIConnectionError) as info:
        client.credits.create_ledger_entry("ce_1", "cus_1", amount="100")
    assert info.value.request_sent is True
    assert route.call_count == 1


def test_a_ledger_entry_is_not_resent_after_a_5xx(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post(LEDGER).respond(503)
    with pytest.raises(Exception, match="503"):
        client.credits.create_ledger_entry("ce_1", "cus_1", amount="100")
    assert route.call_count == 1


def test_non_idempotent_calls_are_retried_when_the_server_cannot_have_acted(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post(LEDGER).mock(
        side_effect=[
            httpx2.ConnectError("refused"),
            httpx2.Response(429),
            httpx2.Response(201, json=ENTRY),
        ]
    )
    entry = client.credits.create_ledger_entry("ce_1", "cus_1", amount="100")
    assert entry.amount == Decimal("100")
    assert route.call_count == 3


def test_a_meter_is_created_once_even_when_the_answer_is_lost(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post("/meters").mock(side_effect=httpx2.RemoteProtocolError("reset"))
    with pytest.raises(APIConnectionError):
        client.meters.create(
            name="m", event_name="e", measurement_unit="u", aggregation=MeterAggregation("count")
        )
    assert route.call_count == 1


def test_ingest_is_still_retried_after_a_lost_answer(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post("/events/ingest").mock(
        side_effect=[httpx2.ReadTimeout("lost"), httpx2.Response(200, json={"ingested_count": 1})]
    )
    assert client.events.ingest([EventInput("e", "c", "n")]).ingested_count == 1
    assert route.call_count == 2


def test_a_key_echoed_by_the_server_is_redacted(client: DodoClient, api: respx.MockRouter) -> None:
    api.post("/events/ingest").respond(
        400, json={"message": f"bad header: Bearer {KEY}", "echo": {"authorization": KEY}}
    )
    with pytest.raises(BadRequestError) as info:
        client.events.ingest([EventInput("e", "c", "n")])
    error = info.value
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert KEY not in error.message
    assert KEY not in json.dumps(error.body)
    assert "***" in error.message


def test_a_bad_amount_is_a_value_error(client: DodoClient) -> None:
    with pytest.raises(ValueError, match="positive decimal"):
        client.credits.create_ledger_entry("ce_1", "cus_1", amount="ten")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"customer_id": "cus_\udcff"}, "customer_id"),
        ({"metadata": {"key": "file_\udcff.txt"}}, "metadata.key"),
        ({"metadata": {"k\udcff": 1}}, "metadata"),
    ],
)
def test_text_utf8_cannot_encode_is_refused(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"event_id": "e", "customer_id": "c", "event_name": "n"}
    with pytest.raises(EventValidationError, match="surrogate") as info:
        EventInput(**{**base, **kwargs})  # type: ignore[arg-type]
    assert info.value.field == field
    assert EventInput("e", "c", "n", metadata={"city": "Zürich 東京"}).metadata


@pytest.mark.anyio
async def test_async_with_options_shares_the_pool() -> None:
    with respx.mock(base_url=BASE) as api:
        route = api.get("/events/e1").respond(429)
        async with AsyncDodoClient(KEY, base_url=BASE) as client:
            once = client.with_options(max_retries=0)
            assert once._http is client._http
            with pytest.raises(RateLimitError):
                await once.events.retrieve("e1")
            assert route.call_count == 1
            await once.aclose()
            assert not client._http.is_closed


def test_a_lost_ledger_answer_does_not_credit_twice_on_a_real_server() -> None:
    class LoseFirstAnswer(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx2.HTTPTransport()
            self.lost = False

        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            response = self.inner.handle_request(request)
            if request.url.path.endswith("/ledger-entries") and not self.lost:
                response.read()
                response.close()
                self.lost = True
                raise httpx2.ReadTimeout("lost answer", request=request)
            return response

    with DevServer() as server, DodoClient(KEY, base_url=server.base_url) as admin:
        entitlement = admin.credits.create_entitlement(name="c", unit="credits")
        lossy = DodoClient(
            KEY, base_url=server.base_url, http_client=httpx2.Client(transport=LoseFirstAnswer())
        )
        with pytest.raises(APIConnectionError):
            lossy.credits.create_ledger_entry(entitlement.id, "cus_1", amount="100")
        assert admin.credits.balance(entitlement.id, "cus_1").balance == Decimal("100")
