"""Webhook endpoints and signed deliveries of credit events, over real HTTP: a receiver on
127.0.0.1 gets them, ``standardwebhooks`` and our own verifier both accept them, failures are
retried by the server's clock, and the contract's shapes hold for the endpoints' answers.
Every wait polls ``GET /_dev/webhook-deliveries`` (or the receiver) until a deadline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
import standardwebhooks
from dodopayments import DodoPayments
from openapi_core import OpenAPI

from dodo_ingest.client.webhooks import (
    CreditAddedEvent,
    CreditBalanceLowEvent,
    CreditDeductedEvent,
    CreditExpiredEvent,
    CreditManualAdjustmentEvent,
    Webhook,
)
from dodo_ingest.devserver import DevServer
from tests.devserver._openapi import response_problems
from tests.devserver._receiver import receiver, wait_for
from tests.devserver.test_lifecycle import API_KEY, Billing


@pytest.fixture
def http(server: DevServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


def register(http: httpx2.Client, url: str, **fields: Any) -> tuple[dict[str, Any], str]:
    created = http.post("/webhooks", json={"url": url, **fields})
    assert created.status_code == 200, created.text
    webhook = created.json()
    secret = http.get(f"/webhooks/{webhook['id']}/secret").json()["secret"]
    return webhook, secret


def deliveries(http: httpx2.Client, **params: Any) -> list[dict[str, Any]]:
    return http.get("/_dev/webhook-deliveries", params=params).json()["items"]  # type: ignore[no-any-return]


def settled(http: httpx2.Client, count: int, **params: Any) -> list[dict[str, Any]]:
    """Wait until ``count`` deliveries exist and none is pending; return them."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: deliveries(http, **params),
        lambda items: len(items) >= count and all(i["status"] != "pending" for i in items),
    )


def test_endpoints_are_created_listed_patched_and_deleted(
    http: httpx2.Client, openapi_spec: OpenAPI
) -> None:
    created = http.post(
        "/webhooks",
        json={
            "url": "http://127.0.0.1:9/hooks",
            "description": "credits",
            "filter_types": ["credit.added", "credit.balance_low"],
            "metadata": {"team": "billing"},
        },
    )
    assert created.status_code == 200
    assert response_problems(openapi_spec, created) == []
    webhook = created.json()
    assert webhook["filter_types"] == ["credit.added", "credit.balance_low"]
    assert "secret" not in webhook
    other = http.post("/webhooks", json={"url": "https://example.test/h"}).json()

    listed = http.get("/webhooks")
    assert response_problems(openapi_spec, listed) == []
    assert [w["id"] for w in listed.json()["data"]] == [webhook["id"], other["id"]]
    first = http.get("/webhooks", params={"limit": 1}).json()
    assert (first["done"], first["iterator"]) == (False, webhook["id"])
    rest = http.get("/webhooks", params={"limit": 1, "iterator": first["iterator"]}).json()
    assert ([w["id"] for w in rest["data"]], rest["done"]) == ([other["id"]], True)

    got = http.get(f"/webhooks/{webhook['id']}")
    assert response_problems(openapi_spec, got) == []
    assert got.json() == webhook
    secret = http.get(f"/webhooks/{webhook['id']}/secret")
    assert response_problems(openapi_spec, secret) == []
    assert secret.json()["secret"].startswith("whsec_")

    patched = http.patch(
        f"/webhooks/{webhook['id']}", json={"disabled": True, "filter_types": ["credit.expired"]}
    )
    assert response_problems(openapi_spec, patched) == []
    assert (patched.json()["disabled"], patched.json()["filter_types"]) == (
        True,
        ["credit.expired"],
    )
    assert patched.json()["description"] == "credits"

    deleted = http.delete(f"/webhooks/{webhook['id']}")
    assert deleted.status_code == 200
    assert response_problems(openapi_spec, deleted) == []
    assert http.get(f"/webhooks/{webhook['id']}").status_code == 404
    assert http.delete(f"/webhooks/{webhook['id']}").status_code == 404
    assert http.get(f"/webhooks/{webhook['id']}/secret").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "url"),
        ({"url": "ftp://x/y"}, "url"),
        ({"url": "http://x/y", "filter_types": ["credit.nope"]}, "credit.nope"),
        ({"url": "http://x/y", "filter_types": "credit.added"}, "filter_types"),
        ({"url": "http://x/y", "metadata": {"a": 1}}, "metadata"),
        ({"url": "http://x/y", "rate_limit": -1}, "rate_limit"),
        ({"url": "http://x/y", "disabled": "yes"}, "disabled"),
        ({"url": "http://x/y", "headers": {"x-team": "caf\u00e9"}}, "headers.x-team"),
        ({"url": "http://x/y", "headers": {"x-a": "a\r\nx-evil: 1"}}, "headers.x-a"),
        ({"url": "http://x/y", "headers": {"x a": "1"}}, "HTTP header name"),
        ({"url": "http://x/y", "headers": {"Webhook-Signature": "v1,x"}}, "set by the server"),
    ],
)
def test_bad_endpoints_are_422(http: httpx2.Client, body: dict[str, Any], needle: str) -> None:
    answer = http.post("/webhooks", json=body)
    assert answer.status_code == 422
    assert needle in answer.json()["message"]


