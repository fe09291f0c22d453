"""Webhook verification (Standard Webhooks) and typed credit event parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
import pytest
import standardwebhooks
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dodo_ingest.client import ConfigurationError, WebhookVerificationError
from dodo_ingest.client.webhooks import (
    CreditAddedEvent,
    CreditBalanceLow,
    CreditBalanceLowEvent,
    CreditDeductedEvent,
    CreditExpiredEvent,
    CreditLedgerEvent,
    CreditManualAdjustmentEvent,
    CreditOverageChargedEvent,
    CreditOverageResetEvent,
    CreditRolledOverEvent,
    CreditRolloverForfeitedEvent,
    CreditTransaction,
    GenericWebhookEvent,
    Webhook,
    WebhookPayloadError,
    parse_event,
)

# The published Standard Webhooks test vector (the same one the reference libraries test).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET_BYTES = b"dodo-ingest test key, 32 bytes!!"
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
NOW = 1_764_000_000


def fixed_clock(now: float = NOW) -> Webhook:
    return Webhook(SECRET, clock=lambda: now)


def hmac_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """Independent computation of a v1 signature (no dodo_ingest, no standardwebhooks)."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_for(body: bytes, *, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": hmac_signature(SECRET_BYTES, msg_id, timestamp, body),
    }


def ledger_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "cle_1",
        "amount": "12.345678",
        "balance_after": "87.654322",
        "balance_before": "100",
        "brand_id": "brand_1",
        "business_id": "bus_1",
        "created_at": "2026-11-25T08:00:00.123Z",
        "credit_entitlement_id": "cent_1",
        "customer_id": "cus_1",
        "is_credit": False,
        "metadata": {"model": "gpt-5", "tokens": 1200},
        "overage_after": "0",
        "overage_before": "0",
        "transaction_type": "credit_deducted",
        "description": None,
        "grant_id": "grant_1",
        "reference_id": None,
        "reference_type": None,
    }
    data.update(overrides)
    return data


def envelope(event_type: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "business_id": "bus_1",
            "type": event_type,
            "timestamp": "2026-11-25T08:00:01Z",
            "data": data,
        }
    ).encode()


BALANCE_LOW_DATA = {
    "available_balance": "4.50",
    "brand_id": "brand_1",
    "credit_entitlement_id": "cent_1",
    "credit_entitlement_name": "API credits",
    "customer_id": "cus_1",
    "subscription_credits_amount": "100.00",
    "subscription_id": "sub_1",
    "threshold_amount": "5.00",
    "threshold_percent": 5,
}


# --- signatures ------------------------------------------------------------------------


