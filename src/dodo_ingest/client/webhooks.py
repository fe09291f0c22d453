"""Verify Dodo Payments webhooks and parse them into typed credit events.

Dodo Payments signs webhooks with the `Standard Webhooks <https://www.standardwebhooks.com>`_
scheme: the ``webhook-signature`` header holds one or more space-separated ``v1,<base64>``
signatures, each an HMAC-SHA256 of ``"{webhook-id}.{webhook-timestamp}.{body}"`` keyed with the
base64-decoded ``whsec_...`` secret. :class:`Webhook` checks the three headers, refuses
timestamps more than five minutes away from now, computes the expected signature with the
``standardwebhooks`` package (the scheme's reference implementation, installed with
``pip install 'dodo-ingest[webhooks]'``) and compares in constant time.

:meth:`Webhook.unwrap` returns one of the typed credit events below, or a
:class:`GenericWebhookEvent` for any other event type. Amounts are exact
:class:`~decimal.Decimal` values parsed from the API's decimal strings.

Input shapes (see :data:`WebhookHeaders`):

- ``headers`` may be any object with an ``items()`` method (a ``dict``, Starlette ``Headers``,
  Django ``request.headers``, Flask/Werkzeug ``EnvironHeaders``) or an iterable of
  ``(name, value)`` pairs, such as an ASGI scope's ``headers``. Names and values may be ``str``
  or ``bytes``; ``bytes`` are decoded as Latin-1, as ASGI frameworks do, so the raw scope
  headers and Starlette's ``request.headers`` verify alike. Names are matched
  case-insensitively. A Standard Webhooks header given twice with different values is refused.
- ``body`` is the raw request body as ``bytes`` (``bytearray`` and ``memoryview`` are
  accepted too) or ``str``, and must be valid UTF-8.

Bad input never escapes as a bare ``TypeError``, ``UnicodeError``, ``RecursionError`` or
``OverflowError``: problems with the headers, the signature, the timestamp or the body's
encoding raise :class:`WebhookVerificationError`; a verified body with the wrong shape or an
impossible value raises :class:`WebhookPayloadError` naming the field. When decoding a JSON
body, nesting deeper than 64 levels, ``NaN``/``Infinity``, floats that overflow and integers
of more than 4300 digits are refused. Amounts must be plain decimal numbers with at most 30
digits before and 30 after the decimal point, and ``threshold_percent`` is 0 to 100.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import accumulate
from typing import Any, Literal, Protocol, TypeAlias

from ._errors import ConfigurationError, WebhookPayloadError, WebhookVerificationError
from ._models import MetadataValue, parse_timestamp

__all__ = [
    "DEFAULT_TOLERANCE",
    "WEBHOOK_KEY_ENV",
    "CreditAddedEvent",
    "CreditBalanceLow",
    "CreditBalanceLowEvent",
    "CreditDeductedEvent",
    "CreditExpiredEvent",
    "CreditLedgerEvent",
    "CreditManualAdjustmentEvent",
    "CreditOverageChargedEvent",
    "CreditOverageResetEvent",
    "CreditRolledOverEvent",
    "CreditRolloverForfeitedEvent",
    "CreditTransaction",
    "GenericWebhookEvent",
    "Webhook",
    "WebhookEvent",
    "WebhookHeaders",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "parse_event",
]

WEBHOOK_KEY_ENV = "DODO_PAYMENTS_WEBHOOK_KEY"
DEFAULT_TOLERANCE = 300.0
"""Largest accepted distance, in seconds, between ``webhook-timestamp`` and now."""

_SECRET_PREFIX = "whsec_"
_MAX_TIMESTAMP_DIGITS = 15
_HEADER_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")
_HEADERS_SHAPE = (
    "webhook headers must be a mapping or an iterable of (name, value) pairs of str or bytes"
)
_SHOWN_ID_CHARS = 64

_MAX_DEPTH = 64
_MAX_INT_DIGITS = 4300
_MAX_INTEGER_DIGITS = 30
_MAX_FRACTION_DIGITS = 30
_MAX_DECIMAL_CHARS = 100
_DECIMAL_CEILING = 10**_MAX_INTEGER_DIGITS
_DECIMAL_RANGE = (
    f"must have at most {_MAX_INTEGER_DIGITS} digits before and "
    f"{_MAX_FRACTION_DIGITS} after the decimal point"
)
_DECIMAL_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# A JSON string, or an unterminated one running to the end of the text. Every attempt that
# starts at a quote succeeds, so stripping strings is linear in the length of the text.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class _HeaderItems(Protocol):
    def items(self) -> Iterable[tuple[str | bytes, str | bytes]]: ...


WebhookHeaders: TypeAlias = _HeaderItems | Iterable[tuple[str | bytes, str | bytes]]
"""Request headers as :meth:`Webhook.verify` accepts them: a mapping or header object with
``items()``, or ``(name, value)`` pairs; names and values ``str`` or Latin-1 ``bytes``."""


@dataclass(frozen=True)
class CreditTransaction:
    """One entry of a customer's credit ledger, as carried by the credit ledger events.

    ``transaction_type`` is one of ``credit_added``, ``credit_deducted``, ``credit_expired``,
    ``credit_rolled_over``, ``rollover_forfeited``, ``overage_charged``, ``overage_reset``,
    ``auto_top_up``, ``manual_adjustment`` or ``refund`` (kept as a string so that a new type
    does not break parsing).
    """

    id: str
    business_id: str
    brand_id: str
    customer_id: str
    credit_entitlement_id: str
    transaction_type: str
    is_credit: bool
    amount: Decimal
    balance_before: Decimal
    balance_after: Decimal
    overage_before: Decimal
    overage_after: Decimal
    created_at: datetime
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    description: str | None = None
    grant_id: str | None = None
    reference_id: str | None = None
    reference_type: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditTransaction:
        """Build from the ``data`` object of a credit ledger event."""
        reader = _Reader(data, "data")
        return cls(
            id=reader.text("id"),
            business_id=reader.text("business_id"),
            brand_id=reader.text("brand_id"),
            customer_id=reader.text("customer_id"),
            credit_entitlement_id=reader.text("credit_entitlement_id"),
            transaction_type=reader.text("transaction_type"),
            is_credit=reader.boolean("is_credit"),
            amount=reader.decimal("amount"),
            balance_before=reader.decimal("balance_before"),
            balance_after=reader.decimal("balance_after"),
            overage_before=reader.decimal("overage_before"),
            overage_after=reader.decimal("overage_after"),
            created_at=reader.time("created_at"),
            metadata=reader.metadata("metadata"),
            description=reader.optional_text("description"),
            grant_id=reader.optional_text("grant_id"),
            reference_id=reader.optional_text("reference_id"),
            reference_type=reader.optional_text("reference_type"),
        )


@dataclass(frozen=True)
class CreditBalanceLow:
    """The ``data`` of ``credit.balance_low``: a balance fell below its alert threshold."""

    customer_id: str
    credit_entitlement_id: str
    credit_entitlement_name: str
    brand_id: str
    subscription_id: str
    available_balance: Decimal
    subscription_credits_amount: Decimal
    threshold_amount: Decimal
    threshold_percent: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditBalanceLow:
        """Build from the ``data`` object of a ``credit.balance_low`` event."""
        reader = _Reader(data, "data")
        return cls(
            customer_id=reader.text("customer_id"),
            credit_entitlement_id=reader.text("credit_entitlement_id"),
            credit_entitlement_name=reader.text("credit_entitlement_name"),
            brand_id=reader.text("brand_id"),
            subscription_id=reader.text("subscription_id"),
            available_balance=reader.decimal("available_balance"),
            subscription_credits_amount=reader.decimal("subscription_credits_amount"),
            threshold_amount=reader.decimal("threshold_amount"),
            threshold_percent=reader.integer("threshold_percent", 0, 100),
        )


@dataclass(frozen=True, kw_only=True)
class CreditLedgerEvent:
    """Base of the eight credit events whose ``data`` is a :class:`CreditTransaction`.

    ``webhook_id`` is the ``webhook-id`` header (the same for every retry of one delivery, so
    it is the key to deduplicate on); it is ``None`` for events built by :func:`parse_event`
    without one.
    """

    type: str
    business_id: str
    timestamp: datetime
    data: CreditTransaction
    webhook_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class CreditAddedEvent(CreditLedgerEvent):
    """``credit.added``: credits were granted to a customer."""

    type: Literal["credit.added"] = "credit.added"


@dataclass(frozen=True, kw_only=True)
class CreditDeductedEvent(CreditLedgerEvent):
    """``credit.deducted``: usage consumed credits."""

    type: Literal["credit.deducted"] = "credit.deducted"


@dataclass(frozen=True, kw_only=True)
class CreditExpiredEvent(CreditLedgerEvent):
    """``credit.expired``: a credit grant expired."""

    type: Literal["credit.expired"] = "credit.expired"


@dataclass(frozen=True, kw_only=True)
class CreditRolledOverEvent(CreditLedgerEvent):
    """``credit.rolled_over``: unused credits were carried into the next period."""

    type: Literal["credit.rolled_over"] = "credit.rolled_over"


@dataclass(frozen=True, kw_only=True)
class CreditRolloverForfeitedEvent(CreditLedgerEvent):
    """``credit.rollover_forfeited``: credits beyond the rollover limit were forfeited."""

    type: Literal["credit.rollover_forfeited"] = "credit.rollover_forfeited"


@dataclass(frozen=True, kw_only=True)
class CreditOverageChargedEvent(CreditLedgerEvent):
    """``credit.overage_charged``: usage went beyond the balance and overage was recorded."""

    type: Literal["credit.overage_charged"] = "credit.overage_charged"


@dataclass(frozen=True, kw_only=True)
class CreditOverageResetEvent(CreditLedgerEvent):
    """``credit.overage_reset``: the overage was reset (forgiven or settled)."""

    type: Literal["credit.overage_reset"] = "credit.overage_reset"


@dataclass(frozen=True, kw_only=True)
class CreditManualAdjustmentEvent(CreditLedgerEvent):
    """``credit.manual_adjustment``: the merchant adjusted a balance by hand."""

    type: Literal["credit.manual_adjustment"] = "credit.manual_adjustment"


@dataclass(frozen=True, kw_only=True)
class CreditBalanceLowEvent:
    """``credit.balance_low``: a customer's balance fell below its alert threshold."""

    business_id: str
    timestamp: datetime
    data: CreditBalanceLow
    webhook_id: str | None = None
    type: Literal["credit.balance_low"] = "credit.balance_low"


