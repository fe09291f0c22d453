"""The credit lifecycle over real HTTP: grants with ``expires_at``, FIFO draws by usage and
debits, expiry when the test clock passes, the grants and ledger endpoints (read back with
the official ``dodopayments`` SDK too)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from dodopayments import DodoPayments

from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import events, iso, unique

API_KEY = "sk_test_lifecycle_0123456789"


class Billing:
    """An entitlement (precision 2) with a ``sum`` meter of ``credits`` linked 1:1, spoken to
    over plain HTTP."""

    def __init__(self, server: DevServer, http: httpx2.Client, **settings: Any) -> None:
        self.server = server
        self.http = http
        self.event_name = unique("work")
        meter = self.ok(
            http.post(
                "/meters",
                json={
                    "name": "Work",
                    "event_name": self.event_name,
                    "measurement_unit": "credits",
                    "aggregation": {"type": "sum", "key": "credits"},
                },
            )
        )
        body = {
            "name": "Credits",
            "unit": "credits",
            "precision": 2,
            "overage_enabled": False,
            "rollover_enabled": False,
            **settings,
        }
        self.entitlement = self.ok(http.post("/credit-entitlements", json=body))
        self.id = self.entitlement["id"]
        server.link_meter_to_credits(meter["id"], self.id, "1")

    @staticmethod
    def ok(response: httpx2.Response) -> Any:
        assert response.is_success, response.text
        return response.json()

    def path(self, customer: str, tail: str = "") -> str:
        return f"/credit-entitlements/{self.id}/balances/{customer}{tail}"

    def credit(self, customer: str, amount: str, **fields: Any) -> dict[str, Any]:
        body = {"amount": amount, "entry_type": "credit", **fields}
        return self.ok(self.http.post(self.path(customer, "/ledger-entries"), json=body))  # type: ignore[no-any-return]

    def debit(self, customer: str, amount: str) -> httpx2.Response:
        body = {"amount": amount, "entry_type": "debit"}
        return self.http.post(self.path(customer, "/ledger-entries"), json=body)

    def use(self, customer: str, credits: str) -> None:
        batch = events(1, customer_id=customer, event_name=self.event_name)
        batch[0]["metadata"] = {"credits": credits}
        batch[0]["timestamp"] = iso(self.server.clock.now())
        self.ok(self.http.post("/events/ingest", json={"events": batch}))

    def balance(self, customer: str) -> tuple[str, str]:
        body = self.ok(self.http.get(self.path(customer)))
        return body["balance"], body["overage"]

    def grants(self, customer: str, **params: Any) -> list[dict[str, Any]]:
        return self.ok(self.http.get(self.path(customer, "/grants"), params=params))["items"]  # type: ignore[no-any-return]

    def ledger(self, customer: str, **params: Any) -> list[dict[str, Any]]:
        return self.ok(self.http.get(self.path(customer, "/ledger"), params=params))["items"]  # type: ignore[no-any-return]

    def remaining(self, customer: str) -> list[tuple[str, str, bool]]:
        return [
            (g["initial_amount"], g["remaining_amount"], g["is_expired"])
            for g in self.grants(customer)
        ]


@pytest.fixture
def http(server: DevServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_grant_expires_after_the_entitlements_days(server: DevServer, http: Any) -> None:
    billing = Billing(server, http, expires_after_days=30, overage_enabled=True)
    entry = billing.credit("cus_1", "100")
    [grant] = billing.grants("cus_1")
    assert grant["id"] == entry["grant_id"]
    assert grant["source_type"] == "api"
    assert parse(grant["expires_at"]) - parse(grant["created_at"]) == timedelta(days=30)
    billing.use("cus_1", "40")
    server.clock.advance(days=29, hours=23)
    assert billing.balance("cus_1") == ("60.00", "0.00")
    [active] = billing.grants("cus_1", status="active")
    assert (active["id"], active["remaining_amount"]) == (grant["id"], "60.00")
    server.clock.advance(hours=1)
    assert billing.balance("cus_1") == ("0.00", "0.00")
    assert billing.grants("cus_1", status="active") == []
    [expired] = billing.grants("cus_1", status="expired")
    assert (expired["is_expired"], expired["remaining_amount"]) == (True, "60.00")
    [newest, *_] = billing.ledger("cus_1")
    assert newest["transaction_type"] == "credit_expired"
    assert (newest["amount"], newest["balance_before"], newest["balance_after"]) == (
        "60.00",
        "60.00",
        "0.00",
    )
    assert newest["grant_id"] == grant["id"]
    assert newest["created_at"] == grant["expires_at"]  # it expired at its time, not later
    # Usage after expiry is overage.
    billing.use("cus_1", "5")
    assert billing.balance("cus_1") == ("0.00", "5.00")


def test_usage_and_debits_draw_on_the_oldest_grant_first(server: DevServer, http: Any) -> None:
    billing = Billing(server, http)
    soon = iso(server.clock.now() + timedelta(days=10))
    billing.credit("cus_1", "10", expires_at=soon)
    billing.credit("cus_1", "10")
    billing.use("cus_1", "4")
    assert billing.remaining("cus_1") == [("10.00", "6.00", False), ("10.00", "10.00", False)]
    assert billing.debit("cus_1", "7").status_code == 201
    assert billing.remaining("cus_1") == [("10.00", "0.00", False), ("10.00", "9.00", False)]
    assert [g["remaining_amount"] for g in billing.grants("cus_1", status="depleted")] == ["0.00"]
    server.clock.advance(days=11)
    # The first grant was used up before it expired: nothing is lost, no expiry entry.
    assert billing.balance("cus_1") == ("9.00", "0.00")
    assert billing.ledger("cus_1", transaction_type="credit_expired") == []
    assert billing.grants("cus_1", status="expired")[0]["remaining_amount"] == "0.00"


def test_usage_due_before_an_expiry_draws_on_the_expiring_grant() -> None:
    """With a deduction lag, usage that became due before a grant expired is drawn from it,
    even when the clock jumps past both at once."""
    with (
        DevServer(deduction_lag=3600) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
    ):
        billing = Billing(server, http)
        billing.credit("cus_1", "10", expires_at=iso(server.clock.now() + timedelta(days=1)))
        billing.credit("cus_1", "10")
        billing.use("cus_1", "4")
        assert billing.balance("cus_1") == ("20.00", "0.00")  # not due yet
        server.clock.advance(days=2)
        assert billing.balance("cus_1") == ("10.00", "0.00")
        kinds = [(e["transaction_type"], e["amount"]) for e in billing.ledger("cus_1")]
        assert kinds == [
            ("credit_expired", "6.00"),
            ("credit_deducted", "4.00"),
            ("credit_added", "10.00"),
            ("credit_added", "10.00"),
        ]


def test_with_auto_repay_a_new_grant_first_pays_off_the_overage(
    server: DevServer, http: Any
) -> None:
    billing = Billing(
        server, http, overage_enabled=True, overage_behavior="carry_deficit_auto_repay"
    )
    billing.credit("cus_1", "5")
    billing.use("cus_1", "8")
    assert billing.balance("cus_1") == ("0.00", "3.00")
    entry = billing.credit("cus_1", "10")
    assert (entry["overage_before"], entry["overage_after"]) == ("3.00", "0.00")
    assert (entry["balance_before"], entry["balance_after"]) == ("0.00", "7.00")
    assert billing.remaining("cus_1") == [("5.00", "0.00", False), ("10.00", "7.00", False)]


def test_the_ledger_lists_every_transaction_newest_first(server: DevServer, http: Any) -> None:
    billing = Billing(server, http)
    billing.credit("cus_1", "10", reason="welcome", metadata={"plan": "pro"})
    billing.use("cus_1", "2.5")
    assert billing.debit("cus_1", "1").status_code == 201
    ledger = billing.ledger("cus_1")
    assert [(e["transaction_type"], e["is_credit"], e["amount"]) for e in ledger] == [
        ("manual_adjustment", False, "1.00"),
        ("credit_deducted", False, "2.50"),
        ("credit_added", True, "10.00"),
    ]
    added = ledger[-1]
    assert added["description"] == "welcome"
    assert added["metadata"] == {"plan": "pro"}
    assert added["business_id"] and added["brand_id"]
    assert ledger[1]["reference_type"] == "meter"
    assert [(e["balance_before"], e["balance_after"]) for e in ledger] == [
        ("7.50", "6.50"),
        ("10.00", "7.50"),
        ("0.00", "10.00"),
    ]
    assert billing.ledger("cus_1", transaction_type="credit_added") == [added]
    assert billing.ledger("cus_1", page_size=1, page_number=1) == [ledger[1]]
    later = iso(server.clock.now() + timedelta(seconds=1))
    assert billing.ledger("cus_1", start_date=later) == []
    assert len(billing.ledger("cus_1", end_date=later)) == 3


def test_bad_requests(server: DevServer, http: Any) -> None:
    billing = Billing(server, http)
    past = iso(server.clock.now() - timedelta(seconds=1))
    answer = http.post(
        billing.path("cus_1", "/ledger-entries"),
        json={"amount": "1", "entry_type": "credit", "expires_at": past},
    )
    assert answer.status_code == 422
    assert "expires_at" in answer.json()["message"]
    answer = http.post(
        billing.path("cus_1", "/ledger-entries"),
        json={"amount": "1", "entry_type": "credit", "expires_at": "soon"},
    )
    assert answer.status_code == 422
    assert http.get(billing.path("cus_nobody", "/grants")).status_code == 404
    assert http.get(billing.path("cus_nobody", "/ledger")).status_code == 404
    billing.credit("cus_1", "1")
    answer = http.post(
        billing.path("cus_1", "/ledger-entries"),
        json={"amount": "1", "entry_type": "debit", "expires_at": iso(server.clock.now())},
    )
    assert answer.status_code == 422
    answer = http.get(billing.path("cus_1", "/grants"), params={"status": "gone"})
    assert answer.status_code == 422
    assert "status" in answer.json()["message"]


def test_the_official_sdk_reads_grants_ledger_and_balances() -> None:
    with (
        DevServer(api_key=API_KEY) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
        DodoPayments(bearer_token=API_KEY, base_url=server.base_url, max_retries=0) as sdk,
    ):
        billing = Billing(server, http, expires_after_days=7)
        balances = sdk.credit_entitlements.balances
        created = balances.create_ledger_entry(
            "cus_sdk", credit_entitlement_id=billing.id, amount="12.50", entry_type="credit"
        )
        billing.use("cus_sdk", "2.5")
        server.clock.advance(days=8)
        balance = balances.retrieve("cus_sdk", credit_entitlement_id=billing.id)
        assert (balance.balance, balance.overage) == ("0.00", "0.00")
        grants = balances.list_grants("cus_sdk", credit_entitlement_id=billing.id)
        [grant] = grants.items
        assert grant.id == created.grant_id
        assert (grant.initial_amount, grant.remaining_amount) == ("12.50", "10.00")
        assert grant.is_expired and grant.expires_at is not None
        assert grant.expires_at - grant.created_at == timedelta(days=7)
        ledger = balances.list_ledger(
            "cus_sdk", credit_entitlement_id=billing.id, page_number=0, page_size=10
        )
        assert [(e.transaction_type, Decimal(e.amount)) for e in ledger.items] == [
            ("credit_expired", Decimal("10")),
            ("credit_deducted", Decimal("2.5")),
            ("credit_added", Decimal("12.5")),
        ]
        expired = balances.list_grants("cus_sdk", credit_entitlement_id=billing.id, status="active")
        assert expired.items == []


def test_a_database_written_before_grants_keeps_its_balances(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with (
        DevServer(db=db) as server,
        httpx2.Client(base_url=server.base_url, headers=headers, timeout=10) as http,
    ):
        billing = Billing(server, http)
        billing.credit("cus_old", "10")
        billing.use("cus_old", "3")
        assert billing.debit("cus_old", "5").status_code == 201
    with sqlite3.connect(db) as connection:  # the tables as an older dev server wrote them
        connection.execute("DROP TABLE grants")
        connection.execute("DROP TABLE usage_applied")
        connection.execute("ALTER TABLE balances DROP COLUMN overage")
        connection.execute("DELETE FROM ledger WHERE data LIKE '%credit_deducted%'")
        for entry_id, data in connection.execute("SELECT id, data FROM ledger").fetchall():
            entry = json.loads(data)
            entry.pop("transaction_type")
            connection.execute(
                "UPDATE ledger SET data = ? WHERE id = ?", (json.dumps(entry), entry_id)
            )
    with (
        DevServer(db=db) as server,
        httpx2.Client(base_url=server.base_url, headers=headers, timeout=10) as http,
    ):
        billing.server, billing.http = server, http
        assert billing.balance("cus_old") == ("2.00", "0.00")
        assert billing.remaining("cus_old") == [("10.00", "2.00", False)]
        assert [e["transaction_type"] for e in billing.ledger("cus_old")] == [
            "credit_deducted",
            "manual_adjustment",
            "credit_added",
        ]
