"""Credit entitlements, ledger entries, meter links and balances (fiat and custom-unit credits)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx2
import pytest

from dodo_ingest import (
    BadRequestError,
    ConflictError,
    DodoClient,
    MeterAggregation,
    NotFoundError,
    UnprocessableEntityError,
)
from dodo_ingest.devserver import BUSINESS_ID, DevServer
from tests.devserver._helpers import events, unique


def ingest(client: DodoClient, batch: list[dict[str, Any]]) -> None:
    client.events.ingest(batch)


def token_meter(client: DodoClient, event_name: str) -> str:
    return client.meters.create(
        name="Tokens",
        event_name=event_name,
        measurement_unit="tokens",
        aggregation=MeterAggregation("sum", "totalTokens"),
    ).id


def test_prepaid_fiat_credits_drain_with_usage_into_overage(
    client: DodoClient, shared_server: DevServer
) -> None:
    customer, name = unique("cus"), unique("llm")
    usd = client.credits.create_entitlement(
        name="Prepaid USD",
        unit="USD",
        currency="USD",
        precision=2,
        overage_enabled=True,
        overage_behavior="carry_deficit_auto_repay",
    )
    assert (usd.currency, usd.precision, usd.business_id) == ("USD", 2, BUSINESS_ID)
    shared_server.link_meter_to_credits(token_meter(client, name), usd.id, "1000")
    grant = client.credits.create_ledger_entry(usd.id, customer, amount="10.00", reason="top-up")
    assert (grant.balance_before, grant.balance_after) == (Decimal("0.00"), Decimal("10.00"))

    ingest(client, events(5, customer_id=customer, event_name=name, metadata={"totalTokens": 500}))
    balance = client.credits.balance(usd.id, customer)
    assert (balance.balance, balance.overage) == (Decimal("7.50"), Decimal("0.00"))

    ingest(client, events(1, customer_id=customer, event_name=name, metadata={"totalTokens": 9000}))
    balance = client.credits.balance(usd.id, customer)
    assert (balance.balance, balance.overage) == (Decimal("0.00"), Decimal("1.50"))

    topped = client.credits.create_ledger_entry(usd.id, customer, amount="5")
    assert (topped.overage_before, topped.overage_after) == (Decimal("1.50"), Decimal("0.00"))
    assert topped.balance_after == Decimal("3.50")


def test_custom_unit_credits_with_a_count_meter(client: DodoClient, http: httpx2.Client) -> None:
    customer, name = unique("cus"), unique("api.call")
    calls = client.credits.create_entitlement(name="API calls", unit="calls", precision=0)
    meter_id = client.meters.create(
        name="Calls",
        event_name=name,
        measurement_unit="calls",
        aggregation=MeterAggregation("count"),
    ).id
    link = http.post(
        "/_dev/credit-links",
        json={
            "meter_id": meter_id,
            "credit_entitlement_id": calls.id,
            "meter_units_per_credit": "10",
        },
    )
    assert link.status_code == 201
    assert link.json()["meter_units_per_credit"] == "10"
    client.credits.create_ledger_entry(calls.id, customer, amount=100)
    ingest(client, events(25, customer_id=customer, event_name=name))
    ingest(client, events(7, customer_id=unique("cus"), event_name=name))  # someone else
    balance = client.credits.balance(calls.id, customer)
    assert (balance.balance, balance.overage) == (Decimal("98"), Decimal("0"))  # 97.5 rounded up
    raw = http.get(f"/credit-entitlements/{calls.id}/balances/{customer}").json()
    assert (raw["balance"], raw["overage"]) == ("98", "0")


def test_balances_round_half_up_to_the_precision(
    client: DodoClient, shared_server: DevServer
) -> None:
    customer, name = unique("cus"), unique("llm")
    credits = client.credits.create_entitlement(name="Tenths", unit="credits", precision=1)
    shared_server.link_meter_to_credits(token_meter(client, name), credits.id, 20)
    client.credits.create_ledger_entry(credits.id, customer, amount="1")
    ingest(client, events(1, customer_id=customer, event_name=name, metadata={"totalTokens": 7}))
    assert client.credits.balance(credits.id, customer).balance == Decimal("0.7")  # 0.65


def test_two_linked_meters_both_draw_on_the_balance(
    client: DodoClient, shared_server: DevServer
) -> None:
    customer, chat, embed = unique("cus"), unique("chat"), unique("embed")
    credits = client.credits.create_entitlement(name="Credits", unit="credits", precision=2)
    shared_server.link_meter_to_credits(token_meter(client, chat), credits.id, Decimal(100))
    shared_server.link_meter_to_credits(token_meter(client, embed), credits.id, Decimal(1000))
    client.credits.create_ledger_entry(credits.id, customer, amount="50")
    ingest(client, events(2, customer_id=customer, event_name=chat, metadata={"totalTokens": 250}))
    ingest(
        client, events(1, customer_id=customer, event_name=embed, metadata={"totalTokens": 3000})
    )
    assert client.credits.balance(credits.id, customer).balance == Decimal("42.00")


def test_debits_draw_on_the_balance_and_cannot_exceed_it(client: DodoClient) -> None:
    customer = unique("cus")
    credits = client.credits.create_entitlement(name="Credits", unit="credits", precision=2)
    client.credits.create_ledger_entry(credits.id, customer, amount="20")
    debit = client.credits.create_ledger_entry(
        credits.id, customer, amount="7.25", entry_type="debit"
    )
    assert (debit.entry_type, debit.balance_after) == ("debit", Decimal("12.75"))
    with pytest.raises(BadRequestError) as caught:
        client.credits.create_ledger_entry(credits.id, customer, amount="13", entry_type="debit")
    assert "12.75" in caught.value.message
    assert client.credits.balance(credits.id, customer).balance == Decimal("12.75")


def test_a_reused_idempotency_key_is_409(client: DodoClient) -> None:
    customer = unique("cus")
    credits = client.credits.create_entitlement(name="Credits", unit="credits", precision=0)
    client.credits.create_ledger_entry(credits.id, customer, amount=5, idempotency_key="grant-1")
    with pytest.raises(ConflictError):
        client.credits.create_ledger_entry(
            credits.id, customer, amount=5, idempotency_key="grant-1"
        )
    assert client.credits.balance(credits.id, customer).balance == Decimal(5)


def test_the_ledger_entry_has_the_sdk_fields(http: httpx2.Client) -> None:
    credits = http.post(
        "/credit-entitlements",
        json={
            "name": "C",
            "unit": "credits",
            "precision": 2,
            "overage_enabled": False,
            "rollover_enabled": False,
        },
    ).json()
    response = http.post(
        f"/credit-entitlements/{credits['id']}/balances/cus_x/ledger-entries",
        json={"amount": "3.5", "entry_type": "credit", "metadata": {"source": "test"}},
    )
    assert response.status_code == 201
    entry = response.json()
    assert entry["is_credit"] is True
    assert entry["grant_id"].startswith("cgr_")
    assert entry["metadata"] == {"source": "test"}
    assert (entry["amount"], entry["balance_before"], entry["balance_after"]) == (
        "3.5",
        "0.00",
        "3.50",
    )
    assert (entry["overage_before"], entry["overage_after"]) == ("0.00", "0.00")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"amount": "1.234", "entry_type": "credit"}, "decimal places"),
        ({"amount": "-1", "entry_type": "credit"}, "positive"),
        ({"amount": "1234567890", "entry_type": "credit"}, "integer digits"),
        ({"amount": "abc", "entry_type": "credit"}, "decimal"),
        ({"amount": "1", "entry_type": "refund"}, "entry_type"),
        ({"entry_type": "credit"}, "amount"),
    ],
)
def test_a_bad_ledger_entry_is_422(http: httpx2.Client, body: dict[str, Any], needle: str) -> None:
    credits = http.post(
        "/credit-entitlements",
        json={
            "name": "C",
            "unit": "credits",
            "precision": 2,
            "overage_enabled": False,
            "rollover_enabled": False,
        },
    ).json()
    response = http.post(
        f"/credit-entitlements/{credits['id']}/balances/c/ledger-entries", json=body
    )
    assert response.status_code == 422
    assert needle in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            {"unit": "c", "precision": 2, "overage_enabled": False, "rollover_enabled": False},
            "name",
        ),
        (
            {
                "name": "n",
                "unit": "c",
                "precision": 11,
                "overage_enabled": False,
                "rollover_enabled": False,
            },
            "precision",
        ),
        ({"name": "n", "unit": "c", "precision": 2, "rollover_enabled": False}, "overage_enabled"),
        (
            {
                "name": "n",
                "unit": "c",
                "precision": 2,
                "overage_enabled": False,
                "rollover_enabled": False,
                "overage_behavior": "x",
            },
            "overage_behavior",
        ),
        *(
            (
                {
                    "name": "n",
                    "unit": "c",
                    "precision": 2,
                    "overage_enabled": False,
                    "rollover_enabled": True,
                    **settings,
                },
                needle,
            )
            for settings, needle in (
                ({"rollover_percentage": 101}, "rollover_percentage"),
                ({"max_rollover_count": -1}, "max_rollover_count"),
                ({"expires_after_days": -1}, "expires_after_days"),
                (
                    {"rollover_timeframe_count": 1, "rollover_timeframe_interval": "Fortnight"},
                    "rollover_timeframe_interval",
                ),
                ({"rollover_timeframe_count": 1}, "go together"),
                ({"rollover_timeframe_interval": "Week"}, "go together"),
            )
        ),
    ],
)
def test_a_bad_entitlement_is_422(http: httpx2.Client, body: dict[str, Any], needle: str) -> None:
    response = http.post("/credit-entitlements", json=body)
    assert response.status_code == 422
    assert needle in response.json()["message"]


def test_entitlements_are_listed_and_retrieved(server: DevServer) -> None:
    with DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client:
        made = [
            client.credits.create_entitlement(
                name=f"E{i}", unit="credits", precision=i, overage_limit="100"
            )
            for i in range(3)
        ]
        response = httpx2.get(
            f"{server.base_url}/credit-entitlements/{made[1].id}",
            headers={"Authorization": "Bearer k"},
        )
        assert response.json()["overage_limit"] == 100
        listed = httpx2.get(
            f"{server.base_url}/credit-entitlements", headers={"Authorization": "Bearer k"}
        )
        assert [e["id"] for e in listed.json()["items"]] == [e.id for e in made]


def test_balances_list_every_customer_with_a_ledger(
    client: DodoClient, http: httpx2.Client
) -> None:
    credits = client.credits.create_entitlement(name="C", unit="credits", precision=0)
    customers = [unique("cus") for _ in range(3)]
    for amount, customer in enumerate(customers, start=1):
        client.credits.create_ledger_entry(credits.id, customer, amount=amount)
    balances = list(client.credits.balances(credits.id, page_size=2))
    assert [(b.customer_id, b.balance) for b in balances] == [
        (customer, Decimal(amount)) for amount, customer in enumerate(customers, start=1)
    ]
    assert all(b.credit_entitlement_id == credits.id for b in balances)
    one = http.get(
        f"/credit-entitlements/{credits.id}/balances", params={"customer_id": customers[1]}
    ).json()["items"]
    assert [(b["customer_id"], b["balance"]) for b in one] == [(customers[1], "2")]


def test_unknown_entitlements_and_balances_are_404(client: DodoClient) -> None:
    credits = client.credits.create_entitlement(name="C", unit="credits", precision=0)
    with pytest.raises(NotFoundError):
        client.credits.balance(credits.id, "cus_without_ledger")
    with pytest.raises(NotFoundError):
        client.credits.balance("cent_missing", "cus_1")
    with pytest.raises(NotFoundError):
        client.credits.create_ledger_entry("cent_missing", "cus_1", amount=1)


def test_links_to_unknown_objects_or_bad_units_are_refused(
    client: DodoClient, http: httpx2.Client, shared_server: DevServer
) -> None:
    credits = client.credits.create_entitlement(name="C", unit="credits", precision=0)
    meter_id = token_meter(client, unique("llm"))
    with pytest.raises(LookupError, match="no meter"):
        shared_server.link_meter_to_credits("mtr_missing", credits.id, 1)
    with pytest.raises(LookupError, match="no credit entitlement"):
        shared_server.link_meter_to_credits(meter_id, "cent_missing", 1)
    with pytest.raises(ValueError, match="positive"):
        shared_server.link_meter_to_credits(meter_id, credits.id, "0")
    missing = http.post(
        "/_dev/credit-links",
        json={
            "meter_id": "mtr_missing",
            "credit_entitlement_id": credits.id,
            "meter_units_per_credit": "1",
        },
    )
    bad_units = http.post(
        "/_dev/credit-links",
        json={
            "meter_id": meter_id,
            "credit_entitlement_id": credits.id,
            "meter_units_per_credit": "x",
        },
    )
    assert (missing.status_code, bad_units.status_code) == (404, 422)
    assert missing.json()["message"] == "no meter 'mtr_missing'"


def test_links_are_listed(server: DevServer) -> None:
    with DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client:
        credits = client.credits.create_entitlement(name="C", unit="credits", precision=0)
        meter_id = token_meter(client, "llm")
        server.link_meter_to_credits(meter_id, credits.id, "2.5")
    listed = httpx2.get(f"{server.base_url}/_dev/credit-links").json()
    assert listed == {
        "items": [
            {
                "meter_id": meter_id,
                "credit_entitlement_id": credits.id,
                "meter_units_per_credit": "2.5",
            }
        ]
    }


def test_amounts_must_be_positive_in_our_client(client: DodoClient) -> None:
    with pytest.raises(ValueError, match="positive"):
        client.credits.create_ledger_entry("cent_x", "cus", amount="0")
    with pytest.raises(UnprocessableEntityError):
        client.credits.create_ledger_entry(
            client.credits.create_entitlement(name="C", unit="c", precision=0).id,
            "cus",
            amount="0.5",
        )