def verify_both(secret: str, got: Any) -> Any:
    """Verify a received delivery with standardwebhooks and with our verifier; return our
    typed event."""
    standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    return Webhook(secret).unwrap(got.body, got.headers)


def test_credit_events_are_delivered_signed(server: DevServer, http: httpx2.Client) -> None:
    with receiver() as hooks:
        _, secret = register(http, hooks.url)
        billing = Billing(server, http, expires_after_days=30)
        billing.credit("cus_1", "100")
        billing.use("cus_1", "85")
        billing.use("cus_1", "10")  # 5 left: below 10 % of 100
        billing.use("cus_1", "1")  # still below: no second balance_low
        assert billing.debit("cus_1", "2").status_code == 201
        server.clock.advance(days=31)
        items = settled(http, 7)
        assert [i["event_type"] for i in items] == [
            "credit.added",
            "credit.deducted",
            "credit.deducted",
            "credit.balance_low",
            "credit.deducted",
            "credit.manual_adjustment",
            "credit.expired",
        ]
        assert {i["status"] for i in items} == {"delivered"}
        got = wait_for(hooks.snapshot, lambda r: len(r) >= 7)
        events = [verify_both(secret, request) for request in got]
        assert [type(e) for e in events] == [
            CreditAddedEvent,
            CreditDeductedEvent,
            CreditDeductedEvent,
            CreditBalanceLowEvent,
            CreditDeductedEvent,
            CreditManualAdjustmentEvent,
            CreditExpiredEvent,
        ]
        low = events[3]
        assert isinstance(low, CreditBalanceLowEvent)
        assert (str(low.data.available_balance), str(low.data.threshold_amount)) == (
            "5.00",
            "10.00",
        )
        assert low.data.threshold_percent == 10
        expired = events[-1]
        assert isinstance(expired, CreditExpiredEvent)
        assert str(expired.data.amount) == "2.00"
        # The payload's timestamp is the server's clock; the signature's is the real time.
        assert expired.timestamp - events[0].timestamp >= timedelta(days=30)
        ledger_ids = {e["id"] for e in billing.ledger("cus_1")}
        assert {e.data.id for e in events if not isinstance(e, CreditBalanceLowEvent)} == ledger_ids
        assert len({request.headers["webhook-id"] for request in got}) == 7


def test_balance_low_fires_once_per_crossing(server: DevServer, http: httpx2.Client) -> None:
    with receiver() as hooks:
        register(http, hooks.url, filter_types=["credit.balance_low"])
        billing = Billing(server, http)
        billing.credit("cus_1", "10")
        billing.use("cus_1", "9.5")  # crosses 1.00
        billing.use("cus_1", "0.1")
        billing.credit("cus_1", "10")  # back above 10 % of 20
        billing.use("cus_1", "9")  # 1.40 left: crosses 2.00 again
        items = settled(http, 2)
        assert [i["payload"]["data"]["available_balance"] for i in items] == [
            "0.50",
            "1.40",
        ]
        assert len(wait_for(hooks.snapshot, lambda r: len(r) >= 2)) == 2


def test_filters_and_disabled_endpoints(server: DevServer, http: httpx2.Client) -> None:
    with receiver() as wanted, receiver() as disabled:
        register(http, wanted.url, filter_types=["credit.manual_adjustment"])
        register(http, disabled.url, disabled=True)
        billing = Billing(server, http)
        billing.credit("cus_1", "10")
        assert billing.debit("cus_1", "1").status_code == 201
        items = settled(http, 1)
        assert [(i["event_type"], i["url"]) for i in items] == [
            ("credit.manual_adjustment", wanted.url)
        ]
        assert disabled.snapshot() == []


