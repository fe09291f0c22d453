"""Credit entitlements: checking requests, ledger entries and balances as the API shows them.

The lifecycle behind a balance (grants, FIFO draws, usage, expiry) is in ``_lifecycle``.
Amounts are shown rounded half-up to the entitlement's ``precision``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from ._errors import APIError
from ._lifecycle import DEFAULT_LOW_BALANCE_PERCENT, CreditLedger, rounded
from ._store import BUSINESS_ID, Store, new_id
from ._time import format_us, parse_rfc3339_us

__all__ = [
    "OVERAGE_BEHAVIORS",
    "balance_of",
    "check_entitlement_body",
    "link_body",
    "link_meter",
    "make_ledger_entry",
    "parse_units_per_credit",
]

OVERAGE_BEHAVIORS = (
    "forgive_at_reset",
    "invoice_at_billing",
    "carry_deficit",
    "carry_deficit_auto_repay",
)
ROLLOVER_INTERVALS = ("Day", "Week", "Month", "Year")
MAX_AMOUNT_INTEGER_DIGITS = 9
_OPTIONAL_INTS = (
    "expires_after_days",
    "max_rollover_count",
    "rollover_percentage",
    "rollover_timeframe_count",
)


def _invalid(message: str) -> APIError:
    return APIError(422, "invalid_request", message)


def _decimal(value: object, name: str) -> Decimal:
    if type(value) not in (str, int):
        raise _invalid(f"{name} must be a decimal string")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(f"{name} must be a decimal string, got {value!r}") from None
    if not number.is_finite():
        raise _invalid(f"{name} must be a finite decimal, got {value!r}")
    return number


def _plain(number: Decimal) -> str:
    return format(number, "f")


def check_entitlement_body(body: object, now_us: int) -> dict[str, Any]:
    """Check a ``POST /credit-entitlements`` body; return the new entitlement as the API does.

    Required: ``name``, ``unit`` (strings), ``precision`` (0 to 10), ``overage_enabled`` and
    ``rollover_enabled`` (booleans). Raises :class:`APIError` 422 naming the field.
    """
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    for name in ("name", "unit"):
        if type(body.get(name)) is not str or not body[name]:
            raise _invalid(f"{name} is required: a non-empty string")
    precision = body.get("precision")
    if type(precision) is not int or not 0 <= precision <= 10:
        raise _invalid(f"precision is required: an integer from 0 to 10, got {precision!r}")
    for name in ("overage_enabled", "rollover_enabled"):
        if type(body.get(name)) is not bool:
            raise _invalid(f"{name} is required: a boolean")
    behavior = body.get("overage_behavior") or "forgive_at_reset"
    if behavior not in OVERAGE_BEHAVIORS:
        raise _invalid(f"overage_behavior must be one of {', '.join(OVERAGE_BEHAVIORS)}")
    for name in ("currency", "description", "rollover_timeframe_interval"):
        if body.get(name) is not None and type(body[name]) is not str:
            raise _invalid(f"{name} must be a string or null")
    for name in _OPTIONAL_INTS:
        value = body.get(name)
        if value is not None and (type(value) is not int or value < 0):
            raise _invalid(f"{name} must be an integer >= 0 or null, got {value!r}")
    percentage = body.get("rollover_percentage")
    if percentage is not None and percentage > 100:
        raise _invalid(f"rollover_percentage must be from 0 to 100, got {percentage}")
    interval = body.get("rollover_timeframe_interval")
    if interval is not None and interval not in ROLLOVER_INTERVALS:
        raise _invalid(
            f"rollover_timeframe_interval must be one of {', '.join(ROLLOVER_INTERVALS)}, "
            f"got {interval!r}"
        )
    if (interval is None) != (body.get("rollover_timeframe_count") is None):
        raise _invalid(
            "rollover_timeframe_count and rollover_timeframe_interval go together: "
            "give both or neither"
        )
    price = body.get("price_per_unit")
    limit = body.get("overage_limit")
    overage_limit: int | str | None = None
    if limit is not None:
        number = _decimal(limit, "overage_limit")
        overage_limit = int(number) if number == number.to_integral_value() else _plain(number)
    now = format_us(now_us)
    return {
        "id": new_id("cent"),
        "business_id": BUSINESS_ID,
        "name": body["name"],
        "unit": body["unit"],
        "precision": precision,
        "overage_enabled": body["overage_enabled"],
        "rollover_enabled": body["rollover_enabled"],
        "overage_behavior": behavior,
        "currency": body.get("currency"),
        "description": body.get("description"),
        "price_per_unit": None if price is None else _plain(_decimal(price, "price_per_unit")),
        "overage_limit": overage_limit,
        **{name: body.get(name) for name in (*_OPTIONAL_INTS, "rollover_timeframe_interval")},
        "created_at": now,
        "updated_at": now,
    }


_FIXED = ("id", "business_id", "created_at")


def patch_entitlement(entitlement: dict[str, Any], body: object, now_us: int) -> dict[str, Any]:
    """Apply a ``PATCH /credit-entitlements/{id}`` body: the fields given replace the stored
    ones, and the result is checked as a new entitlement would be (422 naming the field)."""
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    fixed = [name for name in _FIXED if name in body]
    if "precision" in body and body["precision"] != entitlement["precision"]:
        fixed.append("precision")
    if fixed:
        raise _invalid(f"{fixed[0]} cannot be changed")
    merged = {**entitlement, **body}
    checked = check_entitlement_body(merged, now_us)
    return {**checked, **{name: entitlement[name] for name in _FIXED}}


def credit_usage(entitlement: dict[str, Any], balance: Decimal, overage: Decimal) -> dict[str, Any]:
    """An item of ``GET /subscriptions/{id}/credit-usage``: ``limit_reached`` when the
    balance is used up and overage is off, or the overage reached ``overage_limit``;
    ``remaining_headroom`` is the overage still allowed (``None`` when overage is off or
    unlimited)."""
    precision = entitlement["precision"]
    limit = entitlement["overage_limit"]
    enabled = entitlement["overage_enabled"]
    headroom: Decimal | None = None
    if enabled and limit is not None:
        headroom = max(Decimal(str(limit)) - overage, Decimal(0))
    reached = (balance <= 0 and not enabled) or (headroom is not None and headroom <= 0)
    return {
        "credit_entitlement_id": entitlement["id"],
        "credit_entitlement_name": entitlement["name"],
        "unit": entitlement["unit"],
        "balance": rounded(balance, precision),
        "overage": rounded(overage, precision),
        "overage_enabled": enabled,
        "overage_limit": None if limit is None else str(limit),
        "limit_reached": reached,
        "remaining_headroom": None if headroom is None else rounded(headroom, precision),
    }


def parse_units_per_credit(value: Decimal | str | int) -> Decimal:
    """Check a link's meter units per credit (a positive decimal); raise ``ValueError``."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"meter_units_per_credit must be a decimal, got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"meter_units_per_credit must be positive, got {value!r}")
    return number