def test_published_vector_verifies() -> None:
    hook = Webhook(VECTOR_SECRET, clock=lambda: VECTOR_TIMESTAMP)
    hook.verify(
        VECTOR_BODY,
        {
            "webhook-id": VECTOR_ID,
            "webhook-timestamp": str(VECTOR_TIMESTAMP),
            "webhook-signature": VECTOR_SIGNATURE,
        },
    )
    key = base64.b64decode(VECTOR_SECRET.removeprefix("whsec_"))
    assert hmac_signature(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_signed_by_reference_library_verifies() -> None:
    body = envelope("credit.added", ledger_data(transaction_type="credit_added"))
    when = datetime.fromtimestamp(NOW, tz=UTC)
    signature = standardwebhooks.Webhook(SECRET).sign("msg_ref", when, body.decode())
    headers = {
        "webhook-id": "msg_ref",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    event = fixed_clock().unwrap(body, headers)
    assert isinstance(event, CreditAddedEvent)
    assert event.webhook_id == "msg_ref"


def test_sign_matches_independent_hmac() -> None:
    body = b'{"type":"credit.added"}'
    headers = fixed_clock().sign(body, webhook_id="msg_x")
    assert headers == {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(NOW),
        "webhook-signature": hmac_signature(SECRET_BYTES, "msg_x", NOW, body),
    }
    reference = standardwebhooks.Webhook(SECRET).sign(
        "msg_x", datetime.fromtimestamp(NOW, tz=UTC), body.decode()
    )
    assert headers["webhook-signature"] == reference


def test_str_body_and_bytes_body_verify_alike() -> None:
    body = '{"type":"payment.succeeded","note":"caf\u00e9"}'
    headers = headers_for(body.encode())
    hook = fixed_clock()
    hook.verify(body, headers)
    hook.verify(body.encode(), headers)


def test_header_names_are_case_insensitive() -> None:
    body = b"{}"
    headers = {name.upper(): value for name, value in headers_for(body).items()}
    fixed_clock().verify(body, headers)
    mixed = dict(
        zip(["Webhook-Id", "WEBHOOK-timestamp", "webhook-Signature"], headers.values(), strict=True)
    )
    fixed_clock().verify(body, mixed)


@pytest.mark.parametrize(
    "signature_header",
    [
        "v1,{good}",
        "v1,{wrong} v1,{good}",
        "v1,{good} v1,{wrong}",
        "v1a,{good_b64} v1,{wrong}  v1,{good}",
        "garbage v1,not-base64!! v2,{good} v1,{good}",
    ],
)
def test_any_matching_v1_signature_in_the_header_passes(signature_header: str) -> None:
    body = b'{"a":1}'
    good = hmac_signature(SECRET_BYTES, "msg_1", NOW, body).removeprefix("v1,")
    wrong = hmac_signature(b"other key", "msg_1", NOW, body).removeprefix("v1,")
    header = signature_header.format(good=good, wrong=wrong, good_b64=good)
    headers = {**headers_for(body), "webhook-signature": header}
    fixed_clock().verify(body, headers)


@pytest.mark.parametrize(
    "signature_header",
    ["v1,{wrong}", "v1,{wrong} v1,{wrong2}", "v2,{good}", "v1a,{good}", "{good}", ",", "v1,"],
)
def test_no_matching_v1_signature_fails(signature_header: str) -> None:
    body = b'{"a":1}'
    good = hmac_signature(SECRET_BYTES, "msg_1", NOW, body).removeprefix("v1,")
    wrong = hmac_signature(b"other key", "msg_1", NOW, body).removeprefix("v1,")
    wrong2 = hmac_signature(SECRET_BYTES, "msg_2", NOW, body).removeprefix("v1,")
    header = signature_header.format(good=good, wrong=wrong, wrong2=wrong2)
    headers = {**headers_for(body), "webhook-signature": header}
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        fixed_clock().verify(body, headers)


def test_tampered_body_fails() -> None:
    body = envelope("credit.deducted", ledger_data())
    headers = headers_for(body)
    tampered = body.replace(b'"12.345678"', b'"0.000001"')
    assert tampered != body
    with pytest.raises(WebhookVerificationError):
        fixed_clock().unwrap(tampered, headers)
    with pytest.raises(WebhookVerificationError):
        fixed_clock().verify(body + b" ", headers)


def test_tampered_id_or_timestamp_fails() -> None:
    body = b"{}"
    headers = headers_for(body)
    with pytest.raises(WebhookVerificationError):
        fixed_clock().verify(body, {**headers, "webhook-id": "msg_2"})
    with pytest.raises(WebhookVerificationError):
        fixed_clock().verify(body, {**headers, "webhook-timestamp": str(NOW + 1)})


def test_wrong_secret_fails() -> None:
    body = b"{}"
    other = Webhook("whsec_" + base64.b64encode(b"another key").decode(), clock=lambda: NOW)
    with pytest.raises(WebhookVerificationError):
        other.verify(body, headers_for(body))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_or_empty_header_fails_naming_it(missing: str) -> None:
    body = b"{}"
    headers = headers_for(body)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing required header '{missing}'"):
        fixed_clock().verify(body, headers)
    with pytest.raises(WebhookVerificationError, match=missing):
        fixed_clock().verify(body, {**headers, missing: "  "})


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False), (-86400, False)],
)
def test_timestamp_tolerance_boundaries(offset: int, ok: bool) -> None:
    body = b"{}"
    headers = headers_for(body, timestamp=NOW + offset)
    hook = fixed_clock()
    if ok:
        hook.verify(body, headers)
    else:
        word = "past" if offset < 0 else "future"
        with pytest.raises(WebhookVerificationError, match=f"300 s in the {word}"):
            hook.verify(body, headers)


def test_fractional_now_at_the_edge() -> None:
    body = b"{}"
    headers = headers_for(body, timestamp=NOW)
    Webhook(SECRET, clock=lambda: NOW + 300.0).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="past"):
        Webhook(SECRET, clock=lambda: NOW + 300.001).verify(body, headers)