def test_a_failing_endpoint_is_retried_by_the_clock() -> None:
    with (
        DevServer(webhook_retry_delays=(600, 3600)) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
        receiver(statuses=[500, 503]) as hooks,
    ):
        _, secret = register(http, hooks.url, filter_types=["credit.added"])
        Billing(server, http).credit("cus_1", "10")
        [first] = wait_for(lambda: deliveries(http), lambda d: d and len(d[0]["attempts"]) == 1)
        assert first["status"] == "pending"
        assert first["attempts"][0]["status_code"] == 500
        server.clock.advance(seconds=599)
        server.clock.advance(seconds=1)
        [second] = wait_for(lambda: deliveries(http), lambda d: len(d[0]["attempts"]) == 2)
        assert second["attempts"][1]["status_code"] == 503
        server.clock.advance(hours=1)
        [done] = settled(http, 1)
        assert done["status"] == "delivered"
        assert [a["status_code"] for a in done["attempts"]] == [500, 503, 204]
        got = hooks.snapshot()
        assert len({r.headers["webhook-id"] for r in got}) == 1  # one message, three tries
        for request in got:
            verify_both(secret, request)


def test_a_delivery_fails_after_the_last_retry(hooks_down: str) -> None:
    with (
        DevServer(webhook_retry_delays=(0, 0)) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
    ):
        register(http, hooks_down)
        Billing(server, http).credit("cus_1", "10")
        [failed] = settled(http, 1)
        assert failed["status"] == "failed"
        assert len(failed["attempts"]) == 3
        assert all(a["status_code"] is None and a["error"] for a in failed["attempts"])


@pytest.fixture
def hooks_down() -> str:
    """The URL of a receiver that is no longer listening (connections are refused)."""
    with receiver() as gone:
        url = gone.url
    return url


def test_only_the_newest_finished_deliveries_are_kept(
    server: DevServer, http: httpx2.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dodo_ingest.devserver import _webhooks

    monkeypatch.setattr(_webhooks, "MAX_DELIVERIES_KEPT", 3)
    with receiver() as hooks:
        register(http, hooks.url, filter_types=["credit.added"])
        billing = Billing(server, http)
        for amount in ("1", "2", "3", "4", "5"):
            billing.credit("cus_1", amount)
            settled(http, 1)  # each is delivered before the next event
        items = settled(http, 3)
        assert [i["payload"]["data"]["amount"] for i in items] == ["3.00", "4.00", "5.00"]
        assert len(wait_for(hooks.snapshot, lambda r: len(r) >= 5)) == 5


def test_a_file_database_keeps_deliveries_and_pending_retries(tmp_path: Path) -> None:
    db = tmp_path / "hooks.db"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with receiver(statuses=[500]) as hooks:
        with (
            DevServer(db=db, webhook_retry_delays=(600,)) as server,
            httpx2.Client(base_url=server.base_url, headers=headers, timeout=10) as http,
        ):
            _, secret = register(http, hooks.url)
            billing = Billing(server, http)
            billing.credit("cus_1", "10")
            [before] = wait_for(lambda: deliveries(http), lambda d: d and d[0]["attempts"])
            assert before["status"] == "pending"
            assert before["attempts"][0]["status_code"] == 500
        with (
            DevServer(db=db, webhook_retry_delays=(600,)) as server,
            httpx2.Client(base_url=server.base_url, headers=headers, timeout=10) as http,
        ):
            [after] = deliveries(http)
            assert {k: after[k] for k in before if k != "url"} == {
                k: before[k] for k in before if k != "url"
            }
            server.clock.advance(minutes=10)  # the retry is due: the restarted server makes it
            [done] = settled(http, 1)
            assert done["status"] == "delivered"
            assert [a["status_code"] for a in done["attempts"]] == [500, 204]
        got = hooks.snapshot()
    assert [r.headers["webhook-id"] for r in got] == [before["message_id"]] * 2
    verify_both(secret, got[1])


def test_the_official_sdk_registers_an_endpoint_and_unwraps_every_credit_event() -> None:
    with (
        DevServer(api_key=API_KEY) as server,
        httpx2.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
        ) as http,
        DodoPayments(bearer_token=API_KEY, base_url=server.base_url, max_retries=0) as sdk,
        receiver() as hooks,
    ):
        created = sdk.webhooks.create(url=hooks.url)
        secret = sdk.webhooks.retrieve_secret(created.id).secret
        invoiced = Billing(
            server,
            http,
            overage_enabled=True,
            overage_behavior="invoice_at_billing",
            rollover_enabled=True,
            rollover_percentage=50,
        )
        server.start_credit_cycle(invoiced.id, "cus_1", "10")  # added
        invoiced.use("cus_1", "4")  # deducted
        server.clock.advance(days=30)  # rolled_over 3, rollover_forfeited 3, added 10
        assert invoiced.debit("cus_1", "1").status_code == 201  # manual_adjustment
        invoiced.use("cus_1", "14")  # deducted, balance_low, overage 2
        server.clock.advance(days=30)  # overage_charged 2, added 10
        forgiven = Billing(server, http, overage_enabled=True)
        server.start_credit_cycle(forgiven.id, "cus_2", "1")
        forgiven.use("cus_2", "2")
        soon = server.clock.now() + timedelta(days=1)
        forgiven.credit("cus_3", "5", expires_at=soon.isoformat())
        server.clock.advance(days=30)  # cus_2: overage_reset; cus_3: expired
        items = settled(http, 20)  # cus_1 13 (a third reset on day 90), cus_2 5, cus_3 2
        assert len(items) == 20
        assert {i["status"] for i in items} == {"delivered"}
        got = wait_for(hooks.snapshot, lambda r: len(r) >= len(items))
        unwrapped = [
            sdk.webhooks.unwrap(r.body.decode(), headers=r.headers, key=secret) for r in got
        ]
    assert {event.type for event in unwrapped} == {
        "credit.added",
        "credit.deducted",
        "credit.expired",
        "credit.rolled_over",
        "credit.rollover_forfeited",
        "credit.overage_charged",
        "credit.overage_reset",
        "credit.manual_adjustment",
        "credit.balance_low",
    }
    assert [type(e).__name__ for e in unwrapped][:2] == [
        "CreditAddedWebhookEvent",
        "CreditDeductedWebhookEvent",
    ]


