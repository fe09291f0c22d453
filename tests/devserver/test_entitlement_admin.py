"""Entitlements changed, deleted and undeleted, and the per-customer and per-subscription
summaries, driven by the official ``dodopayments`` SDK over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import dodopayments
import httpx2
import pytest
from dodopayments import DodoPayments

from dodo_ingest.devserver import DevServer
from tests.devserver.test_lifecycle import API_KEY, Billing


@pytest.fixture
def running() -> Iterator[tuple[DevServer, httpx2.Client, DodoPayments]]:
    with (
        DevServer(api_key=API_KEY) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
        DodoPayments(bearer_token=API_KEY, base_url=server.base_url, max_retries=0) as sdk,
    ):
        yield server, http, sdk


def test_patch_changes_the_fields_given(
    running: tuple[DevServer, httpx2.Client, DodoPayments],
) -> None:
    server, http, sdk = running
    billing = Billing(server, http)
    sdk.credit_entitlements.update(
        billing.id, name="Tokens", expires_after_days=7, overage_limit=500
    )
    entitlement = sdk.credit_entitlements.retrieve(billing.id)
    assert (entitlement.name, entitlement.expires_after_days) == ("Tokens", 7)
    assert entitlement.unit == "credits"  # untouched
    assert str(entitlement.overage_limit) == "500"
    # The new expiry applies to grants made from now on.
    billing.credit("cus_1", "5")
    [grant] = billing.grants("cus_1")
    assert grant["expires_at"] is not None
    bad = http.patch(f"/credit-entitlements/{billing.id}", json={"precision": 11})
    assert bad.status_code == 422
    assert "precision" in bad.json()["message"]
    assert http.patch(f"/credit-entitlements/{billing.id}", json={"id": "x"}).status_code == 422
    fixed = http.patch(f"/credit-entitlements/{billing.id}", json={"precision": 3})
    assert (fixed.status_code, fixed.json()["message"]) == (422, "precision cannot be changed")
    same = http.patch(f"/credit-entitlements/{billing.id}", json={"precision": 2})
    assert same.status_code == 204
    assert http.patch("/credit-entitlements/cent_nope", json={}).status_code == 404


def test_delete_hides_an_entitlement_until_undeleted(
    running: tuple[DevServer, httpx2.Client, DodoPayments],
) -> None:
    server, http, sdk = running
    billing = Billing(server, http)
    billing.credit("cus_1", "5")
    sdk.credit_entitlements.delete(billing.id)
    assert [e.id for e in sdk.credit_entitlements.list(page_number=0).items] == []
    assert [e.id for e in sdk.credit_entitlements.list(deleted=True, page_number=0).items] == [
        billing.id
    ]
    assert sdk.credit_entitlements.retrieve(billing.id).id == billing.id  # still readable
    with pytest.raises(dodopayments.NotFoundError):
        sdk.credit_entitlements.balances.create_ledger_entry(
            "cus_1", credit_entitlement_id=billing.id, amount="1", entry_type="credit"
        )
    assert sdk.customers.list_credit_entitlements("cus_1").items == []
    sdk.credit_entitlements.undelete(billing.id)
    assert [e.id for e in sdk.credit_entitlements.list(page_number=0).items] == [billing.id]
    billing.credit("cus_1", "1")
    assert billing.balance("cus_1") == ("6.00", "0.00")


def test_a_customer_lists_its_balances(
    running: tuple[DevServer, httpx2.Client, DodoPayments],
) -> None:
    server, http, sdk = running
    credits = Billing(server, http)
    tokens = Billing(server, http, overage_enabled=True)
    credits.credit("cus_1", "10")
    credits.use("cus_1", "2.5")
    tokens.credit("cus_1", "3")
    tokens.use("cus_1", "4")
    tokens.credit("cus_2", "1")
    items = sdk.customers.list_credit_entitlements("cus_1").items
    assert [(i.credit_entitlement_id, i.balance, i.overage) for i in items] == [
        (credits.id, "7.50", "0.00"),
        (tokens.id, "0.00", "1.00"),
    ]
    assert sdk.customers.list_credit_entitlements("cus_nobody").items == []


def test_credit_usage_of_a_cycle_says_when_the_limit_is_reached(
    running: tuple[DevServer, httpx2.Client, DodoPayments],
) -> None:
    server, http, sdk = running
    billing = Billing(server, http, overage_enabled=True, overage_limit=5)
    cycle = server.start_credit_cycle(billing.id, "cus_1", "10")
    billing.use("cus_1", "12")
    usage = sdk.subscriptions.retrieve_credit_usage(cycle["id"])
    [item] = usage.items
    assert (item.balance, item.overage, item.remaining_headroom, item.limit_reached) == (
        "0.00",
        "2.00",
        "3.00",
        False,
    )
    billing.use("cus_1", "3")
    [item] = sdk.subscriptions.retrieve_credit_usage(cycle["id"]).items
    assert (item.remaining_headroom, item.limit_reached) == ("0.00", True)
    with pytest.raises(dodopayments.NotFoundError):
        sdk.subscriptions.retrieve_credit_usage("sub_nope")


def test_without_overage_the_limit_is_the_balance(
    running: tuple[DevServer, httpx2.Client, DodoPayments],
) -> None:
    server, http, sdk = running
    billing = Billing(server, http)
    cycle = server.start_credit_cycle(billing.id, "cus_1", "2")
    [item] = sdk.subscriptions.retrieve_credit_usage(cycle["id"]).items
    assert (item.limit_reached, item.remaining_headroom, item.overage_enabled) == (
        False,
        None,
        False,
    )
    billing.use("cus_1", "2")
    [item] = sdk.subscriptions.retrieve_credit_usage(cycle["id"]).items
    assert item.limit_reached is True