def test_custom_tolerance() -> None:
    body = b"{}"
    headers = headers_for(body, timestamp=NOW - 10)
    Webhook(SECRET, tolerance=10, clock=lambda: NOW).verify(body, headers)
    with pytest.raises(WebhookVerificationError, match="5 s in the past"):
        Webhook(SECRET, tolerance=5, clock=lambda: NOW).verify(body, headers)


def test_default_clock_is_real_time() -> None:
    hook = Webhook(SECRET)
    body = b"{}"
    hook.verify(body, hook.sign(body))
    with pytest.raises(WebhookVerificationError, match="past"):
        hook.verify(body, hook.sign(body, timestamp=VECTOR_TIMESTAMP))


@pytest.mark.parametrize("timestamp", ["abc", "1.5e9", "-1", "", "\u00b2", "9" * 40, "nan"])
def test_malformed_timestamp_fails(timestamp: str) -> None:
    body = b"{}"
    headers = {**headers_for(body), "webhook-timestamp": timestamp}
    with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
        fixed_clock().verify(body, headers)


def test_non_utf8_body_fails_verification() -> None:
    body = b"\xff\xfe{}"
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": hmac_signature(SECRET_BYTES, "msg_1", NOW, body),
    }
    with pytest.raises(WebhookVerificationError, match="UTF-8"):
        fixed_clock().verify(body, headers)


# --- secrets ---------------------------------------------------------------------------


def test_secret_forms_agree() -> None:
    body = b"{}"
    headers = headers_for(body)
    bare = SECRET.removeprefix("whsec_")
    for secret in (SECRET, bare, bare.rstrip("="), SECRET_BYTES, f"  {SECRET}\n"):
        Webhook(secret, clock=lambda: NOW).verify(body, headers)


def test_secret_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_WEBHOOK_KEY", SECRET)
    body = b"{}"
    Webhook(clock=lambda: NOW).verify(body, headers_for(body))


def test_argument_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DODO_PAYMENTS_WEBHOOK_KEY", "whsec_" + base64.b64encode(b"x").decode())
    body = b"{}"
    Webhook(SECRET, clock=lambda: NOW).verify(body, headers_for(body))


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_missing_secret_is_a_configuration_error(
    secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DODO_PAYMENTS_WEBHOOK_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="DODO_PAYMENTS_WEBHOOK_KEY"):
        Webhook(secret)


def test_undecodable_secret_is_a_configuration_error_without_the_secret() -> None:
    bad = "whsec_not*base64*secret-value"
    with pytest.raises(ConfigurationError) as info:
        Webhook(bad)
    assert "base64" in str(info.value)
    assert "not*base64" not in str(info.value)
    with pytest.raises(ConfigurationError, match="empty"):
        Webhook(b"")
    with pytest.raises(ConfigurationError, match="empty"):
        Webhook("whsec_")


@pytest.mark.parametrize("tolerance", [-1.0, float("nan"), float("inf")])
def test_bad_tolerance(tolerance: float) -> None:
    with pytest.raises(ConfigurationError, match="tolerance"):
        Webhook(SECRET, tolerance=tolerance)


def test_secret_never_in_repr_or_errors() -> None:
    encoded = SECRET.removeprefix("whsec_")
    hook = fixed_clock()
    texts = [repr(hook), str(hook)]
    body = envelope("credit.deducted", ledger_data())
    good = headers_for(body)
    cases: list[tuple[bytes, dict[str, str]]] = [
        (body + b"x", good),
        (body, {**good, "webhook-timestamp": str(NOW - 1000)}),
        (body, {**good, "webhook-timestamp": str(NOW + 1000)}),
        (body, {**good, "webhook-timestamp": "x"}),
        (body, {k: v for k, v in good.items() if k != "webhook-id"}),
        (b"\xff", good),
    ]
    for case_body, case_headers in cases:
        with pytest.raises(WebhookVerificationError) as info:
            hook.verify(case_body, case_headers)
        texts += [str(info.value), repr(info.value)]
    with pytest.raises(WebhookPayloadError) as payload_info:
        hook.unwrap(b"not json", headers_for(b"not json"))
    texts += [str(payload_info.value), repr(payload_info.value)]
    assert len(texts) == 16
    for text in texts:
        assert encoded not in text
        assert encoded[:12] not in text
        assert SECRET_BYTES.decode() not in text


