"""Request building and response decoding shared by the sync and async clients.

Every API operation is described once here as an :class:`APIRequest` (method, path, query,
body); the clients only send it. This keeps :class:`~dodo_ingest.DodoClient` and
:class:`~dodo_ingest.AsyncDodoClient` in step by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote

import httpx2

from ._errors import (
    APIStatusError,
    EventValidationError,
    UnexpectedResponseError,
    error_class_for_status,
)
from ._models import (
    MAX_BATCH_SIZE,
    EventInput,
    GrantStatus,
    IngestResult,
    LedgerTransactionType,
    MeterAggregation,
    MeterFilter,
    format_timestamp,
)
from ._retry import parse_retry_after

__all__ = [
    "APIRequest",
    "decode_ingest_response",
    "decode_response",
    "encode_events",
    "ingest_request",
    "redact",
    "request_id",
    "status_error",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class APIRequest:
    """One HTTP call to the API: method, path below the base URL, query and JSON body.

    ``idempotent`` says whether sending it twice is harmless. Reads and event ingestion are
    (event ids are idempotency keys); creating a meter, an entitlement or a ledger entry is
    not, so those are retried only when the server cannot have acted on them.
    """

    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    idempotent: bool = True


def _segment(value: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def _json(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def encode_events(events: Iterable[EventInput | Mapping[str, Any]]) -> bytes:
    """Encode events as the ``POST /events/ingest`` body.

    Mappings are validated as :class:`EventInput` first. Raises
    :class:`~dodo_ingest.EventValidationError` for an empty batch, more than 1000 events, a
    duplicate ``event_id`` (the API would refuse the whole request) or a bad event (its index
    is in the error).
    """
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, event in enumerate(events):
        if not isinstance(event, EventInput):
            try:
                event = EventInput.from_dict(event)
            except EventValidationError as error:
                raise EventValidationError(error.field, error.limit, index=index) from None
        if event.event_id in seen:
            raise EventValidationError(
                "event_id",
                f"duplicate id {event.event_id!r} in one request (the API refuses the request)",
                index=index,
            )
        seen.add(event.event_id)
        items.append(event.to_dict())
    if not items:
        raise EventValidationError("events", "at least 1 event per request")
    if len(items) > MAX_BATCH_SIZE:
        raise EventValidationError(
            "events", f"at most {MAX_BATCH_SIZE} events per request, got {len(items)}"
        )
    return _json({"events": items})


def ingest_request(events: Iterable[EventInput | Mapping[str, Any]]) -> APIRequest:
    """``POST /events/ingest``."""
    return APIRequest("POST", "/events/ingest", body=encode_events(events))


def ingest_body_request(body: bytes) -> APIRequest:
    """``POST /events/ingest`` with a body already encoded by :func:`encode_events`."""
    return APIRequest("POST", "/events/ingest", body=body)


def _time_param(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return format_timestamp(value)


def _page_query(page_number: int, page_size: int, **filters: str | None) -> dict[str, str]:
    """The query of one page of a list: its number and size, then the ``filters`` given
    (those that are ``None`` are left out)."""
    query = {"page_number": str(page_number), "page_size": str(page_size)}
    query.update({name: value for name, value in filters.items() if value is not None})
    return query


def list_events_request(
    *,
    page_number: int,
    page_size: int,
    customer_id: str | None = None,
    event_name: str | None = None,
    meter_id: str | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
) -> APIRequest:
    """``GET /events`` for one page."""
    query = _page_query(
        page_number,
        page_size,
        customer_id=customer_id,
        event_name=event_name,
        meter_id=meter_id,
        start=_time_param(start),
        end=_time_param(end),
    )
    return APIRequest("GET", "/events", query)


def check_page_size(page_size: int) -> int:
    """Check a page size (1 to 100)."""
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be an int from 1 to {MAX_PAGE_SIZE}, got {page_size!r}")
    return page_size


def retrieve_event_request(event_id: str) -> APIRequest:
    """``GET /events/{event_id}``."""
    return APIRequest("GET", f"/events/{_segment(event_id, 'event_id')}")


def create_meter_request(
    *,
    name: str,
    event_name: str,
    measurement_unit: str,
    aggregation: MeterAggregation,
    filter: MeterFilter | None = None,
    description: str | None = None,
) -> APIRequest:
    """``POST /meters``."""
    for field_name, value in (
        ("name", name),
        ("event_name", event_name),
        ("measurement_unit", measurement_unit),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{field_name} must be a non-empty string")
    if not isinstance(aggregation, MeterAggregation):
        raise TypeError("aggregation must be a MeterAggregation")
    body: dict[str, Any] = {
        "name": name,
        "event_name": event_name,
        "measurement_unit": measurement_unit,
        "aggregation": aggregation.to_dict(),
    }
    if description is not None:
        body["description"] = description
    if filter is not None:
        body["filter"] = filter.to_dict()
    return APIRequest("POST", "/meters", body=_json(body), idempotent=False)


def list_meters_request(*, page_number: int, page_size: int, archived: bool | None) -> APIRequest:
    """``GET /meters`` for one page."""
    flag = None if archived is None else ("true" if archived else "false")
    return APIRequest("GET", "/meters", _page_query(page_number, page_size, archived=flag))


def meter_request(method: str, meter_id: str, suffix: str = "") -> APIRequest:
    """``GET``/``DELETE /meters/{id}`` or ``POST /meters/{id}/unarchive``."""
    return APIRequest(method, f"/meters/{_segment(meter_id, 'meter_id')}{suffix}")


def create_entitlement_request(
    *,
    name: str,
    unit: str,
    precision: int,
    currency: str | None,
    price_per_unit: Decimal | str | None,
    overage_enabled: bool,
    overage_limit: Decimal | str | None,
    rollover_enabled: bool,
    description: str | None,
    settings: Mapping[str, Any] | None = None,
) -> APIRequest:
    """``POST /credit-entitlements``; ``settings`` holds the optional expiry, rollover and
    overage settings (``None`` values are left out)."""
    if not isinstance(precision, int) or not 0 <= precision <= 10:
        raise ValueError(f"precision must be an int from 0 to 10, got {precision!r}")
    body: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "precision": precision,
        "overage_enabled": overage_enabled,
        "rollover_enabled": rollover_enabled,
    }
    for key, value in (
        ("currency", currency),
        ("price_per_unit", price_per_unit),
        ("overage_limit", overage_limit),
        ("description", description),
    ):
        if value is not None:
            body[key] = str(value)
    body.update(_entitlement_settings(settings or {}))
    return APIRequest("POST", "/credit-entitlements", body=_json(body), idempotent=False)


OVERAGE_BEHAVIORS = (
    "forgive_at_reset",
    "invoice_at_billing",
    "carry_deficit",
    "carry_deficit_auto_repay",
)
TIME_INTERVALS = ("Day", "Week", "Month", "Year")


def _entitlement_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The expiry, rollover and overage settings given, checked against their ranges."""
    body: dict[str, Any] = {}
    for name, value in settings.items():
        if value is None:
            continue
        if name == "overage_behavior":
            if value not in OVERAGE_BEHAVIORS:
                raise ValueError(
                    f"overage_behavior must be one of {', '.join(OVERAGE_BEHAVIORS)}, got {value!r}"
                )
        elif name == "rollover_timeframe_interval":
            if value not in TIME_INTERVALS:
                raise ValueError(
                    f"rollover_timeframe_interval must be one of {', '.join(TIME_INTERVALS)}, "
                    f"got {value!r}"
                )
        else:
            low, high = (0, 100) if name == "rollover_percentage" else (0, 2**31 - 1)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an int from {low} to {high}, got {value!r}")
        body[name] = value
    return body