def balance_of(
    ledger: CreditLedger, entitlement: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    """A ``CustomerCreditBalance`` for a balance record of ``store.get_balance_row``, settled
    to the server's time."""
    balance, overage = ledger.balance_of(entitlement, record["customer_id"])
    return {
        **record,
        "credit_entitlement_id": entitlement["id"],
        "balance": balance,
        "overage": overage,
        "last_transaction_at": record["updated_at"],
    }


def make_ledger_entry(
    ledger: CreditLedger,
    entitlement: dict[str, Any],
    customer_id: str,
    body: object,
) -> dict[str, Any]:
    """Apply a credit (a new grant) or debit (drawn from the oldest grants) to a customer's
    balance; return the answer of ``POST .../ledger-entries``.

    Raises :class:`APIError`: 422 for a bad body (``amount`` must be a positive decimal string
    with at most 9 integer digits and at most ``precision`` decimal places; ``entry_type`` is
    ``credit`` or ``debit``; ``expires_at``, for a credit, an RFC 3339 date-time after now),
    409 when the ``idempotency_key`` was used before, 400 when a debit exceeds the balance.
    """
    store = ledger.store
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    entry_type = body.get("entry_type")
    if entry_type not in ("credit", "debit"):
        raise _invalid(f"entry_type must be 'credit' or 'debit', got {entry_type!r}")
    amount = check_amount(body.get("amount"), "amount", entitlement["precision"])
    metadata = body.get("metadata") or {}
    reason = body.get("reason")
    key = body.get("idempotency_key")
    if type(metadata) is not dict or (reason is not None and type(reason) is not str):
        raise _invalid("metadata must be an object and reason a string")
    expires_us = _expires_at(body.get("expires_at"), entry_type, store.now_us())
    if key is not None:
        if type(key) is not str:
            raise _invalid("idempotency_key must be a string")
        if store.find_ledger_entry(entitlement["id"], customer_id, key) is not None:
            raise APIError(409, "idempotency_key_exists", f"idempotency key {key!r} already used")
    if entry_type == "credit":
        entry = ledger.grant(
            entitlement,
            customer_id,
            amount,
            expires_us=expires_us,
            lifetime_days=entitlement.get("expires_after_days"),
            metadata=metadata,
            description=reason,
            idempotency_key=key,
        )
    else:
        debited = ledger.debit(
            entitlement,
            customer_id,
            amount,
            metadata=metadata,
            description=reason,
            idempotency_key=key,
        )
        if debited is None:
            balance, _ = ledger.balance_of(entitlement, customer_id)
            raise APIError(
                400,
                "insufficient_balance",
                f"cannot debit {_plain(amount)}: the balance is {balance}",
            )
        entry = debited
    return {
        "id": entry["id"],
        "customer_id": customer_id,
        "credit_entitlement_id": entitlement["id"],
        "created_at": entry["created_at"],
        "entry_type": entry_type,
        "is_credit": entry["is_credit"],
        "amount": _plain(amount),
        "balance_before": entry["balance_before"],
        "balance_after": entry["balance_after"],
        "overage_before": entry["overage_before"],
        "overage_after": entry["overage_after"],
        "grant_id": entry["grant_id"] if entry_type == "credit" else None,
        "reason": reason,
        "metadata": metadata,
    }


def _expires_at(value: object, entry_type: str, now_us: int) -> int | None:
    """The ``expires_at`` of a credit, checked (``None`` when not given)."""
    if value is not None:
        if entry_type != "credit":
            raise _invalid("expires_at applies to credits only")
        if type(value) is not str:
            raise _invalid("expires_at must be an RFC 3339 date-time")
        try:
            moment = parse_rfc3339_us(value)
        except ValueError:
            raise _invalid(f"expires_at must be an RFC 3339 date-time, got {value!r}") from None
        if moment <= now_us:
            raise _invalid(f"expires_at must be after the server's time {format_us(now_us)}")
        return moment
    return None


def check_amount(value: object, name: str, precision: int) -> Decimal:
    """A positive decimal string with at most 9 integer digits and ``precision`` decimals;
    422 naming the field otherwise."""
    amount = _decimal(value, name)
    if amount <= 0 or amount.adjusted() >= MAX_AMOUNT_INTEGER_DIGITS:
        raise _invalid(
            f"{name} must be positive with at most {MAX_AMOUNT_INTEGER_DIGITS} integer digits"
        )
    if amount != amount.quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP):
        raise _invalid(f"{name} has more than the entitlement's {precision} decimal places")
    return amount


