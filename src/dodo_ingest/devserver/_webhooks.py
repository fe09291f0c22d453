"""Webhook endpoints (``/webhooks``) and signed deliveries of the server's credit events.

Endpoints follow the OpenAPI document: ``POST/GET/PATCH/DELETE /webhooks``,
``GET /webhooks/{id}/secret``, ``filter_types`` naming the event types an endpoint receives
(none: every type). Every credit event of the ledger is delivered to each enabled endpoint
that wants it, as a ``POST`` of ``{"business_id", "type", "timestamp", "data"}`` signed by
the `Standard Webhooks <https://www.standardwebhooks.com>`_ scheme with the endpoint's
``whsec_`` secret. A delivery that fails (no answer within the attempt timeout, or a status
outside 2xx) is retried after each delay of the retry schedule in turn, by the server's
clock; after the last it is ``failed``. A background thread makes the attempts, in the order
the events happened, and stops with the server. Deliveries and their attempts are kept in the
server's database, so a restart on the same file keeps their history and pending retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2

from ._errors import APIError
from ._store import BUSINESS_ID, Store, new_id
from ._time import format_us, now_us

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "EVENT_TYPES",
    "MAX_DELIVERIES_KEPT",
    "Delivery",
    "WebhookDispatcher",
    "add_webhook_headers",
    "check_webhook_body",
    "sign",
    "webhook_body",
]

DEFAULT_RETRY_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds before each retry of a failed delivery (the Standard Webhooks schedule: 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 10 h), by the server's clock."""
ATTEMPT_TIMEOUT = 5.0
"""Seconds an endpoint has to answer one attempt."""
_SETTLE_INTERVAL = 1.0
"""Seconds between the dispatcher's settlements of every balance (while endpoints exist),
so that usage whose deduction lag passed and expiries are reported without a read."""

EVENT_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.processing",
    "payment.cancelled",
    "refund.succeeded",
    "refund.failed",
    "dispute.opened",
    "dispute.expired",
    "dispute.accepted",
    "dispute.cancelled",
    "dispute.challenged",
    "dispute.won",
    "dispute.lost",
    "subscription.active",
    "subscription.renewed",
    "subscription.on_hold",
    "subscription.past_due",
    "subscription.paused",
    "subscription.unpaused",
    "subscription.cancelled",
    "subscription.failed",
    "subscription.expired",
    "subscription.plan_changed",
    "subscription.updated",
    "subscription.update_payment_method",
    "license_key.created",
    "payout.created",
    "payout.on_hold",
    "payout.in_progress",
    "payout.failed",
    "payout.success",
    "credit.added",
    "credit.deducted",
    "credit.expired",
    "credit.rolled_over",
    "credit.rollover_forfeited",
    "credit.overage_charged",
    "credit.overage_reset",
    "credit.manual_adjustment",
    "credit.balance_low",
    "abandoned_checkout.detected",
    "abandoned_checkout.recovered",
    "dunning.started",
    "dunning.recovered",
    "entitlement_grant.created",
    "entitlement_grant.delivered",
    "entitlement_grant.failed",
    "entitlement_grant.revoked",
)
"""Event types an endpoint may filter on (the SDK's ``WebhookEventType``); the dev server
sends the ``credit.*`` ones."""

MAX_DELIVERIES_KEPT = 10_000
"""Deliveries kept for ``GET /_dev/webhook-deliveries``; beyond it the oldest finished ones
(delivered or failed) are forgotten."""

_US_PER_SECOND = 1_000_000


def _invalid(message: str) -> APIError:
    return APIError(422, "invalid_request", message)


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
"""An HTTP field name (RFC 9110 token), at most 256 characters."""
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]{0,8192}")
"""A header value sent as is: printable ASCII, spaces and tabs (no CR, LF or NUL), 8 KiB."""
_SIGNING_HEADERS = frozenset(
    {"content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"}
)