def ledger_entry_request(
    credit_entitlement_id: str,
    customer_id: str,
    *,
    amount: Decimal | str | int,
    entry_type: Literal["credit", "debit"],
    reason: str | None,
    idempotency_key: str | None,
) -> APIRequest:
    """``POST /credit-entitlements/{id}/balances/{customer_id}/ledger-entries``."""
    if entry_type not in ("credit", "debit"):
        raise ValueError(f"entry_type must be 'credit' or 'debit', got {entry_type!r}")
    try:
        decimal_amount = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"amount must be a positive decimal, got {amount!r}") from None
    if not decimal_amount.is_finite() or decimal_amount <= 0:
        raise ValueError(f"amount must be a positive decimal, got {amount!r}")
    body: dict[str, Any] = {"amount": str(decimal_amount), "entry_type": entry_type}
    if reason is not None:
        body["reason"] = reason
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return APIRequest(
        "POST",
        _balances_path(credit_entitlement_id, customer_id) + "/ledger-entries",
        body=_json(body),
        idempotent=False,
    )


def _balances_path(credit_entitlement_id: str, customer_id: str | None = None) -> str:
    path = (
        f"/credit-entitlements/{_segment(credit_entitlement_id, 'credit_entitlement_id')}/balances"
    )
    if customer_id is not None:
        path += f"/{_segment(customer_id, 'customer_id')}"
    return path