MAX_CYCLE_DAYS = 3660


def start_cycle(ledger: CreditLedger, body: object) -> dict[str, Any]:
    """Check a ``POST /_dev/credit-cycles`` body and start the cycle; return it as shown.

    ``credit_entitlement_id``, ``customer_id`` and ``amount`` are required; ``cycle_days``
    (1 to 3660, default 30), ``daily_amount`` and ``low_balance_percent`` (1 to 100, default
    10) are optional. Raises :class:`APIError` 422
    naming the field, 404 for an unknown entitlement.
    """
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    for name in ("credit_entitlement_id", "customer_id"):
        if type(body.get(name)) is not str or not body[name]:
            raise _invalid(f"{name} is required: a non-empty string")
    entitlement = ledger.store.get_entitlement(body["credit_entitlement_id"])
    if entitlement is None or ledger.store.entitlement_deleted(entitlement["id"]):
        raise APIError(404, "not_found", f"no credit entitlement {body['credit_entitlement_id']!r}")
    precision = entitlement["precision"]
    amount = check_amount(body.get("amount"), "amount", precision)
    days = body.get("cycle_days", 30)
    if type(days) is not int or not 1 <= days <= MAX_CYCLE_DAYS:
        raise _invalid(f"cycle_days must be an integer from 1 to {MAX_CYCLE_DAYS}, got {days!r}")
    daily = body.get("daily_amount")
    daily_amount = None if daily is None else check_amount(daily, "daily_amount", precision)
    percent = body.get("low_balance_percent")
    if percent is None:
        percent = DEFAULT_LOW_BALANCE_PERCENT
    if type(percent) is not int or not 1 <= percent <= 100:
        raise _invalid(f"low_balance_percent must be an integer from 1 to 100, got {percent!r}")
    cycle = ledger.start_cycle(
        entitlement, body["customer_id"], amount, days, daily_amount, percent
    )
    return cycle_body(cycle)


def cycle_body(cycle: dict[str, Any]) -> dict[str, Any]:
    """A credit cycle as ``/_dev/credit-cycles`` shows it."""
    drip = cycle["next_drip_us"]
    return {
        "id": cycle["id"],
        "credit_entitlement_id": cycle["credit_entitlement_id"],
        "customer_id": cycle["customer_id"],
        "amount": cycle["amount"],
        "cycle_days": cycle["cycle_days"],
        "daily_amount": cycle["daily_amount"],
        "low_balance_percent": cycle.get("low_balance_percent", DEFAULT_LOW_BALANCE_PERCENT),
        "current_period_start": format_us(cycle["period_start_us"]),
        "current_period_end": format_us(cycle["period_end_us"]),
        "next_daily_grant_at": None if drip is None else format_us(drip),
    }


def link_meter(
    store: Store, meter_id: str, entitlement_id: str, units_per_credit: Decimal | str | int
) -> dict[str, Any]:
    """Link a meter's usage to an entitlement: every ``units_per_credit`` meter units use one
    credit. Raises :class:`LookupError` for an unknown meter or entitlement and
    :class:`ValueError` for a units value that is not a positive decimal."""
    units = parse_units_per_credit(units_per_credit)
    if store.get_meter(meter_id) is None:
        raise LookupError(f"no meter {meter_id!r}")
    if store.get_entitlement(entitlement_id) is None:
        raise LookupError(f"no credit entitlement {entitlement_id!r}")
    store.link_meter(meter_id, entitlement_id, units)
    return link_body(meter_id, entitlement_id, units)


def link_body(meter_id: str, entitlement_id: str, units: Decimal) -> dict[str, Any]:
    """The JSON form of a meter-to-credits link."""
    return {
        "meter_id": meter_id,
        "credit_entitlement_id": entitlement_id,
        "meter_units_per_credit": _plain(units),
    }