@dataclass(frozen=True, kw_only=True)
class GenericWebhookEvent:
    """Any event type without a typed class here (payments, subscriptions, new types...).

    ``data`` is the decoded JSON object as sent; ``business_id`` and ``timestamp`` are
    ``None`` when the payload lacks them.
    """

    type: str
    data: Mapping[str, Any]
    business_id: str | None = None
    timestamp: datetime | None = None
    webhook_id: str | None = None


WebhookEvent = (
    CreditAddedEvent
    | CreditDeductedEvent
    | CreditExpiredEvent
    | CreditRolledOverEvent
    | CreditRolloverForfeitedEvent
    | CreditOverageChargedEvent
    | CreditOverageResetEvent
    | CreditManualAdjustmentEvent
    | CreditBalanceLowEvent
    | GenericWebhookEvent
)
"""What :meth:`Webhook.unwrap` and :func:`parse_event` return."""

_LEDGER_EVENTS: dict[str, Callable[..., WebhookEvent]] = {
    "credit.added": CreditAddedEvent,
    "credit.deducted": CreditDeductedEvent,
    "credit.expired": CreditExpiredEvent,
    "credit.rolled_over": CreditRolledOverEvent,
    "credit.rollover_forfeited": CreditRolloverForfeitedEvent,
    "credit.overage_charged": CreditOverageChargedEvent,
    "credit.overage_reset": CreditOverageResetEvent,
    "credit.manual_adjustment": CreditManualAdjustmentEvent,
}