def entitlement_request(credit_entitlement_id: str) -> APIRequest:
    """``GET /credit-entitlements/{id}``."""
    return APIRequest(
        "GET", f"/credit-entitlements/{_segment(credit_entitlement_id, 'credit_entitlement_id')}"
    )


def balance_request(credit_entitlement_id: str, customer_id: str) -> APIRequest:
    """``GET /credit-entitlements/{id}/balances/{customer_id}``."""
    return APIRequest("GET", _balances_path(credit_entitlement_id, customer_id))


def list_balances_request(
    credit_entitlement_id: str, *, page_number: int, page_size: int
) -> APIRequest:
    """``GET /credit-entitlements/{id}/balances`` for one page."""
    return APIRequest(
        "GET",
        _balances_path(credit_entitlement_id),
        _page_query(page_number, page_size),
    )


GRANT_STATUSES: tuple[GrantStatus, ...] = ("active", "expired", "depleted")
TRANSACTION_TYPES: tuple[LedgerTransactionType, ...] = LedgerTransactionType.__args__  # type: ignore[attr-defined]


def list_grants_request(
    credit_entitlement_id: str,
    customer_id: str,
    *,
    page_number: int,
    page_size: int,
    status: GrantStatus | None,
) -> APIRequest:
    """``GET /credit-entitlements/{id}/balances/{customer_id}/grants`` for one page."""
    return APIRequest(
        "GET",
        _balances_path(credit_entitlement_id, customer_id) + "/grants",
        _page_query(page_number, page_size, status=status),
    )


def check_grant_status(status: str | None) -> None:
    """``ValueError`` naming ``status`` unless it is ``None`` or a grant status."""
    if status is not None and status not in GRANT_STATUSES:
        raise ValueError(f"status must be one of {', '.join(GRANT_STATUSES)}, got {status!r}")


def check_transaction_type(transaction_type: str | None) -> None:
    """``ValueError`` naming ``transaction_type`` unless it is ``None`` or a ledger type."""
    if transaction_type is not None and transaction_type not in TRANSACTION_TYPES:
        raise ValueError(
            f"transaction_type must be one of {', '.join(TRANSACTION_TYPES)}, "
            f"got {transaction_type!r}"
        )


def list_ledger_request(
    credit_entitlement_id: str,
    customer_id: str,
    *,
    page_number: int,
    page_size: int,
    transaction_type: LedgerTransactionType | None,
    start: datetime | str | None,
    end: datetime | str | None,
) -> APIRequest:
    """``GET /credit-entitlements/{id}/balances/{customer_id}/ledger`` for one page."""
    query = _page_query(
        page_number,
        page_size,
        transaction_type=transaction_type,
        start_date=_time_param(start),
        end_date=_time_param(end),
    )
    return APIRequest("GET", _balances_path(credit_entitlement_id, customer_id) + "/ledger", query)


def usage_history_request(
    subscription_id: str,
    *,
    page_number: int,
    page_size: int,
    meter_id: str | None,
    start: datetime | str | None,
    end: datetime | str | None,
) -> APIRequest:
    """``GET /subscriptions/{subscription_id}/usage-history`` for one page."""
    query = _page_query(
        page_number,
        page_size,
        meter_id=meter_id,
        start_date=_time_param(start),
        end_date=_time_param(end),
    )
    return APIRequest(
        "GET",
        f"/subscriptions/{_segment(subscription_id, 'subscription_id')}/usage-history",
        query,
    )


MAX_WEBHOOK_PAGE = 100
"""Most endpoints one ``GET /webhooks`` page holds."""


def _webhook_path(webhook_id: str, suffix: str = "") -> str:
    return f"/webhooks/{_segment(webhook_id, 'webhook_id')}{suffix}"


