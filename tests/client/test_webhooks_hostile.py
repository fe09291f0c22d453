"""Hostile webhook input: only WebhookVerificationError or WebhookPayloadError come out."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers
from starlette.requests import Request

from dodo_ingest.client import WebhookVerificationError
from dodo_ingest.client.webhooks import (
    CreditAddedEvent,
    CreditBalanceLowEvent,
    GenericWebhookEvent,
    Webhook,
    WebhookPayloadError,
    parse_event,
)
from tests.client.test_webhooks import (
    BALANCE_LOW_DATA,
    NOW,
    SECRET,
    SECRET_BYTES,
    envelope,
    fixed_clock,
    headers_for,
    hmac_signature,
    ledger_data,
)

TYPED = (WebhookVerificationError, WebhookPayloadError)
SECRET_TEXTS = (SECRET.removeprefix("whsec_"), SECRET.removeprefix("whsec_")[:12])


def signed(body: bytes | str, *, msg_id: str = "msg_1") -> dict[str, str]:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return headers_for(raw, msg_id=msg_id)


def assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        for secret in SECRET_TEXTS:
            assert secret not in text


# --- body encoding ---------------------------------------------------------------------


@pytest.mark.parametrize("body", ["\ud800", '{"type": "x", "note": "\udfff"}'])
def test_str_body_with_a_lone_surrogate_is_a_verification_error(body: str) -> None:
    hook = fixed_clock()
    for call in (hook.verify, hook.unwrap):
        with pytest.raises(WebhookVerificationError, match="lone surrogate"):
            call(body, signed(body))


def test_sign_refuses_a_body_or_id_that_utf8_cannot_encode() -> None:
    hook = fixed_clock()
    with pytest.raises(WebhookVerificationError, match="UTF-8"):
        hook.sign("\ud800")
    with pytest.raises(WebhookVerificationError, match="UTF-8"):
        hook.sign(b"\xff")
    with pytest.raises(WebhookVerificationError, match="webhook_id"):
        hook.sign(b"{}", webhook_id="msg_\ud800")


def test_webhook_id_with_a_lone_surrogate_is_a_verification_error() -> None:
    body = b"{}"
    headers = {**headers_for(body), "webhook-id": "msg_\ud800"}
    with pytest.raises(WebhookVerificationError, match="webhook-id"):
        fixed_clock().verify(body, headers)


@pytest.mark.parametrize("body", [None, 12, 1.5, ["{}"], {"type": "x"}])
def test_body_of_another_type_is_a_verification_error(body: Any) -> None:
    with pytest.raises(WebhookVerificationError, match="bytes or str"):
        fixed_clock().unwrap(body, headers_for(b"{}"))


def test_bytearray_and_memoryview_bodies_verify_and_parse() -> None:
    body = envelope("credit.balance_low", BALANCE_LOW_DATA)
    hook = fixed_clock()
    for variant in (bytearray(body), memoryview(body)):
        event = hook.unwrap(variant, headers_for(body))  # type: ignore[arg-type]
        assert isinstance(event, CreditBalanceLowEvent)
    assert parse_event(bytearray(body)) == parse_event(body)  # type: ignore[arg-type]


# --- header shapes ---------------------------------------------------------------------


def test_bytes_header_values_are_decoded_as_latin1() -> None:
    body = b"{}"
    good = headers_for(body)
    hook = fixed_clock()
    hook.verify(body, {name: value.encode() for name, value in good.items()})
    hook.verify(body, {name.encode(): value.encode() for name, value in good.items()})
    hook.verify(body, {name.encode(): value for name, value in good.items()})


def test_latin1_bytes_id_verifies_like_starlette_headers() -> None:
    body = b'{"type": "x"}'
    msg_id = "msg_\u00e9"
    headers = headers_for(body, msg_id=msg_id)
    raw = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]
    event_from_raw = fixed_clock().unwrap(body, raw)
    event_from_starlette = fixed_clock().unwrap(body, Headers(raw=raw))
    assert event_from_raw.webhook_id == event_from_starlette.webhook_id == msg_id


def test_list_of_pairs_verifies() -> None:
    body = envelope("credit.added", ledger_data(transaction_type="credit_added"))
    pairs = list(headers_for(body, msg_id="msg_pairs").items())
    hook = fixed_clock()
    event = hook.unwrap(body, pairs)
    assert isinstance(event, CreditAddedEvent)
    assert event.webhook_id == "msg_pairs"
    hook.verify(body, tuple(pairs))
    hook.verify(body, iter(pairs))
    hook.verify(body, [[name.upper(), value] for name, value in pairs])  # type: ignore[misc]


def test_asgi_scope_headers_and_starlette_request_headers_verify() -> None:
    body = envelope("credit.balance_low", BALANCE_LOW_DATA)
    raw = [
        (b"host", b"example.test"),
        *((name.encode(), value.encode()) for name, value in headers_for(body).items()),
        (b"content-type", b"application/json"),
    ]
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": raw,
        "query_string": b"",
    }
    hook = fixed_clock()
    assert isinstance(hook.unwrap(body, scope["headers"]), CreditBalanceLowEvent)
    assert isinstance(hook.unwrap(body, Request(scope).headers), CreditBalanceLowEvent)


def test_werkzeug_headers_verify() -> None:
    datastructures = pytest.importorskip("werkzeug.datastructures")
    body = b"{}"
    good = headers_for(body)
    hook = fixed_clock()
    hook.verify(body, datastructures.Headers(good))
    environ = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in good.items()}
    hook.verify(body, datastructures.EnvironHeaders(environ))


@pytest.mark.parametrize(
    "headers",
    [
        None,
        42,
        "webhook-id: msg_1",
        b"webhook-id: msg_1",
        [("webhook-id",)],
        [("webhook-id", "msg_1", "extra")],
        ["ab"],
        [1, 2],
        [(1, "msg_1")],
        [(None, None)],
        {1: "x"},
        {"webhook-id": 5, "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"},
        {"webhook-id": None, "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"},
    ],
)
def test_headers_of_an_unusable_shape_are_a_verification_error(headers: Any) -> None:
    with pytest.raises(WebhookVerificationError, match="header"):
        fixed_clock().verify(b"{}", headers)


def test_headers_whose_items_method_needs_arguments_are_a_verification_error() -> None:
    class Odd:
        def items(self, required: int) -> list[tuple[str, str]]:
            return []

    with pytest.raises(WebhookVerificationError, match="mapping"):
        fixed_clock().verify(b"{}", Odd())  # type: ignore[arg-type]


def test_unrelated_headers_of_any_type_are_ignored() -> None:
    body = b"{}"
    headers: dict[str, Any] = {**headers_for(body), "content-length": 2, "x-none": None}
    fixed_clock().verify(body, headers)


def test_repeated_header_with_different_values_is_refused() -> None:
    body = b"{}"
    pairs = list(headers_for(body).items())
    hook = fixed_clock()
    hook.verify(body, [*pairs, ("Webhook-Id", "msg_1")])
    with pytest.raises(WebhookVerificationError, match="'webhook-id' appears more than once"):
        hook.verify(body, [*pairs, ("Webhook-Id", "msg_2")])
    with pytest.raises(WebhookVerificationError, match="webhook-signature"):
        hook.verify(body, [("webhook-signature", "v1,AAAA"), *pairs])


def test_undecodable_bytes_in_headers_do_not_verify() -> None:
    body = b"{}"
    good: dict[str, str | bytes] = dict(headers_for(body))
    hook = fixed_clock()
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        hook.verify(body, {**good, "webhook-id": b"\xff\xfe\x00"})
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        hook.verify(body, {**good, "webhook-signature": b"v1,\xff\xfe"})
    with pytest.raises(WebhookVerificationError, match="webhook-timestamp"):
        hook.verify(body, {**good, "webhook-timestamp": b"\xb2\xb3"})


def test_error_message_cuts_a_long_webhook_id() -> None:
    body = b"{}"
    headers = {**headers_for(body), "webhook-id": "m" * 100_000}
    with pytest.raises(WebhookVerificationError, match="no v1 signature") as info:
        fixed_clock().verify(body, headers)
    assert len(str(info.value)) < 300


def test_timestamp_beyond_datetime_range_is_a_verification_error() -> None:
    body = b"{}"
    huge = 10**14
    headers = {**headers_for(body), "webhook-timestamp": str(huge)}
    hook = Webhook(SECRET, tolerance=1e300, clock=lambda: NOW)
    with pytest.raises(WebhookVerificationError, match="out of range"):
        hook.verify(body, headers)


# --- nesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"type": "x", "data": ' + b"[" * 100_000,
        b"[" * 100_000,
    ],
    ids=["arrays", "objects", "unclosed-in-envelope", "unclosed"],
)
def test_deeply_nested_body_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError, match="nested") as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == "(body)"
    with pytest.raises(WebhookPayloadError, match="nested"):
        parse_event(body.decode())


def nested_generic(depth: int) -> bytes:
    """A generic event whose JSON nests ``depth`` levels (the envelope counts as one)."""
    inner = depth - 2
    return b'{"type": "x", "data": {"a": ' + b"[" * inner + b"]" * inner + b"}}"


def test_nesting_limit_boundary() -> None:
    assert isinstance(parse_event(nested_generic(64)), GenericWebhookEvent)
    with pytest.raises(WebhookPayloadError, match="more than 64 levels"):
        parse_event(nested_generic(65))


def test_brackets_inside_strings_do_not_count() -> None:
    note = '\\"' + "[" * 1000 + "{" * 1000 + "\\\\"
    body = ('{"type": "x", "data": {"note": "' + note + '"}}').encode()
    event = fixed_clock().unwrap(body, headers_for(body))
    assert isinstance(event, GenericWebhookEvent)
    assert event.data["note"] == '"' + "[" * 1000 + "{" * 1000 + "\\"


def test_unterminated_strings_and_escaped_quotes_are_payload_errors() -> None:
    for body in ('\\"' * 20_000 + "[" * 100, '"' + "\\" * 30_001, '["\\' + '"[' * 10_000):
        with pytest.raises(WebhookPayloadError):
            parse_event(body)


def test_recursion_error_from_the_decoder_is_a_payload_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def overflowing(*args: object, **kwargs: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(json, "loads", overflowing)
    with pytest.raises(WebhookPayloadError, match="nested too deeply"):
        parse_event(b'{"type": "x"}')


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "1e99999999999999999999",
        "1" + "0" * 30,
        "0." + "0" * 30 + "1",
        10**30,
        -(10**40),
        pytest.param(10**5000, id="10**5000"),
        float("inf"),
        "Infinity",
        "-inf",
        "sNaN",
        "1_000",
        "\u0661\u0662",
        " 12",
        "0x10",
        "1" * 101,
    ],
)
def test_impossible_amount_is_a_payload_error(amount: Any) -> None:
    data = ledger_data(amount=amount)
    with pytest.raises(WebhookPayloadError) as info:
        parse_event(
            {
                "type": "credit.added",
                "business_id": "b",
                "timestamp": "2026-11-25T08:00:00Z",
                "data": data,
            }
        )
    assert info.value.field == "data.amount"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"1e999999999", "(body)"),
        (b"-1e999999999", "(body)"),
        (b"NaN", "(body)"),
        (b"-Infinity", "(body)"),
        pytest.param(b"9" * 5000, "(body)", id="5000-digit-int"),
        (b'"1e999999999"', "data.amount"),
        (b"1" + b"0" * 30, "data.amount"),
    ],
)
def test_impossible_amount_in_a_signed_body_is_a_payload_error(raw: bytes, field: str) -> None:
    body = envelope("credit.deducted", ledger_data()).replace(b'"12.345678"', raw)
    assert raw in body
    with pytest.raises(WebhookPayloadError) as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == field


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("9" * 30, Decimal("9" * 30)),
        ("-" + "9" * 30, Decimal("-" + "9" * 30)),
        ("0." + "0" * 29 + "1", Decimal("1e-30")),
        ("1E+29", Decimal("1e29")),
        (".5", Decimal("0.5")),
        ("12.", Decimal("12")),
        (12, Decimal(12)),
        (12.5, Decimal("12.5")),
    ],
)
def test_amount_at_the_limits_is_accepted(amount: Any, expected: Decimal) -> None:
    event = parse_event(envelope("credit.added", ledger_data(amount=amount)))
    assert isinstance(event, CreditAddedEvent)
    assert event.data.amount == expected
    assert event.data.balance_before - event.data.amount == Decimal(100) - expected


@pytest.mark.parametrize(
    "snippet",
    [b"1e999999999", b"NaN", b"Infinity", pytest.param(b"9" * 5000, id="5000-digit-int")],
)
def test_unrepresentable_numbers_anywhere_in_the_body_are_payload_errors(snippet: bytes) -> None:
    body = b'{"type": "payment.succeeded", "data": {"total": ' + snippet + b"}}"
    with pytest.raises(WebhookPayloadError) as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == "(body)"


@pytest.mark.parametrize("percent", [-1, 101, 10**30])
def test_threshold_percent_out_of_range_is_a_payload_error(percent: int) -> None:
    body = envelope("credit.balance_low", {**BALANCE_LOW_DATA, "threshold_percent": percent})
    with pytest.raises(WebhookPayloadError, match="from 0 to 100") as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == "data.threshold_percent"


@pytest.mark.parametrize("percent", [0, 100])
def test_threshold_percent_bounds_are_accepted(percent: int) -> None:
    body = envelope("credit.balance_low", {**BALANCE_LOW_DATA, "threshold_percent": percent})
    event = fixed_clock().unwrap(body, headers_for(body))
    assert isinstance(event, CreditBalanceLowEvent)
    assert event.data.threshold_percent == percent


def test_escaped_lone_surrogate_in_a_text_field_is_a_payload_error() -> None:
    body = envelope("credit.added", ledger_data(customer_id="cus_\ud800"))
    assert b"\\ud800" in body
    with pytest.raises(WebhookPayloadError, match="Unicode") as info:
        fixed_clock().unwrap(body, headers_for(body))
    assert info.value.field == "data.customer_id"


def test_new_error_messages_hold_no_secret() -> None:
    hook = fixed_clock()
    deep = b"[" * 1000
    amount = envelope("credit.added", ledger_data(amount="1e999999999"))
    calls: list[Callable[[], object]] = [
        lambda: hook.verify("\ud800", signed(b"x")),
        lambda: hook.verify(b"{}", [("webhook-id", "a"), ("webhook-id", "b")]),
        lambda: hook.verify(b"{}", 42),  # type: ignore[arg-type]
        lambda: hook.verify(None, headers_for(b"{}")),  # type: ignore[arg-type]
        lambda: hook.verify(b"{}", {**headers_for(b"{}"), "webhook-id": "\ud800"}),
        lambda: hook.unwrap(deep, headers_for(deep)),
        lambda: hook.unwrap(amount, headers_for(amount)),
    ]
    for call in calls:
        with pytest.raises(TYPED) as info:
            call()
        assert_no_secret(info.value)


# --- properties ------------------------------------------------------------------------

ODD_CHARACTERS = ["\ud800", "\udfff", "[", "{", "]", '"', "\\", "\x00", "\u00e9", "\u0661"]
hostile_text = st.lists(
    st.one_of(st.characters(codec=None, exclude_categories=()), st.sampled_from(ODD_CHARACTERS)),
    max_size=40,
).map("".join)
hostile_bytes = st.one_of(
    st.binary(max_size=60), hostile_text.map(lambda text: text.encode("utf-8", "surrogatepass"))
)
header_part = st.one_of(
    hostile_text,
    hostile_bytes,
    st.sampled_from(["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE", b"webhook-id"]),
    st.sampled_from([None, 0, 1.5, ("a", "b")]),
)
hostile_headers = st.one_of(
    st.dictionaries(header_part, header_part, max_size=5),
    st.lists(st.tuples(header_part, header_part), max_size=5),
    st.lists(st.one_of(st.tuples(header_part), header_part), max_size=3),
    st.sampled_from([None, 0, "webhook-id", b"webhook-id", object()]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(hostile_text, children, max_size=4)
    ),
    max_leaves=20,
)
RAW_NUMBERS = [
    "1e999999999",
    "-1e999999999",
    "NaN",
    "Infinity",
    "9" * 4301,
    '"1e999999999"',
    '"\\ud800"',
    "[" * 70 + "]" * 70,
    "[" * 5000,
]
ledger_fields = st.sampled_from(sorted(ledger_data()))
balance_low_fields = st.sampled_from(sorted(BALANCE_LOW_DATA))
EVENT_TYPES = ["credit.added", "credit.deducted", "credit.balance_low", "payment.succeeded"]


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes | str:
    """Credit events with one field replaced, raw JSON snippets, or arbitrary text/bytes."""
    kind = draw(st.sampled_from(["field", "raw", "value", "text", "bytes"]))
    if kind in ("field", "raw"):
        event_type = draw(st.sampled_from(EVENT_TYPES))
        if event_type == "credit.balance_low":
            data: dict[str, Any] = dict(BALANCE_LOW_DATA)
            name = draw(balance_low_fields)
        else:
            data = ledger_data()
            name = draw(ledger_fields)
        replacement = st.one_of(st.just(data[name]), json_values)
        data[name] = draw(replacement) if kind == "field" else "__RAW__"
        text = json.dumps(
            {
                "type": event_type,
                "business_id": "b",
                "timestamp": "2026-11-25T08:00:00Z",
                "data": data,
            }
        )
        if kind == "raw":
            text = text.replace('"__RAW__"', draw(st.sampled_from(RAW_NUMBERS)))
    elif kind == "value":
        text = json.dumps(draw(json_values))
    elif kind == "text":
        return draw(hostile_text)
    else:
        return draw(hostile_bytes)
    return text if draw(st.booleans()) else text.encode("utf-8", "surrogatepass")


def call_typed(call: Callable[[], object]) -> None:
    try:
        call()
    except TYPED as exc:
        assert_no_secret(exc)


PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY_SETTINGS
@given(body=st.one_of(hostile_bodies(), st.sampled_from([None, 3, ["x"]])), headers=hostile_headers)
def test_arbitrary_bodies_and_headers_raise_only_typed_errors(body: Any, headers: Any) -> None:
    hook = fixed_clock()
    call_typed(lambda: hook.verify(body, headers))
    call_typed(lambda: hook.unwrap(body, headers))
    call_typed(lambda: parse_event(body))


@PROPERTY_SETTINGS
@given(body=hostile_bodies(), shape=st.sampled_from(["dict", "bytes", "pairs", "upper"]))
def test_signed_hostile_bodies_raise_only_typed_errors(body: bytes | str, shape: str) -> None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    good = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": hmac_signature(SECRET_BYTES, "msg_1", NOW, raw),
    }
    headers: Any = {
        "dict": good,
        "bytes": [(name.encode(), value.encode()) for name, value in good.items()],
        "pairs": list(good.items()),
        "upper": {name.upper(): value for name, value in good.items()},
    }[shape]
    hook = fixed_clock()
    call_typed(lambda: hook.unwrap(body, headers))
    call_typed(lambda: parse_event(body))


# Values a decoded body cannot hold but a caller's own mapping can.
mapping_values = st.one_of(
    json_values,
    st.sampled_from([10**5000, -(10**31), float("nan"), float("-inf"), b"12", Decimal("1e999")]),
)


@PROPERTY_SETTINGS
@given(
    data=st.dictionaries(
        st.sampled_from(sorted({*ledger_data(), *BALANCE_LOW_DATA})), mapping_values, max_size=6
    )
)
def test_parse_event_of_arbitrary_mappings_raises_only_typed_errors(data: dict[str, Any]) -> None:
    for event_type in EVENT_TYPES:
        base = BALANCE_LOW_DATA if event_type == "credit.balance_low" else ledger_data()
        payload = {
            "type": event_type,
            "business_id": "b",
            "timestamp": "2026-11-25T08:00:00Z",
            "data": {**base, **data},
        }
        call_typed(partial(parse_event, payload))