def parse_event(
    payload: bytes | str | Mapping[str, Any], *, webhook_id: str | None = None
) -> WebhookEvent:
    """Parse a webhook body into a typed event **without verifying it**.

    For bodies already verified, or built in tests; a request from the network goes through
    :meth:`Webhook.unwrap`. Raises :class:`WebhookPayloadError` naming the field when the body
    is not JSON (or is nested too deeply, or holds a number Python cannot represent) or a
    credit event lacks a field or carries a malformed amount or timestamp. A ``Mapping`` is
    taken as already decoded: only the fields of the typed events are checked.
    """
    envelope = _decode_json(payload) if isinstance(payload, (bytes, bytearray, str)) else payload
    if not isinstance(envelope, Mapping):
        raise WebhookPayloadError("(body)", "must be a JSON object")
    reader = _Reader(envelope, "")
    event_type = reader.text("type")
    ledger_class = _LEDGER_EVENTS.get(event_type)
    if ledger_class is not None:
        return ledger_class(
            business_id=reader.text("business_id"),
            timestamp=reader.time("timestamp"),
            data=CreditTransaction.from_dict(reader.mapping("data")),
            webhook_id=webhook_id,
        )
    if event_type == "credit.balance_low":
        return CreditBalanceLowEvent(
            business_id=reader.text("business_id"),
            timestamp=reader.time("timestamp"),
            data=CreditBalanceLow.from_dict(reader.mapping("data")),
            webhook_id=webhook_id,
        )
    raw_data = envelope.get("data")
    raw_business = envelope.get("business_id")
    return GenericWebhookEvent(
        type=event_type,
        data=raw_data if isinstance(raw_data, Mapping) else {},
        business_id=raw_business
        if isinstance(raw_business, str) and _encodable(raw_business)
        else None,
        timestamp=_lenient_time(envelope.get("timestamp")),
        webhook_id=webhook_id,
    )