def _webhook_fields(
    *,
    url: str | None,
    description: str | None,
    disabled: bool | None,
    filter_types: Sequence[str] | None,
    metadata: Mapping[str, str] | None,
    rate_limit: int | None,
) -> dict[str, Any]:
    """The given (not ``None``) fields of a webhook endpoint, checked."""
    body: dict[str, Any] = {}
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http or https URL, got {url!r}")
        body["url"] = url
    if description is not None:
        body["description"] = description
    if disabled is not None:
        body["disabled"] = bool(disabled)
    if filter_types is not None:
        if isinstance(filter_types, str) or not all(isinstance(t, str) and t for t in filter_types):
            raise ValueError(
                "filter_types must be a list of event type names, e.g. ['credit.balance_low']"
            )
        body["filter_types"] = list(filter_types)
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must map strings to strings")
        body["metadata"] = dict(metadata)
    if rate_limit is not None:
        if isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 0:
            raise ValueError(f"rate_limit must be an int >= 0, got {rate_limit!r}")
        body["rate_limit"] = rate_limit
    return body


def create_webhook_request(
    *,
    url: str,
    description: str | None,
    disabled: bool | None,
    filter_types: Sequence[str] | None,
    headers: Mapping[str, str] | None,
    metadata: Mapping[str, str] | None,
    rate_limit: int | None,
    idempotency_key: str | None,
) -> APIRequest:
    """``POST /webhooks``."""
    if url is None:
        raise ValueError("url is required: an http or https URL")
    body = _webhook_fields(
        url=url,
        description=description,
        disabled=disabled,
        filter_types=filter_types,
        metadata=metadata,
        rate_limit=rate_limit,
    )
    if headers is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ValueError("headers must map strings to strings")
        body["headers"] = dict(headers)
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return APIRequest("POST", "/webhooks", body=_json(body), idempotent=False)


def update_webhook_request(
    webhook_id: str,
    *,
    url: str | None,
    description: str | None,
    disabled: bool | None,
    filter_types: Sequence[str] | None,
    metadata: Mapping[str, str] | None,
    rate_limit: int | None,
) -> APIRequest:
    """``PATCH /webhooks/{webhook_id}`` with the fields given."""
    body = _webhook_fields(
        url=url,
        description=description,
        disabled=disabled,
        filter_types=filter_types,
        metadata=metadata,
        rate_limit=rate_limit,
    )
    return APIRequest("PATCH", _webhook_path(webhook_id), body=_json(body))


def list_webhooks_request(*, limit: int, iterator: str | None) -> APIRequest:
    """``GET /webhooks`` for one page (after the endpoint ``iterator`` names)."""
    params = {"limit": str(limit)}
    if iterator is not None:
        params["iterator"] = iterator
    return APIRequest("GET", "/webhooks", params)


def check_webhook_page(page_size: int) -> int:
    """Check a webhook page size (1 to 100)."""
    if not isinstance(page_size, int) or not 1 <= page_size <= MAX_WEBHOOK_PAGE:
        raise ValueError(
            f"page_size must be an int from 1 to {MAX_WEBHOOK_PAGE}, got {page_size!r}"
        )
    return page_size


def webhook_request(method: str, webhook_id: str, suffix: str = "") -> APIRequest:
    """``GET``/``DELETE /webhooks/{id}`` or ``GET /webhooks/{id}/secret``."""
    return APIRequest(method, _webhook_path(webhook_id, suffix))


def decode_secret(data: Any) -> str:
    """The ``secret`` of a ``GET /webhooks/{id}/secret`` answer."""
    secret = data.get("secret") if isinstance(data, dict) else None
    if not isinstance(secret, str) or not secret:
        raise UnexpectedResponseError(
            "the answer to GET /webhooks/{id}/secret holds no secret", status_code=200
        )
    return secret


def _error_message(response: httpx2.Response, body: object, secret: str) -> str:
    """The server's explanation of an error, key redacted before anything is cut short."""
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or json.dumps(value)
            if isinstance(value, str) and value:
                return redact(value, secret)
    violations = response.headers.get("sl-violations")
    if violations:
        try:
            items = json.loads(violations)
            return redact("; ".join(str(item.get("message")) for item in items), secret)
        except (ValueError, AttributeError):
            return redact(violations, secret)[:500]
    text = response.text.strip()
    if text and not isinstance(body, dict):
        return redact(text, secret)[:500]
    return redact(response.reason_phrase, secret) or "error"


