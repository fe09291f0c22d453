"""Overage over real HTTP: usage beyond the balance becomes overage only as far as the
entitlement allows (``overage_enabled``, ``overage_limit``), and only
``carry_deficit_auto_repay`` lets new credits pay it off."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest

from dodo_ingest.devserver import DevServer
from tests.devserver.test_lifecycle import API_KEY, Billing


@pytest.fixture
def http(server: DevServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


def deductions(billing: Billing, customer: str) -> list[tuple[str, str, str]]:
    """The ``credit_deducted`` entries, oldest first: (amount, overage_after, description)."""
    return [
        (e["amount"], e["overage_after"], e["description"])
        for e in reversed(billing.ledger(customer, transaction_type="credit_deducted"))
    ]


def test_without_overage_usage_beyond_the_balance_is_not_deducted(
    server: DevServer, http: httpx2.Client
) -> None:
    billing = Billing(server, http)  # overage_enabled: false
    billing.credit("cus_1", "10")
    billing.use("cus_1", "4")
    billing.use("cus_1", "9")  # 6 left: 6 deducted, 3 not
    assert billing.balance("cus_1") == ("0.00", "0.00")
    billing.use("cus_1", "2")  # nothing left: no entry at all
    [first, second] = deductions(billing, "cus_1")
    assert first[:2] == ("4.00", "0.00")
    assert second[:2] == ("6.00", "0.00")
    assert "3 beyond the allowed overage" in second[2]
    billing.credit("cus_1", "5")  # the usage that was not deducted is not taken later
    assert billing.balance("cus_1") == ("5.00", "0.00")


def test_the_overage_stops_at_its_limit(server: DevServer, http: httpx2.Client) -> None:
    billing = Billing(server, http, overage_enabled=True, overage_limit=5)
    cycle = server.start_credit_cycle(billing.id, "cus_1", "10")
    billing.use("cus_1", "12")
    assert billing.balance("cus_1") == ("0.00", "2.00")
    billing.use("cus_1", "7")  # 3 more allowed: overage 5, 4 not deducted
    assert billing.balance("cus_1") == ("0.00", "5.00")
    billing.use("cus_1", "1")
    assert billing.balance("cus_1") == ("0.00", "5.00")
    assert [d[:2] for d in deductions(billing, "cus_1")] == [("12.00", "2.00"), ("3.00", "5.00")]
    [item] = http.get(f"/subscriptions/{cycle['id']}/credit-usage").json()["items"]
    assert (item["overage"], item["remaining_headroom"], item["limit_reached"]) == (
        "5.00",
        "0.00",
        True,
    )


def test_a_limit_lowered_below_the_overage_keeps_it_and_takes_no_more(
    server: DevServer, http: httpx2.Client
) -> None:
    billing = Billing(server, http, overage_enabled=True)
    billing.credit("cus_1", "1")
    billing.use("cus_1", "9")
    assert billing.balance("cus_1") == ("0.00", "8.00")
    patched = http.patch(f"/credit-entitlements/{billing.id}", json={"overage_limit": "4"})
    assert patched.status_code == 204
    billing.use("cus_1", "1")
    assert billing.balance("cus_1") == ("0.00", "8.00")


@pytest.mark.parametrize(
    ("behavior", "after_top_up"),
    [
        ("forgive_at_reset", ("10.00", "3.00")),
        ("invoice_at_billing", ("10.00", "3.00")),
        ("carry_deficit", ("10.00", "3.00")),
        ("carry_deficit_auto_repay", ("7.00", "0.00")),
    ],
)
def test_only_auto_repay_pays_the_overage_off_with_new_credits(
    server: DevServer, http: httpx2.Client, behavior: str, after_top_up: tuple[str, str]
) -> None:
    billing = Billing(server, http, overage_enabled=True, overage_behavior=behavior)
    billing.credit("cus_1", "2")
    billing.use("cus_1", "5")
    assert billing.balance("cus_1") == ("0.00", "3.00")
    entry = billing.credit("cus_1", "10")
    assert (entry["overage_before"], entry["overage_after"]) == ("3.00", after_top_up[1])
    assert billing.balance("cus_1") == after_top_up
    [grant] = billing.grants("cus_1", status="active")
    assert (grant["initial_amount"], grant["remaining_amount"]) == ("10.00", after_top_up[0])