class Webhook:
    """Verifies webhook requests signed with one endpoint secret.

    ``secret`` is the endpoint's ``whsec_...`` secret (base64 after the prefix; the prefix is
    optional), or the raw key as ``bytes``; when omitted it is read from
    ``DODO_PAYMENTS_WEBHOOK_KEY``. A missing or undecodable secret raises
    :class:`~dodo_ingest.ConfigurationError` here. ``tolerance`` is the largest accepted
    distance in seconds between ``webhook-timestamp`` and ``clock()`` (a Unix time function,
    ``time.time`` by default). The secret never appears in a ``repr`` or an error message.
    """

    def __init__(
        self,
        secret: str | bytes | None = None,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(tolerance) or tolerance < 0:
            raise ConfigurationError("tolerance must be a finite number of seconds >= 0")
        self._key = _decode_secret(
            secret if secret is not None else os.environ.get(WEBHOOK_KEY_ENV)
        )
        self._tolerance = float(tolerance)
        self._clock = clock
        self._signer: Any = None

    def __repr__(self) -> str:
        return f"Webhook(tolerance={self._tolerance:g})"

    def verify(self, body: bytes | str, headers: WebhookHeaders) -> None:
        """Check the request's Standard Webhooks headers against ``body`` (the raw bytes).

        ``headers`` is a mapping or header object (``request.headers`` of Starlette, Django or
        Flask) or ``(name, value)`` pairs; ``bytes`` names and values are decoded as Latin-1.
        Header names are matched case-insensitively. Raises
        :class:`~dodo_ingest.WebhookVerificationError` when the headers are not one of those
        shapes, a header is missing, malformed or repeated with different values, the
        timestamp is more than ``tolerance`` seconds from now, the body is not valid UTF-8
        text, or no ``v1`` signature in ``webhook-signature`` matches. Pass the body exactly
        as received: re-serialized JSON does not verify.
        """
        self._verify(body, headers)

    def unwrap(self, body: bytes | str, headers: WebhookHeaders) -> WebhookEvent:
        """Verify the request (see :meth:`verify`), then parse it (see :func:`parse_event`).

        The event's ``webhook_id`` is the request's ``webhook-id`` header.
        """
        webhook_id, payload = self._verify(body, headers)
        return parse_event(payload, webhook_id=webhook_id)

    def _verify(self, body: object, headers: object) -> tuple[str, bytes | str]:
        found = _webhook_headers(headers)
        webhook_id = _require_header(found, "webhook-id")
        timestamp_text = _require_header(found, "webhook-timestamp")
        signature_header = _require_header(found, "webhook-signature")
        if not _encodable(webhook_id):
            raise WebhookVerificationError("header 'webhook-id' is not valid Unicode text")
        timestamp = self._check_timestamp(timestamp_text)
        payload, text = _body_text(body)
        expected = self._signature(webhook_id, timestamp, text)
        for candidate in _v1_signatures(signature_header):
            if hmac.compare_digest(expected, candidate):
                return webhook_id, payload
        raise WebhookVerificationError(
            f"no v1 signature in webhook-signature matches webhook {_shown(webhook_id)}; "
            "check the endpoint secret and that the raw body is passed unchanged"
        )

    def sign(
        self, body: bytes | str, *, webhook_id: str | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        """The three headers a sender would attach to ``body``; for tests and local tools.

        ``webhook_id`` defaults to a random ``msg_...`` id, ``timestamp`` (Unix seconds) to
        ``clock()``. A body that is not valid UTF-8 text raises
        :class:`~dodo_ingest.WebhookVerificationError`, as :meth:`verify` would.
        """
        msg_id = webhook_id if webhook_id is not None else f"msg_{secrets.token_hex(12)}"
        if not _encodable(msg_id):
            raise WebhookVerificationError("webhook_id is not valid Unicode text")
        seconds = timestamp if timestamp is not None else math.floor(self._clock())
        text = _body_text(body)[1]
        signature = base64.b64encode(self._signature(msg_id, seconds, text)).decode("ascii")
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(seconds),
            "webhook-signature": f"v1,{signature}",
        }

    def _check_timestamp(self, text: str) -> int:
        stripped = text.strip()
        if not (stripped.isascii() and stripped.isdigit()) or len(stripped) > _MAX_TIMESTAMP_DIGITS:
            raise WebhookVerificationError(
                "webhook-timestamp must be an integer number of seconds since the Unix epoch"
            )
        timestamp = int(stripped)
        now = self._clock()
        if timestamp < now - self._tolerance:
            raise WebhookVerificationError(
                f"webhook-timestamp is more than {self._tolerance:g} s in the past"
            )
        if timestamp > now + self._tolerance:
            raise WebhookVerificationError(
                f"webhook-timestamp is more than {self._tolerance:g} s in the future"
            )
        return timestamp

    def _signature(self, webhook_id: str, timestamp: int, body: str) -> bytes:
        if self._signer is None:
            self._signer = _load_standardwebhooks().Webhook(self._key)
        try:
            when = datetime.fromtimestamp(timestamp, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise WebhookVerificationError("webhook-timestamp is out of range") from None
        versioned = self._signer.sign(msg_id=webhook_id, timestamp=when, data=body)
        return base64.b64decode(versioned.partition(",")[2])


def _load_standardwebhooks() -> Any:
    try:
        import standardwebhooks
    except ImportError:
        raise ConfigurationError(
            "verifying webhooks needs the 'standardwebhooks' package: "
            "pip install 'dodo-ingest[webhooks]'"
        ) from None
    return standardwebhooks


def _decode_secret(secret: str | bytes | None) -> bytes:
    if isinstance(secret, bytes):
        key = secret
    else:
        text = (secret or "").strip()
        if not text:
            raise ConfigurationError(
                f"webhook secret is missing: pass Webhook(secret=...) or set {WEBHOOK_KEY_ENV}"
            )
        encoded = text.removeprefix(_SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "webhook secret is not valid base64 after its 'whsec_' prefix; "
                "copy the whole secret from the dashboard"
            ) from None
    if not key:
        raise ConfigurationError("webhook secret decodes to an empty key")
    return key


def _encodable(text: str) -> bool:
    """True when ``text`` has no lone surrogate, so it can be encoded as UTF-8."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """``repr`` of an untrusted value for an error message, cut to a readable length."""
    if len(text) > _SHOWN_ID_CHARS:
        return repr(text[:_SHOWN_ID_CHARS]) + "..."
    return repr(text)


def _header_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return None


def _webhook_headers(headers: object) -> dict[str, str]:
    """The Standard Webhooks headers of ``headers``, by lowercase name, values stripped."""
    if isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise WebhookVerificationError(_HEADERS_SHAPE)
    items = getattr(headers, "items", None)
    try:
        source = items() if callable(items) else headers
        if not isinstance(source, Iterable):
            raise TypeError
        pairs = iter(source)
    except TypeError:
        raise WebhookVerificationError(_HEADERS_SHAPE) from None
    found: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise WebhookVerificationError(_HEADERS_SHAPE)
        name = _header_text(pair[0])
        if name is None:
            raise WebhookVerificationError(_HEADERS_SHAPE)
        name = name.lower()
        if name not in _HEADER_NAMES:
            continue
        value = _header_text(pair[1])
        if value is None:
            raise WebhookVerificationError(f"header {name!r} must be a str or bytes value")
        value = value.strip()
        if found.setdefault(name, value) != value:
            raise WebhookVerificationError(
                f"header {name!r} appears more than once with different values"
            )
    return found


def _require_header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name, "")
    if not value:
        raise WebhookVerificationError(f"missing required header {name!r}")
    return value


def _body_text(body: object) -> tuple[bytes | str, str]:
    """``(payload, text)``: the body as ``bytes`` or ``str``, and as text to sign."""
    if isinstance(body, str):
        if not _encodable(body):
            raise WebhookVerificationError(
                "webhook body is not valid UTF-8 text (it holds a lone surrogate)"
            )
        return body, body
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        try:
            return raw, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookVerificationError("webhook body is not valid UTF-8") from None
    raise WebhookVerificationError(
        f"webhook body must be the raw request body as bytes or str, not {type(body).__name__}"
    )


def _v1_signatures(header: str) -> list[bytes]:
    signatures = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return signatures


def _lenient_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError):
        return None


def _json_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        shown = text if len(text) <= 20 else f"{text[:20]}..."
        raise WebhookPayloadError("(body)", f"holds a number too large for a float ({shown})")
    return number


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise WebhookPayloadError(
            "(body)", f"holds an integer of more than {_MAX_INT_DIGITS} digits"
        )
    return int(text)


def _json_constant(name: str) -> Any:
    raise WebhookPayloadError("(body)", f"holds {name}, which is not a JSON number")


def _nesting_depth(text: str) -> int:
    """An upper bound of how deep JSON ``text`` nests, counted without recursion."""
    openings = text.count("[") + text.count("{")
    if openings <= _MAX_DEPTH:
        return openings
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _decode_json(payload: bytes | bytearray | str) -> Any:
    try:
        if isinstance(payload, str):
            text = payload
        else:
            text = bytes(payload).decode(json.detect_encoding(payload), "surrogatepass")
        if _nesting_depth(text) > _MAX_DEPTH:
            raise WebhookPayloadError("(body)", f"is nested more than {_MAX_DEPTH} levels deep")
        return json.loads(
            text, parse_float=_json_float, parse_int=_json_int, parse_constant=_json_constant
        )
    except WebhookPayloadError:
        raise
    except RecursionError:
        raise WebhookPayloadError("(body)", "is nested too deeply to decode") from None
    except ValueError as exc:
        raise WebhookPayloadError(
            "(body)", f"is not valid JSON ({exc.__class__.__name__})"
        ) from None


class _Reader:
    """Typed field access on a JSON object, raising :class:`WebhookPayloadError` by name."""

    def __init__(self, data: Mapping[str, Any], prefix: str) -> None:
        self._data = data
        self._prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self._prefix}.{key}" if self._prefix else key

    def _get(self, key: str) -> Any:
        if key not in self._data or self._data[key] is None:
            raise WebhookPayloadError(self._name(key), "is required")
        return self._data[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise WebhookPayloadError(self._name(key), "must be a string")
        if not _encodable(value):
            raise WebhookPayloadError(self._name(key), "must be valid Unicode text")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.text(key)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise WebhookPayloadError(self._name(key), "must be a boolean")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise WebhookPayloadError(self._name(key), "must be an integer")
        if not low <= value <= high:
            raise WebhookPayloadError(self._name(key), f"must be from {low} to {high}")
        return value

    def decimal(self, key: str) -> Decimal:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise WebhookPayloadError(self._name(key), "must be a decimal string")
        if isinstance(value, float) and not math.isfinite(value):
            raise WebhookPayloadError(self._name(key), "must be a finite decimal")
        if isinstance(value, int) and abs(value) >= _DECIMAL_CEILING:
            raise WebhookPayloadError(self._name(key), _DECIMAL_RANGE)
        text = value if isinstance(value, str) else str(value)
        if len(text) > _MAX_DECIMAL_CHARS or not _DECIMAL_TEXT.fullmatch(text):
            raise WebhookPayloadError(self._name(key), "must be a decimal string")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise WebhookPayloadError(self._name(key), "must be a decimal string") from None
        exponent = number.as_tuple().exponent
        if (
            not isinstance(exponent, int)
            or number.adjusted() >= _MAX_INTEGER_DIGITS
            or exponent < -_MAX_FRACTION_DIGITS
        ):
            raise WebhookPayloadError(self._name(key), _DECIMAL_RANGE)
        return number

    def time(self, key: str) -> datetime:
        value = self.text(key)
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError):
            raise WebhookPayloadError(self._name(key), "must be an RFC 3339 timestamp") from None

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise WebhookPayloadError(self._name(key), "must be a JSON object")
        return value

    def metadata(self, key: str) -> dict[str, MetadataValue]:
        value = self._data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise WebhookPayloadError(self._name(key), "must be a JSON object")
        return dict(value)