def test_custom_headers_are_read_patched_and_sent(
    server: DevServer, http: httpx2.Client, openapi_spec: OpenAPI
) -> None:
    with (
        receiver() as hooks,
        DodoPayments(bearer_token=API_KEY, base_url=server.base_url, max_retries=0) as sdk,
    ):
        webhook, _ = register(
            http, hooks.url, headers={"x-team": "billing"}, filter_types=["credit.added"]
        )
        read = http.get(f"/webhooks/{webhook['id']}/headers")
        assert response_problems(openapi_spec, read) == []
        assert read.json() == {"headers": {"x-team": "billing"}, "sensitive": []}
        patched = http.patch(
            f"/webhooks/{webhook['id']}/headers", json={"headers": {"x-env": "dev"}}
        )
        assert response_problems(openapi_spec, patched) == []
        sdk.webhooks.headers.update(webhook["id"], headers={"x-team": "credits"})
        assert sdk.webhooks.headers.retrieve(webhook["id"]).headers == {
            "x-team": "credits",
            "x-env": "dev",
        }
        bad = http.patch(f"/webhooks/{webhook['id']}/headers", json={"headers": {"a": 1}})
        assert (bad.status_code, "headers" in bad.json()["message"]) == (422, True)
        assert http.get("/webhooks/wh_nope/headers").status_code == 404
        Billing(server, http).credit("cus_1", "1")
        [got] = wait_for(hooks.snapshot, lambda r: len(r) >= 1)
        assert (got.headers["x-team"], got.headers["x-env"]) == ("credits", "dev")


def test_headers_that_cannot_be_sent_are_422_and_never_stop_deliveries(
    server: DevServer, http: httpx2.Client
) -> None:
    with receiver() as hooks:
        healthy, _ = register(http, hooks.url, filter_types=["credit.added"])
        broken, _ = register(http, hooks.url, filter_types=["credit.added"])
        for value in ["caf\u00e9", "a\r\nx-evil: 1", "nul\x00"]:
            refused = http.patch(
                f"/webhooks/{broken['id']}/headers", json={"headers": {"x-team": value}}
            )
            assert refused.status_code == 422
            assert "headers.x-team" in refused.json()["message"]
        assert http.get(f"/webhooks/{broken['id']}/headers").json()["headers"] == {}
        # An endpoint stored with such a header (a database written before the check): its
        # attempts fail with the reason, and every other endpoint is still delivered to.
        store = server._running_store()
        stored = store.get_webhook(broken["id"])
        assert stored is not None
        store.save_webhook({**stored, "headers": {"x-team": "caf\u00e9"}})
        Billing(server, http).credit("cus_1", "10")
        got = wait_for(hooks.snapshot, lambda r: len(r) >= 1)
        assert len(got) == 1
        [bad] = wait_for(
            lambda: deliveries(http, webhook_id=broken["id"]),
            lambda d: len(d) == 1 and len(d[0]["attempts"]) >= 1,
        )
        assert "UnicodeEncodeError" in bad["attempts"][0]["error"]
        [good] = deliveries(http, webhook_id=healthy["id"])
        assert good["status"] == "delivered"
        Billing(server, http).credit("cus_2", "10")  # the delivery thread is still alive
        wait_for(hooks.snapshot, lambda r: len(r) >= 2)