def test_missing_standardwebhooks_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "standardwebhooks", None)
    hook = fixed_clock()
    body = b"{}"
    with pytest.raises(ConfigurationError, match=r"pip install 'dodo-ingest\[webhooks\]'"):
        hook.verify(body, headers_for(body))


def test_module_import_does_not_import_standardwebhooks() -> None:
    import subprocess

    code = "import sys, dodo_ingest.client.webhooks; print('standardwebhooks' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# --- typed events ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "event_class", "transaction_type", "is_credit"),
    [
        ("credit.added", CreditAddedEvent, "credit_added", True),
        ("credit.deducted", CreditDeductedEvent, "credit_deducted", False),
        ("credit.expired", CreditExpiredEvent, "credit_expired", False),
        ("credit.rolled_over", CreditRolledOverEvent, "credit_rolled_over", True),
        ("credit.rollover_forfeited", CreditRolloverForfeitedEvent, "rollover_forfeited", False),
        ("credit.overage_charged", CreditOverageChargedEvent, "overage_charged", False),
        ("credit.overage_reset", CreditOverageResetEvent, "overage_reset", True),
        ("credit.manual_adjustment", CreditManualAdjustmentEvent, "manual_adjustment", True),
    ],
)
def test_ledger_events_parse_with_decimals(
    event_type: str, event_class: type[CreditLedgerEvent], transaction_type: str, is_credit: bool
) -> None:
    body = envelope(
        event_type,
        ledger_data(
            transaction_type=transaction_type,
            is_credit=is_credit,
            overage_after="0.10000000000000000001",
        ),
    )
    event = fixed_clock().unwrap(body, headers_for(body, msg_id="msg_42"))
    assert type(event) is event_class
    assert isinstance(event, CreditLedgerEvent)
    assert event.type == event_type
    assert event.business_id == "bus_1"
    assert event.webhook_id == "msg_42"
    assert event.timestamp == datetime(2026, 11, 25, 8, 0, 1, tzinfo=UTC)
    assert event.data == CreditTransaction(
        id="cle_1",
        business_id="bus_1",
        brand_id="brand_1",
        customer_id="cus_1",
        credit_entitlement_id="cent_1",
        transaction_type=transaction_type,
        is_credit=is_credit,
        amount=Decimal("12.345678"),
        balance_before=Decimal("100"),
        balance_after=Decimal("87.654322"),
        overage_before=Decimal("0"),
        overage_after=Decimal("0.10000000000000000001"),
        created_at=datetime(2026, 11, 25, 8, 0, 0, 123000, tzinfo=UTC),
        metadata={"model": "gpt-5", "tokens": 1200},
        grant_id="grant_1",
    )
    assert isinstance(event.data.amount, Decimal)
    assert event.data.balance_before - event.data.amount == event.data.balance_after


def test_balance_low_event_parses_with_decimals() -> None:
    body = envelope("credit.balance_low", BALANCE_LOW_DATA)
    event = fixed_clock().unwrap(body, headers_for(body))
    assert isinstance(event, CreditBalanceLowEvent)
    assert event.type == "credit.balance_low"
    assert event.data == CreditBalanceLow(
        customer_id="cus_1",
        credit_entitlement_id="cent_1",
        credit_entitlement_name="API credits",
        brand_id="brand_1",
        subscription_id="sub_1",
        available_balance=Decimal("4.50"),
        subscription_credits_amount=Decimal("100.00"),
        threshold_amount=Decimal("5.00"),
        threshold_percent=5,
    )
    assert str(event.data.available_balance) == "4.50"


def test_unknown_type_is_a_generic_event() -> None:
    payload = {
        "business_id": "bus_1",
        "type": "payment.succeeded",
        "timestamp": "2026-11-25T08:00:01+00:00",
        "data": {"payment_id": "pay_1", "total_amount": 1999},
    }
    body = json.dumps(payload).encode()
    event = fixed_clock().unwrap(body, headers_for(body, msg_id="msg_7"))
    assert event == GenericWebhookEvent(
        type="payment.succeeded",
        data={"payment_id": "pay_1", "total_amount": 1999},
        business_id="bus_1",
        timestamp=datetime(2026, 11, 25, 8, 0, 1, tzinfo=UTC),
        webhook_id="msg_7",
    )