def _check_headers(headers: dict[str, str]) -> None:
    """422 naming the header when a custom header could not be sent as given."""
    for name, value in headers.items():
        if _HEADER_NAME.fullmatch(name) is None:
            raise _invalid(
                f"headers: {name[:64]!r} is not an HTTP header name (letters, digits and "
                "!#$%&'*+.^_`|~- only, at most 256 characters)"
            )
        if name.lower() in _SIGNING_HEADERS:
            raise _invalid(f"headers.{name}: set by the server on every delivery")
        if _HEADER_VALUE.fullmatch(value) is None:
            raise _invalid(
                f"headers.{name}: printable ASCII, spaces and tabs only (no line breaks), "
                "at most 8192 characters"
            )


def _check_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The checked fields of a create or patch body (only those given, for a patch)."""
    fields: dict[str, Any] = {}
    if creating or body.get("url") is not None:
        url = body.get("url")
        parts = urlsplit(url) if type(url) is str else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise _invalid(f"url is required: an http(s) URL, got {url!r}")
        fields["url"] = url
    if body.get("description") is not None:
        if type(body["description"]) is not str:
            raise _invalid("description must be a string or null")
        fields["description"] = body["description"]
    if body.get("disabled") is not None:
        if type(body["disabled"]) is not bool:
            raise _invalid("disabled must be a boolean or null")
        fields["disabled"] = body["disabled"]
    if "filter_types" in body and (creating or body["filter_types"] is not None):
        types = body["filter_types"]
        if type(types) is not list or any(type(t) is not str for t in types):
            raise _invalid("filter_types must be an array of event type strings")
        unknown = [t for t in types if t not in EVENT_TYPES]
        if unknown:
            raise _invalid(f"filter_types: unknown event type {unknown[0]!r}")
        fields["filter_types"] = list(dict.fromkeys(types))
    for name in ("metadata", "headers"):
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not dict or any(type(v) is not str for v in value.values()):
            raise _invalid(f"{name} must be an object of string values or null")
        if name == "headers":
            _check_headers(value)
        fields[name] = dict(value)
    if body.get("rate_limit") is not None:
        limit = body["rate_limit"]
        if type(limit) is not int or not 0 <= limit <= 2**31 - 1:
            raise _invalid("rate_limit must be an integer >= 0 or null")
        fields["rate_limit"] = limit
    return fields


def check_webhook_body(body: object, now_us: int) -> dict[str, Any]:
    """Check a ``POST /webhooks`` body; return the new endpoint as stored (with its secret).

    Raises :class:`APIError` 422 naming the field.
    """
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    fields = _check_fields(body, creating=True)
    now = format_us(now_us)
    return {
        "id": new_id("wh"),
        "url": fields["url"],
        "description": fields.get("description", ""),
        "disabled": fields.get("disabled", False),
        "filter_types": fields.get("filter_types", []),
        "metadata": fields.get("metadata", {}),
        "headers": fields.get("headers", {}),
        "rate_limit": fields.get("rate_limit"),
        "secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
        "created_at": now,
        "updated_at": now,
    }


def patch_webhook(webhook: dict[str, Any], body: object, now_us: int) -> dict[str, Any]:
    """Apply a ``PATCH /webhooks/{id}`` body to a stored endpoint; 422 naming the field."""
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    return {**webhook, **_check_fields(body, creating=False), "updated_at": format_us(now_us)}


def add_webhook_headers(webhook: dict[str, Any], body: object, now_us: int) -> dict[str, Any]:
    """Apply a ``PATCH /webhooks/{id}/headers`` body (``{"headers": {name: value}}``): the
    headers given are added or replace those of the same name; 422 naming the field."""
    if type(body) is not dict or type(body.get("headers")) is not dict:
        raise _invalid('the body must be {"headers": {name: value, ...}}')
    if any(type(value) is not str for value in body["headers"].values()):
        raise _invalid("headers must be an object of string values")
    _check_headers(body["headers"])
    headers = {**webhook["headers"], **body["headers"]}
    return {**webhook, "headers": headers, "updated_at": format_us(now_us)}


def webhook_body(webhook: dict[str, Any]) -> dict[str, Any]:
    """An endpoint as the API shows it (``WebhookDetails``: no secret, no headers)."""
    return {
        name: webhook[name]
        for name in (
            "id",
            "url",
            "description",
            "disabled",
            "filter_types",
            "metadata",
            "rate_limit",
            "created_at",
            "updated_at",
        )
    }


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` of a delivery: ``v1,`` and the base64
    HMAC-SHA256 of ``"{id}.{timestamp}.{body}"`` keyed with the decoded ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class Delivery:
    """One event on its way to one endpoint, with its attempts so far."""

    id: str
    message_id: str
    webhook_id: str
    event_type: str
    body: bytes
    created_us: int
    due_us: int | None
    status: str = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The delivery as the store keeps it."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "webhook_id": self.webhook_id,
            "event_type": self.event_type,
            "body": self.body.decode(),
            "created_us": self.created_us,
            "due_us": self.due_us,
            "status": self.status,
            "attempts": list(self.attempts),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Delivery:
        """A delivery read back from the store."""
        return cls(**{**record, "body": record["body"].encode()})

    def report(self, url: str | None) -> dict[str, Any]:
        """The delivery as ``GET /_dev/webhook-deliveries`` shows it."""
        return {
            "id": self.id,
            "message_id": self.message_id,
            "webhook_id": self.webhook_id,
            "url": url,
            "event_type": self.event_type,
            "status": self.status,
            "created_at": format_us(self.created_us),
            "next_attempt_at": None if self.due_us is None else format_us(self.due_us),
            "attempts": list(self.attempts),
            "payload": json.loads(self.body),
        }


class WebhookDispatcher:
    """Turns credit events into deliveries and makes their attempts in a background thread.

    ``retry_delays`` are the seconds (by the server's clock) before each retry; ``settle``
    is called about once a second while endpoints exist, so that due deductions and
    expiries are reported without waiting for a read.
    """

    def __init__(
        self,
        store: Store,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        *,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        settle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.retry_delays = tuple(retry_delays)
        self.attempt_timeout = attempt_timeout
        self.settle = settle
        self._deliveries = [Delivery.from_record(r) for r in store.deliveries()]
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._held = threading.local()

    # --- events in ---------------------------------------------------------------------

    @contextmanager
    def in_time_order(self) -> Iterator[None]:
        """Hold back the events this thread emits in the block, then queue them in the
        order they happened (by their time; the order emitted among equal times): settling
        several balances one after the other replays each balance's past in turn."""
        if getattr(self._held, "events", None) is not None:  # nested: the outer block sorts
            yield
            return
        held: list[tuple[str, dict[str, Any], int]] = []
        self._held.events = held
        try:
            yield
        finally:
            self._held.events = None
        for event in sorted(held, key=lambda event: event[2]):
            self.emit(*event)

    def emit(self, event_type: str, data: dict[str, Any], at_us: int) -> None:
        """Queue ``event_type`` for every enabled endpoint that wants it."""
        holding: list[tuple[str, dict[str, Any], int]] | None = getattr(self._held, "events", None)
        if holding is not None:
            holding.append((event_type, data, at_us))
            return
        endpoints = [
            webhook
            for webhook in self.store.list_webhooks()
            if not webhook["disabled"]
            and (not webhook["filter_types"] or event_type in webhook["filter_types"])
        ]
        if not endpoints:
            return
        envelope = {
            "business_id": BUSINESS_ID,
            "type": event_type,
            "timestamp": format_us(at_us),
            "data": data,
        }
        body = json.dumps(envelope, separators=(",", ":")).encode()
        message_id = new_id("msg")
        now = self.store.now_us()
        made = [
            Delivery(new_id("whd"), message_id, webhook["id"], event_type, body, now, now)
            for webhook in endpoints
        ]
        for delivery in made:  # in the transaction of the change that sends them, if any
            self.store.save_delivery(delivery.record())
        forgotten: list[str] = []
        with self._condition:
            self._deliveries += made
            excess = len(self._deliveries) - MAX_DELIVERIES_KEPT
            if excess > 0:  # forget the oldest finished deliveries
                kept = []
                for delivery in self._deliveries:
                    if excess > 0 and delivery.status != "pending":
                        excess -= 1
                        forgotten.append(delivery.id)
                        continue
                    kept.append(delivery)
                self._deliveries = kept
            self._condition.notify_all()
        if forgotten:
            self.store.delete_deliveries(forgotten)

    def wake(self) -> None:
        """Look for due attempts now (the clock moved)."""
        with self._condition:
            self._condition.notify_all()

    def deliveries(
        self, *, webhook_id: str | None = None, event_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Every delivery (of one endpoint, of one type), oldest first."""
        with self._condition:
            chosen = [
                d
                for d in self._deliveries
                if (webhook_id is None or d.webhook_id == webhook_id)
                and (event_type is None or d.event_type == event_type)
            ]
            reports = [d.report(None) for d in chosen]
        urls: dict[str, str | None] = {}
        for report in reports:  # outside the lock: the store's lock is never taken inside it
            if report["webhook_id"] not in urls:
                webhook = self.store.get_webhook(report["webhook_id"])
                urls[report["webhook_id"]] = None if webhook is None else webhook["url"]
            report["url"] = urls[report["webhook_id"]]
        return reports

    # --- the thread --------------------------------------------------------------------

    def start(self, name: str = "dodo-devserver-webhooks") -> None:
        """Start the thread making the attempts (named ``name``)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (an attempt in flight ends first, within its timeout)."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _due(self) -> tuple[list[Delivery], float]:
        """The deliveries due now, and how long to wait for the next one."""
        now = self.store.now_us()
        due = [d for d in self._deliveries if d.due_us is not None and d.due_us <= now]
        waits = [
            d.due_us - now for d in self._deliveries if d.due_us is not None and d.due_us > now
        ]
        wait = min(waits, default=_SETTLE_INTERVAL * _US_PER_SECOND) / _US_PER_SECOND
        return sorted(due, key=lambda d: d.due_us or 0), min(wait, _SETTLE_INTERVAL)

    def _run(self) -> None:
        last_settle = time.monotonic()
        with httpx2.Client(timeout=self.attempt_timeout, trust_env=False) as http:
            while True:
                with self._condition:
                    due, wait = self._due()
                    if not due and not self._stopping:
                        self._condition.wait(wait)
                        due, _ = self._due()
                    if self._stopping:
                        return
                for delivery in due:
                    if self._stopping:
                        return
                    self._attempt(http, delivery)
                if self.settle is not None and time.monotonic() - last_settle >= _SETTLE_INTERVAL:
                    last_settle = time.monotonic()
                    if self.store.list_webhooks():
                        self._settle_quietly()

    def _settle_quietly(self) -> None:
        assert self.settle is not None
        try:
            self.settle()
        except Exception:  # a closed database at shutdown: the next request settles
            return

    def _attempt(self, http: httpx2.Client, delivery: Delivery) -> None:
        webhook = self.store.get_webhook(delivery.webhook_id)
        attempt: dict[str, Any] = {
            "attempted_at": format_us(now_us()),
            "server_time": format_us(self.store.now_us()),
            "status_code": None,
            "error": None,
        }
        succeeded = False
        if webhook is None:
            attempt["error"] = "the endpoint was deleted"
        else:
            timestamp = int(time.time())
            headers = {
                **webhook["headers"],
                "content-type": "application/json",
                "user-agent": "dodo-ingest-devserver",
                "webhook-id": delivery.message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(
                    webhook["secret"], delivery.message_id, timestamp, delivery.body
                ),
            }
            try:
                response = http.post(webhook["url"], content=delivery.body, headers=headers)
                attempt["status_code"] = response.status_code
                succeeded = 200 <= response.status_code < 300
            except Exception as error:  # any failure is this attempt's, never the loop's
                attempt["error"] = f"{type(error).__name__}: {error}"
        with self._condition:
            delivery.attempts.append(attempt)
            retries = len(delivery.attempts) - 1
            if succeeded:
                delivery.status, delivery.due_us = "delivered", None
            elif webhook is None or retries >= len(self.retry_delays):
                delivery.status, delivery.due_us = "failed", None
            else:
                delay = self.retry_delays[retries]
                delivery.due_us = self.store.now_us() + round(delay * _US_PER_SECOND)
            record = delivery.record()
        self.store.save_delivery(record)
