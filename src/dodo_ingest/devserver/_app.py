"""The dev server's ASGI application (Starlette): the billing API's usage-billing endpoints
plus a dev-only namespace ``/_dev`` (health, usage report, meter-to-credits links)."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._credits import (
    balance_of,
    check_entitlement_body,
    credit_usage,
    cycle_body,
    link_body,
    link_meter,
    make_ledger_entry,
    patch_entitlement,
    start_cycle,
)
from ._errors import APIError
from ._faults import FaultInjector
from ._ingest import parse_ingest_body
from ._json import loads
from ._lifecycle import GRANT_STATUSES, CreditLedger, grant_body, grant_status
from ._meters import check_meter_body
from ._stats import Stats
from ._store import Store
from ._time import format_us, parse_rfc3339_us
from ._webhooks import (
    DEFAULT_RETRY_DELAYS,
    WebhookDispatcher,
    add_webhook_headers,
    check_webhook_body,
    patch_webhook,
    webhook_body,
)

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_BODY_BYTES", "MAX_PAGE_SIZE", "AppState", "create_app"]

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body accepted (4 MiB); a larger one is answered 413."""
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
_INT32_MAX = 2**31 - 1
"""Paging parameters are int32 in the API's document."""
DEV_PREFIX = "/_dev/"
_RAW_RECEIVE = "dodo_ingest.devserver.receive"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class AppState:
    """What the application serves from: its store, accepted key, fault injector, counters,
    how late credit balances count usage, and the credit ledger.

    ``faults`` and ``deduction_lag`` may be replaced at any time (the next request uses the
    new value). The ledger reports every credit event to the webhook dispatcher.
    """

    store: Store
    api_key: str | None
    faults: FaultInjector
    stats: Stats
    deduction_lag: float = 0.0
    """Seconds after its arrival (by the server's clock) before an event counts against
    credit balances; 0 counts it at once."""
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    """Seconds (by the server's clock) before each retry of a failed webhook delivery."""
    ledger: CreditLedger = field(init=False)
    webhooks: WebhookDispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.webhooks = WebhookDispatcher(self.store, self.retry_delays, settle=self.settle_all)
        self.ledger = CreditLedger(self.store, self.webhooks.emit, self._lag_us)

    def _lag_us(self) -> int:
        return max(0, round(self.deduction_lag * 1_000_000))

    def settle_all(self) -> None:
        """Settle every balance in one transaction, their webhooks sent in time order."""
        with self.store.transaction(), self.webhooks.in_time_order():
            self.ledger.settle_all()

    def clock_moved(self) -> None:
        """What follows a move of the clock: its offset is saved and every balance settled
        (grants expire, usage whose lag passed is deducted)."""
        self.store.save_clock()
        self.settle_all()
        self.webhooks.wake()

    def settle_after_ingest(self, rows: list[list[Any]]) -> None:
        """Settle the balances that the usage in ``rows`` draws on."""
        store = self.store
        names = {row[2] for row in rows}
        customers = {row[1] for row in rows}
        with store.transaction(), self.webhooks.in_time_order():
            for meter_id, entitlement_id, _ in store.links():
                meter = store.get_meter(meter_id)
                if meter is None or meter["event_name"] not in names:
                    continue
                entitlement = store.get_entitlement(entitlement_id)
                if entitlement is None:
                    continue
                for _, customer_id in store.balance_owners(entitlement_id):
                    if customer_id in customers:
                        self.ledger.settle(entitlement, customer_id)


# --- plumbing ----------------------------------------------------------------------------


class _Observe:
    """Outermost ASGI middleware: counts answers by status (outside ``/_dev``) and keeps the
    server's own ``receive`` in the scope, which :class:`_DropConnection` needs."""

    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(DEV_PREFIX):
            await self.app(scope, receive, send)
            return
        scope[_RAW_RECEIVE] = receive

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.stats.count_status(message["status"])
            await send(message)

        await self.app(scope, receive, observe)


class _DropConnection(Response):
    """Closes the client's connection without answering (a reset or a lost acknowledgement).

    ASGI has no way to do this, so it aborts uvicorn's transport, which its request cycle (the
    owner of ``receive``) holds, then waits for the disconnect so that uvicorn does not answer
    500 in its place.
    """

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_receive = scope.get(_RAW_RECEIVE, receive)
        transport = getattr(getattr(raw_receive, "__self__", None), "transport", None)
        if transport is None:
            raise RuntimeError("dropping a connection needs uvicorn's HTTP protocol")
        transport.abort()
        while (await raw_receive())["type"] != "http.disconnect":
            pass


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(data, status_code=status, headers=headers)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return _json(error.body(), error.status)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return _json({"code": code, "message": str(error.detail)}, error.status_code)