def test_generic_event_tolerates_missing_envelope_fields() -> None:
    event = parse_event({"type": "credit.something_new", "timestamp": "yesterday"})
    assert event == GenericWebhookEvent(type="credit.something_new", data={})


def test_parse_event_accepts_bytes_str_and_mappings() -> None:
    body = envelope("credit.balance_low", BALANCE_LOW_DATA)
    assert parse_event(body) == parse_event(body.decode()) == parse_event(json.loads(body))
    assert parse_event(body, webhook_id="msg_9").webhook_id == "msg_9"


def test_ledger_event_optional_fields_and_extra_fields() -> None:
    data = ledger_data(description="top-up", reference_id="ref_1", reference_type="payment")
    data["metadata"] = None
    data["brand_new_field"] = {"x": 1}
    event = parse_event(envelope("credit.added", data))
    assert isinstance(event, CreditAddedEvent)
    assert event.data.metadata == {}
    assert event.data.description == "top-up"
    assert event.data.reference_id == "ref_1"
    assert event.data.reference_type == "payment"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "(body)"),
        (b"[1, 2]", "(body)"),
        (b'{"data": {}}', "type"),
        (envelope("credit.added", ledger_data(amount="twelve")), "data.amount"),
        (envelope("credit.added", ledger_data(amount="NaN")), "data.amount"),
        (envelope("credit.added", ledger_data(amount=True)), "data.amount"),
        (envelope("credit.added", ledger_data(customer_id=None)), "data.customer_id"),
        (envelope("credit.added", ledger_data(is_credit="yes")), "data.is_credit"),
        (envelope("credit.added", ledger_data(created_at="soon")), "data.created_at"),
        (envelope("credit.added", ledger_data(metadata=[1])), "data.metadata"),
        (
            envelope("credit.balance_low", {**BALANCE_LOW_DATA, "threshold_percent": "5"}),
            "data.threshold_percent",
        ),
        (
            envelope(
                "credit.balance_low",
                {k: v for k, v in BALANCE_LOW_DATA.items() if k != "available_balance"},
            ),
            "data.available_balance",
        ),
        (b'{"type": "credit.deducted", "business_id": "b", "timestamp": "x"}', "timestamp"),
        (
            b'{"type": "credit.deducted", "business_id": "b", '
            b'"timestamp": "2026-11-25T08:00:00Z", "data": 3}',
            "data",
        ),
    ],
)
def test_malformed_payload_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(WebhookPayloadError) as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_bad_signature_is_checked_before_parsing() -> None:
    body = b"not json"
    headers = {**headers_for(body), "webhook-signature": "v1,AAAA"}
    with pytest.raises(WebhookVerificationError):
        fixed_clock().unwrap(body, headers)


# --- over real HTTP --------------------------------------------------------------------


def make_app(hook: Webhook) -> Starlette:
    async def receive(request: Request) -> JSONResponse:
        try:
            event = hook.unwrap(await request.body(), request.headers)
        except WebhookVerificationError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if isinstance(event, CreditDeductedEvent):
            return JSONResponse(
                {"type": event.type, "amount": str(event.data.amount), "id": event.webhook_id}
            )
        return JSONResponse({"type": event.type})

    return Starlette(routes=[Route("/webhooks/dodo", receive, methods=["POST"])])


@pytest.fixture
def server_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(make_app(Webhook(SECRET)), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        thread.join(0.01)
    assert server.started, "uvicorn did not start within 5 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive()


def test_starlette_endpoint_verifies_a_posted_webhook(server_url: str) -> None:
    sender = Webhook(SECRET)
    body = envelope("credit.deducted", ledger_data())
    url = f"{server_url}/webhooks/dodo"
    with httpx2.Client(timeout=10) as client:
        headers = {**sender.sign(body, webhook_id="msg_http"), "content-type": "application/json"}
        ok = client.post(url, content=body, headers=headers)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {"type": "credit.deducted", "amount": "12.345678", "id": "msg_http"}

        forged = client.post(url, content=body.replace(b"12.345678", b"0.01"), headers=headers)
        assert forged.status_code == 400
        assert "no v1 signature" in forged.json()["error"]

        stale = {
            **sender.sign(body, timestamp=VECTOR_TIMESTAMP),
            "content-type": "application/json",
        }
        assert client.post(url, content=body, headers=stale).status_code == 400