MIN_KEY_PIECE = 8
"""A text ending with this many first characters of the key (or more) lost the rest of it."""


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced by ``***``.

    A tail that is the start of ``secret`` (an echo that was cut short) is replaced as well.
    """
    if not secret:
        return text
    text = text.replace(secret, "***")
    end = text.rstrip()
    for size in range(min(len(secret) - 1, len(end)), MIN_KEY_PIECE - 1, -1):
        if end.endswith(secret[:size]):
            return end[:-size] + "***"
    return text


def _redact(value: Any, secret: str) -> Any:
    """``value`` with ``secret`` redacted from every string in it (keys included)."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, dict):
        return {_redact(k, secret): _redact(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item, secret) for item in value]
    return value


def request_id(response: httpx2.Response, secret: str) -> str | None:
    """The server's request id header (``x-request-id`` or ``request-id``), key redacted."""
    value = response.headers.get("x-request-id") or response.headers.get("request-id")
    return redact(value, secret) if value else None


def decode_response(response: httpx2.Response, secret: str) -> Any:
    """Return the decoded JSON of a 2xx response (``None`` when it is empty or not JSON),
    else raise the :class:`~dodo_ingest.APIStatusError` subclass for its status.

    ``secret`` (the API key) is blanked out of an error's message, request id and body, in
    case the server (or a proxy) echoes the request back.
    """
    status = response.status_code
    if 200 <= status < 300:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None
    raise status_error(response, secret)


EXCERPT_LENGTH = 200
"""Characters of an unexpected body kept in :class:`~dodo_ingest.UnexpectedResponseError`."""


def _excerpt(response: httpx2.Response, secret: str) -> str:
    """The start of the body as text: whitespace runs collapsed, key redacted, then cut."""
    text = redact(" ".join(response.text.split()), secret)
    return text if len(text) <= EXCERPT_LENGTH else text[:EXCERPT_LENGTH] + "..."


def _ingest_problem(response: httpx2.Response) -> tuple[int | None, str]:
    """``(ingested_count, "")`` for a valid acknowledgement, else ``(None, what is wrong)``."""
    if not response.content:
        return None, "the body is empty"
    try:
        data = response.json()
    except (ValueError, RecursionError):
        return None, "the body is not valid JSON"
    if not isinstance(data, dict):
        return None, "the body is not a JSON object"
    count = data.get("ingested_count")
    if type(count) is not int:
        return None, "it has no integer ingested_count"
    if count < 0:
        return None, "its ingested_count is negative"
    return count, ""


def decode_ingest_response(response: httpx2.Response, secret: str) -> IngestResult:
    """The acknowledgement of ``POST /events/ingest``.

    The only acknowledgement is a 2xx whose body is a JSON object with an integer (not a
    boolean) ``ingested_count`` >= 0. Any other 2xx (empty, HTML, truncated JSON, JSON without
    the count) raises :class:`~dodo_ingest.UnexpectedResponseError`; a non-2xx raises the
    :class:`~dodo_ingest.APIStatusError` subclass for its status. ``secret`` (the API key) is
    blanked out of the error.
    """
    status = response.status_code
    if not 200 <= status < 300:
        raise status_error(response, secret)
    count, problem = _ingest_problem(response)
    if count is not None:
        return IngestResult(ingested_count=count)
    rid = request_id(response, secret)
    excerpt = _excerpt(response, secret)
    message = f"HTTP {status} answer to POST /events/ingest is not an acknowledgement: {problem}"
    if excerpt:
        message += f"; body: {excerpt!r}"
    if rid:
        message += f" (request id {rid})"
    raise UnexpectedResponseError(message, status_code=status, request_id=rid, body_excerpt=excerpt)


def status_error(response: httpx2.Response, secret: str) -> APIStatusError:
    """The :class:`~dodo_ingest.APIStatusError` for a non-2xx ``response``, key redacted."""
    status = response.status_code
    try:
        body: object = response.json() if response.content else None
    except ValueError:
        body = None
    should_retry_header = response.headers.get("x-should-retry")
    should_retry = None
    if should_retry_header in ("true", "false"):
        should_retry = should_retry_header == "true"
    error_class: type[APIStatusError] = error_class_for_status(status)
    return error_class(
        _error_message(response, body, secret),
        status_code=status,
        request_id=request_id(response, secret),
        body=_redact(body, secret),
        retry_after=parse_retry_after(response.headers),
        should_retry=should_retry,
    )
