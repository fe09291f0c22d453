"""Dev-only billing cycles over real HTTP with the test clock: a recurring grant, rollover
(percentage, count, forfeiture), each overage behaviour at the reset, a daily grant, and the
order of everything when the clock jumps several cycles at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from dodo_ingest.client.webhooks import CreditBalanceLowEvent, Webhook
from dodo_ingest.devserver import DevServer
from tests.devserver._receiver import receiver, wait_for
from tests.devserver.test_lifecycle import API_KEY, Billing
from tests.docs._snippets import ROOT, snippets

DOCS_PAGE = ROOT / "docs" / "devserver.md"


@pytest.fixture
def http(server: DevServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


def kinds(billing: Billing, customer: str) -> list[tuple[str, str]]:
    """The ledger oldest first, as (transaction_type, amount)."""
    return [(e["transaction_type"], e["amount"]) for e in reversed(billing.ledger(customer))]


def test_a_cycle_grants_at_every_reset_and_unused_credits_expire(
    server: DevServer, http: httpx2.Client
) -> None:
    billing = Billing(server, http)
    answer = http.post(
        "/_dev/credit-cycles",
        json={"credit_entitlement_id": billing.id, "customer_id": "cus_1", "amount": "100"},
    )
    assert answer.status_code == 201
    cycle = answer.json()
    assert (cycle["amount"], cycle["cycle_days"], cycle["daily_amount"]) == ("100", 30, None)
    [grant] = billing.grants("cus_1")
    assert (grant["source_type"], grant["source_id"]) == ("subscription", cycle["id"])
    assert grant["expires_at"] == cycle["current_period_end"]
    billing.use("cus_1", "30")
    server.clock.advance(days=30)
    assert billing.balance("cus_1") == ("100.00", "0.00")
    assert kinds(billing, "cus_1") == [
        ("credit_added", "100.00"),
        ("credit_deducted", "30.00"),
        ("credit_expired", "70.00"),
        ("credit_added", "100.00"),
    ]
    [listed] = http.get("/_dev/credit-cycles").json()["items"]
    assert listed["current_period_start"] == cycle["current_period_end"]


def test_rollover_carries_credits_once_then_forfeits(
    server: DevServer, http: httpx2.Client
) -> None:
    billing = Billing(
        server,
        http,
        rollover_enabled=True,
        rollover_percentage=100,
        max_rollover_count=1,
    )
    server.start_credit_cycle(billing.id, "cus_1", "100")
    billing.use("cus_1", "30")
    server.clock.advance(days=30)  # 70 roll over, 100 new
    assert billing.balance("cus_1") == ("170.00", "0.00")
    rolled = [g for g in billing.grants("cus_1") if g["source_type"] == "rollover"]
    assert [(g["initial_amount"], g["rollover_count"]) for g in rolled] == [("70.00", 1)]
    first = billing.grants("cus_1")[0]
    assert (first["is_rolled_over"], first["is_expired"]) == (True, True)
    assert rolled[0]["parent_grant_id"] == first["id"]
    billing.use("cus_1", "150")  # the rolled-over 70 first (older), then 80 of the new 100
    assert [g["remaining_amount"] for g in billing.grants("cus_1", status="active")] == ["20.00"]
    server.clock.advance(days=30)  # the 20 roll over (first time for that grant), 100 new
    assert billing.balance("cus_1") == ("120.00", "0.00")
    server.clock.advance(days=30)  # the rolled 20 was rolled once: forfeited; the 100 rolls
    assert billing.balance("cus_1") == ("200.00", "0.00")
    assert kinds(billing, "cus_1")[-4:] == [
        ("credit_added", "100.00"),
        ("rollover_forfeited", "20.00"),
        ("credit_rolled_over", "100.00"),
        ("credit_added", "100.00"),
    ]


def test_a_rollover_percentage_forfeits_the_rest(server: DevServer, http: httpx2.Client) -> None:
    billing = Billing(server, http, rollover_enabled=True, rollover_percentage=50)
    server.start_credit_cycle(billing.id, "cus_1", "100")
    billing.use("cus_1", "20")
    server.clock.advance(days=30)
    assert billing.balance("cus_1") == ("140.00", "0.00")
    assert kinds(billing, "cus_1")[2:] == [
        ("rollover_forfeited", "40.00"),
        ("credit_rolled_over", "40.00"),
        ("credit_added", "100.00"),
    ]


def test_rolled_credits_expire_by_the_rollover_timeframe(
    server: DevServer, http: httpx2.Client
) -> None:
    billing = Billing(
        server,
        http,
        rollover_enabled=True,
        rollover_timeframe_count=1,
        rollover_timeframe_interval="Week",
    )
    server.start_credit_cycle(billing.id, "cus_1", "10")
    server.clock.advance(days=30)
    assert billing.balance("cus_1") == ("20.00", "0.00")
    server.clock.advance(days=7)
    assert billing.balance("cus_1") == ("10.00", "0.00")
    assert kinds(billing, "cus_1")[-1] == ("credit_expired", "10.00")


@pytest.mark.parametrize(
    ("behavior", "at_reset", "after"),
    [
        ("forgive_at_reset", [("overage_reset", "30.00")], ("100.00", "0.00")),
        ("invoice_at_billing", [("overage_charged", "30.00")], ("100.00", "0.00")),
        ("carry_deficit", [], ("100.00", "30.00")),
        ("carry_deficit_auto_repay", [], ("70.00", "0.00")),
    ],
)
def test_overage_at_the_reset(
    server: DevServer,
    http: httpx2.Client,
    behavior: str,
    at_reset: list[tuple[str, str]],
    after: tuple[str, str],
) -> None:
    billing = Billing(server, http, overage_enabled=True, overage_behavior=behavior)
    server.start_credit_cycle(billing.id, "cus_1", "100")
    billing.use("cus_1", "130")
    assert billing.balance("cus_1") == ("0.00", "30.00")
    server.clock.advance(days=30)
    assert billing.balance("cus_1") == after
    assert kinds(billing, "cus_1")[2:] == [*at_reset, ("credit_added", "100.00")]


def test_a_daily_grant_lasts_a_day(server: DevServer, http: httpx2.Client) -> None:
    billing = Billing(server, http)
    cycle = server.start_credit_cycle(billing.id, "cus_1", "100", daily_amount="5")
    assert cycle["next_daily_grant_at"] is not None
    assert billing.balance("cus_1") == ("105.00", "0.00")
    server.clock.advance(days=1)
    assert billing.balance("cus_1") == ("105.00", "0.00")  # yesterday's 5 expired, 5 new
    server.clock.advance(days=2, hours=12)
    assert billing.balance("cus_1") == ("105.00", "0.00")
    daily = [g for g in billing.grants("cus_1") if g["initial_amount"] == "5.00"]
    assert len(daily) == 4
    assert [g["is_expired"] for g in daily] == [True, True, True, False]


def test_a_jump_of_several_cycles_happens_in_order_with_its_webhooks(
    server: DevServer, http: httpx2.Client
) -> None:
    with receiver() as hooks:
        created = http.post("/webhooks", json={"url": hooks.url}).json()
        secret = http.get(f"/webhooks/{created['id']}/secret").json()["secret"]
        billing = Billing(
            server, http, rollover_enabled=True, max_rollover_count=1, overage_enabled=True
        )
        server.start_credit_cycle(billing.id, "cus_1", "10")
        billing.use("cus_1", "4")
        server.clock.advance(days=90)
        expected = [
            ("credit.added", "10.00"),
            ("credit.deducted", "4.00"),
            ("credit.rolled_over", "6.00"),  # day 30
            ("credit.added", "10.00"),
            ("credit.rollover_forfeited", "6.00"),  # day 60: the 6 rolled once already
            ("credit.rolled_over", "10.00"),
            ("credit.added", "10.00"),
            ("credit.rollover_forfeited", "10.00"),  # day 90
            ("credit.rolled_over", "10.00"),
            ("credit.added", "10.00"),
        ]
        got = wait_for(hooks.snapshot, lambda r: len(r) >= len(expected))
        events = [Webhook(secret).unwrap(r.body, r.headers) for r in got]
        assert [(e.type, str(e.data.amount)) for e in events] == expected  # type: ignore[union-attr]
        times = [e.timestamp for e in events]
        assert times == sorted(times)
        assert billing.balance("cus_1") == ("20.00", "0.00")


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (
            {"credit_entitlement_id": 5, "customer_id": "c", "amount": "1"},
            422,
            "credit_entitlement_id",
        ),
        (
            {"credit_entitlement_id": "cent_nope", "customer_id": "c", "amount": "1"},
            404,
            "cent_nope",
        ),
        ({"customer_id": "c", "amount": "0"}, 422, "amount"),
        ({"customer_id": "c", "amount": "1", "cycle_days": 0}, 422, "cycle_days"),
        ({"customer_id": "c", "amount": "1", "daily_amount": "0.001"}, 422, "daily_amount"),
    ],
)
def test_bad_cycles_are_refused(
    server: DevServer, http: httpx2.Client, body: dict[str, Any], status: int, needle: str
) -> None:
    billing = Billing(server, http)
    answer = http.post("/_dev/credit-cycles", json={"credit_entitlement_id": billing.id, **body})
    assert answer.status_code == status
    assert needle in answer.json()["message"]
    with pytest.raises(ValueError, match="cycle_days"):
        server.start_credit_cycle(billing.id, "c", "1", cycle_days=0)
    with pytest.raises(LookupError):
        server.start_credit_cycle("cent_nope", "c", "1")


def test_balance_low_counts_from_the_cycles_amount(server: DevServer, http: httpx2.Client) -> None:
    with receiver() as hooks:
        created = http.post(
            "/webhooks", json={"url": hooks.url, "filter_types": ["credit.balance_low"]}
        ).json()
        secret = http.get(f"/webhooks/{created['id']}/secret").json()["secret"]
        billing = Billing(server, http, rollover_enabled=True)
        cycle = server.start_credit_cycle(billing.id, "cus_1", "100")
        billing.use("cus_1", "50")
        server.clock.advance(days=30)  # 50 rolled + 100: the threshold stays 10 % of 100
        billing.use("cus_1", "139")  # 11 left: above 10 % of 100 (not of the 150 granted)
        billing.use("cus_1", "2")  # 9 left: below
        items = wait_for(
            lambda: http.get("/_dev/webhook-deliveries").json()["items"],
            lambda d: d and all(i["status"] == "delivered" for i in d),
        )
        assert len(items) == 1
        [got] = hooks.snapshot()
        event = Webhook(secret).unwrap(got.body, got.headers)
        assert isinstance(event, CreditBalanceLowEvent)
        assert (event.data.subscription_id, str(event.data.threshold_amount)) == (
            cycle["id"],
            "10.00",
        )
        assert str(event.data.available_balance) == "9.00"
        assert str(event.data.subscription_credits_amount) == "100.00"


def test_a_month_in_a_minute_runs_as_written() -> None:
    """The walkthrough of docs/devserver.md, run as a reader would: it starts
    ``dodo-ingest dev-server``, registers its receiver, and sees the rollover's webhooks."""
    text = DOCS_PAGE.read_text(encoding="utf-8")
    section = text.index("## A month in a minute")
    [block] = [
        b for b in snippets(DOCS_PAGE) if section < text.index(b.code) < text.index("## Endpoints")
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DODO_PAYMENTS_")}
    result = subprocess.run(
        [sys.executable, "-c", block.code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "17500",
        "['credit_added', 'credit_deducted', 'credit_rolled_over', 'credit_added']",
        "[('credit.added', '10000'), ('credit.deducted', '2500'), "
        "('credit.rolled_over', '7500'), ('credit.added', '10000')]",
    ]


def test_a_jump_delivers_every_customers_webhooks_in_time_order(
    server: DevServer, http: httpx2.Client
) -> None:
    with receiver() as hooks:
        kinds = ["credit.added", "credit.expired"]
        http.post("/webhooks", json={"url": hooks.url, "filter_types": kinds})
        billing = Billing(server, http)
        server.start_credit_cycle(billing.id, "cus_a", "10", cycle_days=30)
        server.start_credit_cycle(billing.id, "cus_b", "10", cycle_days=20)
        server.clock.advance(days=60)
        # a: resets on days 30 and 60; b: on days 20, 40 and 60. Each reset expires the
        # cycle's credits and grants new ones: 2 deliveries per reset, plus the 2 first grants.
        got = wait_for(hooks.snapshot, lambda r: len(r) >= 12)
        payloads = [json.loads(r.body) for r in got]
        moments = [(p["timestamp"], p["data"]["customer_id"]) for p in payloads]
        assert [m[0] for m in moments] == sorted(m[0] for m in moments)
        resets = [customer for _, customer in moments[2::2]]  # (expired, added) per reset
        assert resets == ["cus_b", "cus_a", "cus_b", "cus_a", "cus_b"]  # days 20 30 40 60 60


def test_a_cycle_sets_its_own_low_balance_threshold(server: DevServer, http: httpx2.Client) -> None:
    with receiver() as hooks:
        http.post("/webhooks", json={"url": hooks.url, "filter_types": ["credit.balance_low"]})
        billing = Billing(server, http)
        answer = http.post(
            "/_dev/credit-cycles",
            json={
                "credit_entitlement_id": billing.id,
                "customer_id": "cus_1",
                "amount": "100",
                "low_balance_percent": 25,
            },
        )
        assert answer.status_code == 201
        assert answer.json()["low_balance_percent"] == 25
        billing.use("cus_1", "74")  # 26 left: above 25 % of 100
        billing.use("cus_1", "2")  # 24 left: below
        [got] = wait_for(hooks.snapshot, lambda r: len(r) >= 1)
        data = json.loads(got.body)["data"]
        assert (data["threshold_percent"], data["threshold_amount"]) == (25, "25.00")
        assert data["available_balance"] == "24.00"
        bad = http.post(
            "/_dev/credit-cycles",
            json={
                "credit_entitlement_id": billing.id,
                "customer_id": "cus_2",
                "amount": "1",
                "low_balance_percent": 0,
            },
        )
        assert bad.status_code == 422
        assert "low_balance_percent" in bad.json()["message"]
        cycle = server.start_credit_cycle(billing.id, "cus_3", "10", low_balance_percent=50)
        assert cycle["low_balance_percent"] == 50
        default = server.start_credit_cycle(billing.id, "cus_4", "10")
        assert default["low_balance_percent"] == 10