async def _read_body(request: Request) -> bytes:
    """The whole body; 413 beyond :data:`MAX_BODY_BYTES` (read to the end first, so that
    the client, still sending, gets the answer rather than a broken pipe)."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > MAX_BODY_BYTES
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_large = True
            if not too_large:
                chunks.append(chunk)
    except ClientDisconnect:  # closed by the client, or by the server's read timeout
        raise APIError(400, "client_disconnected", "the client closed the connection") from None
    if too_large:
        raise APIError(
            413,
            "payload_too_large",
            f"the body exceeds the {MAX_BODY_BYTES // (1024 * 1024)} MiB limit; "
            "send fewer events per request",
        )
    return b"".join(chunks)


async def _read_json(request: Request) -> Any:
    return loads(await _read_body(request))


def _check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise APIError(
            422,
            "unsupported_media_type",
            f"the body must be sent as application/json, not {content_type or 'no type'!r}",
        )


def _int_param(request: Request, name: str, default: int, maximum: int = _INT32_MAX) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise APIError(422, "invalid_query", f"{name} must be an integer, got {raw!r}") from None
    if not 0 <= value <= maximum:
        raise APIError(422, "invalid_query", f"{name} must be from 0 to {maximum}, got {value}")
    return value


def _page(request: Request) -> tuple[int, int]:
    """``(offset, limit)`` from ``page_size`` (default 10, at most 100) and the 0-based
    ``page_number``."""
    size = _int_param(request, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    number = _int_param(request, "page_number", 0)
    return size * number, size


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return parse_rfc3339_us(raw)
    except ValueError:
        raise APIError(
            422, "invalid_query", f"{name} must be an RFC 3339 date-time, got {raw!r}"
        ) from None


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise APIError(422, "invalid_query", f"{name} must be true or false, got {raw!r}")
    return raw == "true"


# --- the application ---------------------------------------------------------------------


def create_app(state: AppState) -> ASGIApp:
    """Build the ASGI application serving ``state``."""
    store = state.store

    def authorize(request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        accepted = scheme.lower() == "bearer" and bool(token)
        if accepted and state.api_key is not None:
            accepted = hmac.compare_digest(token.encode(), state.api_key.encode())
        if not accepted:
            raise APIError(401, "unauthorized", "missing or invalid API key (Bearer token)")

    def api(handler: Handler) -> Handler:
        async def authorized(request: Request) -> Response:
            authorize(request)
            return await handler(request)

        return authorized

    def meter_or_404(meter_id: str) -> dict[str, Any]:
        meter = store.get_meter(meter_id)
        if meter is None:
            raise APIError(404, "not_found", f"no meter {meter_id!r}")
        return meter

    def entitlement_or_404(entitlement_id: str) -> dict[str, Any]:
        entitlement = store.get_entitlement(entitlement_id)
        if entitlement is None:
            raise APIError(404, "not_found", f"no credit entitlement {entitlement_id!r}")
        return entitlement

    # events

    async def ingest(request: Request) -> Response:
        body = await _read_body(request)
        faults = state.faults
        fault = faults.draw()
        if fault is not None:
            state.stats.count_fault(fault)
        if fault == "reset":
            return _DropConnection()
        if fault == "5xx":
            return _json({"code": "injected_fault", "message": "injected 5xx fault"}, 500)
        if fault == "429":
            return _json(
                {"code": "rate_limited", "message": "injected 429 fault"},
                429,
                {"Retry-After": f"{faults.retry_after:g}"},
            )
        try:
            _check_content_type(request)
            rows = parse_ingest_body(body, now=store.now_us())
        except APIError:
            if fault == "lost_ack":
                return _DropConnection()
            raise
        ingested = store.insert_events(rows)
        state.stats.count_ingest(ingested, len(rows) - ingested)
        if ingested:
            state.settle_after_ingest(rows)
        if fault == "lost_ack":
            return _DropConnection()
        if fault == "slow":
            await asyncio.sleep(faults.slow_delay)
        return _json({"ingested_count": ingested})

    async def list_events(request: Request) -> Response:
        offset, limit = _page(request)
        params = request.query_params
        event_name = params.get("event_name") or None
        meter_filter = None
        meter_id = params.get("meter_id")
        if meter_id:
            meter = meter_or_404(meter_id)
            if event_name is not None and event_name != meter["event_name"]:
                raise APIError(
                    400,
                    "event_name_mismatch",
                    f"event_name {event_name!r} disagrees with meter {meter_id!r}, which "
                    f"counts {meter['event_name']!r}",
                )
            event_name = meter["event_name"]
            meter_filter = meter["filter"]
        items = store.list_events(
            customer_id=params.get("customer_id") or None,
            event_name=event_name,
            start_us=_time_param(request, "start"),
            end_us=_time_param(request, "end"),
            meter_filter=meter_filter,
            offset=offset,
            limit=limit,
        )
        return _json({"items": items})

    async def get_event(request: Request) -> Response:
        event_id = request.path_params["event_id"]
        event = store.get_event(event_id)
        if event is None:
            raise APIError(404, "not_found", f"no event {event_id!r}")
        return _json(event)

    # meters

    async def create_meter(request: Request) -> Response:
        return _json(store.create_meter(check_meter_body(await _read_json(request))), 201)

    async def list_meters(request: Request) -> Response:
        offset, limit = _page(request)
        archived = _bool_param(request, "archived") or False
        return _json({"items": store.list_meters(archived=archived, offset=offset, limit=limit)})

    async def get_meter(request: Request) -> Response:
        return _json(meter_or_404(request.path_params["meter_id"]))

    async def archive_meter(request: Request) -> Response:
        meter_or_404(request.path_params["meter_id"])
        store.set_meter_archived(request.path_params["meter_id"], True)
        return Response(status_code=204)

    async def unarchive_meter(request: Request) -> Response:
        meter_or_404(request.path_params["meter_id"])
        store.set_meter_archived(request.path_params["meter_id"], False)
        return Response(status_code=200)

    # credit entitlements

    async def create_entitlement(request: Request) -> Response:
        entitlement = check_entitlement_body(await _read_json(request), store.now_us())
        store.create_entitlement(entitlement)
        return _json(entitlement, 201)

    async def list_entitlements(request: Request) -> Response:
        offset, limit = _page(request)
        deleted = _bool_param(request, "deleted") or False
        return _json(
            {"items": store.list_entitlements(offset=offset, limit=limit, deleted=deleted)}
        )

    async def update_entitlement(request: Request) -> Response:
        entitlement = entitlement_or_404(request.path_params["entitlement_id"])
        patched = patch_entitlement(entitlement, await _read_json(request), store.now_us())
        store.update_entitlement(patched)
        return Response(status_code=204)

    async def delete_entitlement(request: Request) -> Response:
        entitlement = entitlement_or_404(request.path_params["entitlement_id"])
        store.set_entitlement_deleted(entitlement["id"], True)
        return Response(status_code=204)

    async def undelete_entitlement(request: Request) -> Response:
        entitlement = entitlement_or_404(request.path_params["entitlement_id"])
        store.set_entitlement_deleted(entitlement["id"], False)
        return Response(status_code=204)

    def live_entitlement_or_404(entitlement_id: str) -> dict[str, Any]:
        entitlement = entitlement_or_404(entitlement_id)
        if store.entitlement_deleted(entitlement_id):
            raise APIError(404, "not_found", f"credit entitlement {entitlement_id!r} is deleted")
        return entitlement

    async def customer_entitlements(request: Request) -> Response:
        customer_id = request.path_params["customer_id"]
        items = []
        for entitlement_id, owner in store.balance_owners():
            entitlement = store.get_entitlement(entitlement_id)
            if owner != customer_id or entitlement is None:
                continue
            if store.entitlement_deleted(entitlement_id):
                continue
            balance, overage = state.ledger.balance_of(entitlement, customer_id)
            items.append(
                {
                    "credit_entitlement_id": entitlement_id,
                    "name": entitlement["name"],
                    "unit": entitlement["unit"],
                    "description": entitlement["description"],
                    "balance": balance,
                    "overage": overage,
                }
            )
        return _json({"items": items})

    async def subscription_credit_usage(request: Request) -> Response:
        subscription_id = request.path_params["subscription_id"]
        cycles = [c for c in store.cycles() if c["id"] == subscription_id]
        if not cycles:
            raise APIError(
                404, "not_found", f"no subscription (dev credit cycle) {subscription_id!r}"
            )
        cycle = cycles[0]
        entitlement = entitlement_or_404(cycle["credit_entitlement_id"])
        balance, overage = state.ledger.totals(entitlement, cycle["customer_id"])
        return _json(
            {
                "subscription_id": subscription_id,
                "items": [credit_usage(entitlement, balance, overage)],
            }
        )

    async def get_entitlement(request: Request) -> Response:
        return _json(entitlement_or_404(request.path_params["entitlement_id"]))

    async def list_balances(request: Request) -> Response:
        entitlement = entitlement_or_404(request.path_params["entitlement_id"])
        offset, limit = _page(request)
        records = store.list_balance_rows(
            entitlement["id"],
            customer_id=request.query_params.get("customer_id") or None,
            offset=offset,
            limit=limit,
        )
        return _json({"items": [balance_of(state.ledger, entitlement, r) for r in records]})

    def balance_or_404(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        entitlement = entitlement_or_404(request.path_params["entitlement_id"])
        customer_id = request.path_params["customer_id"]
        record = store.get_balance_row(entitlement["id"], customer_id)
        if record is None:
            raise APIError(
                404,
                "not_found",
                f"customer {customer_id!r} has no balance of {entitlement['id']!r}",
            )
        return entitlement, record

    async def get_balance(request: Request) -> Response:
        entitlement, record = balance_or_404(request)
        return _json(balance_of(state.ledger, entitlement, record))

    async def create_ledger_entry(request: Request) -> Response:
        entitlement = live_entitlement_or_404(request.path_params["entitlement_id"])
        body = await _read_json(request)
        entry = make_ledger_entry(
            state.ledger, entitlement, request.path_params["customer_id"], body
        )
        return _json(entry, 201)

    async def list_grants(request: Request) -> Response:
        entitlement, record = balance_or_404(request)
        status = request.query_params.get("status") or None
        if status is not None and status not in GRANT_STATUSES:
            raise APIError(
                422,
                "invalid_query",
                f"status must be one of {', '.join(GRANT_STATUSES)}, got {status!r}",
            )
        offset, limit = _page(request)
        customer_id = record["customer_id"]
        state.ledger.settle(entitlement, customer_id)
        grants = [
            grant_body(grant, entitlement["precision"])
            for grant in store.grants(entitlement["id"], customer_id)
            if status is None or grant_status(grant) == status
        ]
        return _json({"items": grants[offset : offset + limit]})

    async def list_ledger(request: Request) -> Response:
        entitlement, record = balance_or_404(request)
        offset, limit = _page(request)
        start = _time_param(request, "start_date")
        end = _time_param(request, "end_date")
        kind = request.query_params.get("transaction_type") or None
        customer_id = record["customer_id"]
        state.ledger.settle(entitlement, customer_id)
        entries = []
        for entry in reversed(store.ledger(entitlement["id"], customer_id)):
            if "transaction_type" not in entry:  # written before the ledger kept its types
                continue
            created = parse_rfc3339_us(entry["created_at"])
            if kind is not None and entry["transaction_type"] != kind:
                continue
            if (start is not None and created < start) or (end is not None and created > end):
                continue
            entries.append(entry)
        return _json({"items": entries[offset : offset + limit]})

    # webhooks

    def webhook_or_404(webhook_id: str) -> dict[str, Any]:
        webhook = store.get_webhook(webhook_id)
        if webhook is None:
            raise APIError(404, "not_found", f"no webhook {webhook_id!r}")
        return webhook

    async def create_webhook(request: Request) -> Response:
        webhook = check_webhook_body(await _read_json(request), store.now_us())
        store.save_webhook(webhook)
        return _json(webhook_body(webhook))

    async def list_webhooks(request: Request) -> Response:
        limit = _int_param(request, "limit", MAX_PAGE_SIZE, MAX_PAGE_SIZE) or MAX_PAGE_SIZE
        webhooks = store.list_webhooks()
        iterator = request.query_params.get("iterator") or None
        if iterator is not None:
            ids = [webhook["id"] for webhook in webhooks]
            if iterator not in ids:
                raise APIError(422, "invalid_query", f"iterator {iterator!r} is not a webhook id")
            webhooks = webhooks[ids.index(iterator) + 1 :]
        page = webhooks[:limit]
        done = len(webhooks) <= limit
        return _json(
            {
                "data": [webhook_body(webhook) for webhook in page],
                "done": done,
                "iterator": None if done or not page else page[-1]["id"],
                "prev_iterator": iterator,
            }
        )

    async def get_webhook(request: Request) -> Response:
        return _json(webhook_body(webhook_or_404(request.path_params["webhook_id"])))

    async def update_webhook(request: Request) -> Response:
        webhook = webhook_or_404(request.path_params["webhook_id"])
        patched = patch_webhook(webhook, await _read_json(request), store.now_us())
        store.save_webhook(patched)
        return _json(webhook_body(patched))

    async def delete_webhook(request: Request) -> Response:
        if not store.delete_webhook(request.path_params["webhook_id"]):
            raise APIError(404, "not_found", f"no webhook {request.path_params['webhook_id']!r}")
        return Response(status_code=200)

    async def get_webhook_headers(request: Request) -> Response:
        webhook = webhook_or_404(request.path_params["webhook_id"])
        return _json({"headers": webhook["headers"], "sensitive": []})

    async def patch_webhook_headers(request: Request) -> Response:
        webhook = webhook_or_404(request.path_params["webhook_id"])
        store.save_webhook(add_webhook_headers(webhook, await _read_json(request), store.now_us()))
        return Response(status_code=200)

    async def get_webhook_secret(request: Request) -> Response:
        return _json({"secret": webhook_or_404(request.path_params["webhook_id"])["secret"]})

    # dev-only

    async def create_cycle(request: Request) -> Response:
        return _json(start_cycle(state.ledger, await _read_json(request)), 201)

    async def list_cycles(request: Request) -> Response:
        state.settle_all()  # the periods shown are the current ones
        return _json({"items": [cycle_body(cycle) for cycle in store.cycles()]})

    async def webhook_deliveries(request: Request) -> Response:
        params = request.query_params
        items = state.webhooks.deliveries(
            webhook_id=params.get("webhook_id") or None,
            event_type=params.get("event_type") or None,
        )
        status = params.get("status") or None
        return _json({"items": [i for i in items if status is None or i["status"] == status]})

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def usage(request: Request) -> Response:
        params = request.query_params
        meter_id = params.get("meter_id")
        meters = [meter_or_404(meter_id)] if meter_id else store.all_meters()
        start_us, end_us = _time_param(request, "start"), _time_param(request, "end")
        items = []
        for meter in meters:
            totals = store.meter_usage(
                meter,
                customer_id=params.get("customer_id") or None,
                start_us=start_us,
                end_us=end_us,
            )
            for customer_id in sorted(totals):
                items.append(
                    {
                        "meter_id": meter["id"],
                        "meter_name": meter["name"],
                        "event_name": meter["event_name"],
                        "measurement_unit": meter["measurement_unit"],
                        "aggregation": meter["aggregation"],
                        "customer_id": customer_id,
                        "value": format(totals[customer_id].total(), "f"),
                        "event_count": totals[customer_id].events,
                    }
                )
        return _json({"items": items})

    def clock_body() -> dict[str, Any]:
        clock = store.clock
        return {
            "now": format_us(clock.now_us()),
            "offset_seconds": clock.offset_us / 1_000_000,
        }

    async def get_clock(request: Request) -> Response:
        return _json(clock_body())

    async def move_clock(request: Request) -> Response:
        body = await _read_json(request)
        if type(body) is not dict or len(body.keys() & {"now", "advance"}) != 1:
            raise APIError(
                422,
                "invalid_request",
                'the body must be {"now": "<RFC 3339 date-time>"} or '
                '{"advance": {"days": n, "hours": n, "minutes": n, "seconds": n}}',
            )
        try:
            if "now" in body:
                if type(body["now"]) is not str:
                    raise ValueError("now must be an RFC 3339 date-time string")
                micros = parse_rfc3339_us(body["now"])
                store.clock.set(_EPOCH + timedelta(microseconds=micros))
            else:
                amounts = body["advance"]
                units = ("days", "hours", "minutes", "seconds")
                if type(amounts) is not dict or not amounts.keys() <= set(units):
                    raise ValueError(f"advance must be an object with any of {', '.join(units)}")
                store.clock.advance(**amounts)
        except ValueError as error:
            raise APIError(422, "invalid_request", str(error)) from None
        return _json(clock_body())

    async def create_link(request: Request) -> Response:
        body = await _read_json(request)
        if type(body) is not dict:
            raise APIError(422, "invalid_request", "the body must be a JSON object")
        for name in ("meter_id", "credit_entitlement_id"):
            if type(body.get(name)) is not str:
                raise APIError(422, "invalid_request", f"{name} is required: a string")
        units = body.get("meter_units_per_credit")
        if isinstance(units, bool) or not isinstance(units, (str, int)):
            raise APIError(
                422, "invalid_request", "meter_units_per_credit is required: a decimal string"
            )
        try:
            link = link_meter(store, body["meter_id"], body["credit_entitlement_id"], units)
        except LookupError as error:
            raise APIError(404, "not_found", str(error)) from None
        except ValueError as error:
            raise APIError(422, "invalid_request", str(error)) from None
        return _json(link, 201)

    async def list_links(request: Request) -> Response:
        return _json({"items": [link_body(*link) for link in store.links()]})

    routes = [
        Route("/events/ingest", api(ingest), methods=["POST"]),
        Route("/events", api(list_events), methods=["GET"]),
        Route("/events/{event_id:path}", api(get_event), methods=["GET"]),
        Route("/meters", api(list_meters), methods=["GET"]),
        Route("/meters", api(create_meter), methods=["POST"]),
        Route("/meters/{meter_id}", api(get_meter), methods=["GET"]),
        Route("/meters/{meter_id}", api(archive_meter), methods=["DELETE"]),
        Route("/meters/{meter_id}/unarchive", api(unarchive_meter), methods=["POST"]),
        Route("/credit-entitlements", api(list_entitlements), methods=["GET"]),
        Route("/credit-entitlements", api(create_entitlement), methods=["POST"]),
        Route("/credit-entitlements/{entitlement_id}", api(get_entitlement), methods=["GET"]),
        Route("/credit-entitlements/{entitlement_id}", api(update_entitlement), methods=["PATCH"]),
        Route("/credit-entitlements/{entitlement_id}", api(delete_entitlement), methods=["DELETE"]),
        Route(
            "/credit-entitlements/{entitlement_id}/undelete",
            api(undelete_entitlement),
            methods=["POST"],
        ),
        Route(
            "/customers/{customer_id}/credit-entitlements",
            api(customer_entitlements),
            methods=["GET"],
        ),
        Route(
            "/subscriptions/{subscription_id}/credit-usage",
            api(subscription_credit_usage),
            methods=["GET"],
        ),
        Route(
            "/credit-entitlements/{entitlement_id}/balances", api(list_balances), methods=["GET"]
        ),
        Route(
            "/credit-entitlements/{entitlement_id}/balances/{customer_id}",
            api(get_balance),
            methods=["GET"],
        ),
        Route(
            "/credit-entitlements/{entitlement_id}/balances/{customer_id}/ledger-entries",
            api(create_ledger_entry),
            methods=["POST"],
        ),
        Route(
            "/credit-entitlements/{entitlement_id}/balances/{customer_id}/grants",
            api(list_grants),
            methods=["GET"],
        ),
        Route(
            "/credit-entitlements/{entitlement_id}/balances/{customer_id}/ledger",
            api(list_ledger),
            methods=["GET"],
        ),
        Route("/webhooks", api(list_webhooks), methods=["GET"]),
        Route("/webhooks", api(create_webhook), methods=["POST"]),
        Route("/webhooks/{webhook_id}", api(get_webhook), methods=["GET"]),
        Route("/webhooks/{webhook_id}", api(update_webhook), methods=["PATCH"]),
        Route("/webhooks/{webhook_id}", api(delete_webhook), methods=["DELETE"]),
        Route("/webhooks/{webhook_id}/secret", api(get_webhook_secret), methods=["GET"]),
        Route("/webhooks/{webhook_id}/headers", api(get_webhook_headers), methods=["GET"]),
        Route("/webhooks/{webhook_id}/headers", api(patch_webhook_headers), methods=["PATCH"]),
        Route("/_dev/health", health, methods=["GET"]),
        Route("/_dev/webhook-deliveries", webhook_deliveries, methods=["GET"]),
        Route("/_dev/credit-cycles", list_cycles, methods=["GET"]),
        Route("/_dev/credit-cycles", create_cycle, methods=["POST"]),
        Route("/_dev/usage", usage, methods=["GET"]),
        Route("/_dev/clock", get_clock, methods=["GET"]),
        Route("/_dev/clock", move_clock, methods=["POST"]),
        Route("/_dev/credit-links", list_links, methods=["GET"]),
        Route("/_dev/credit-links", create_link, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={APIError: _api_error, HTTPException: _http_error},
    )
    return _Observe(app, state.stats)
