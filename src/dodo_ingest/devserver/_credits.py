"""Credit entitlements: checking requests, and computing a customer's balance and overage.

A customer's balance is its grants (``credit`` ledger entries) minus its debits minus the usage
of every meter linked to the entitlement, divided by the link's meter units per credit. What is
left is ``balance``; usage beyond the grants is ``overage`` (one of them is zero). Both are
rounded half-up to the entitlement's ``precision``. Usage counts all of the customer's events
of a linked meter, from any time, that arrived at or before a cut-off: now, or ``deduction_lag``
seconds ago on a server that deducts late (as the real API deducts asynchronously).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from ._errors import APIError
from ._store import BUSINESS_ID, Store, new_id
from ._time import format_us

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
        if body.get(name) is not None and type(body[name]) is not int:
            raise _invalid(f"{name} must be an integer or null")
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


def parse_units_per_credit(value: Decimal | str | int) -> Decimal:
    """Check a link's meter units per credit (a positive decimal); raise ``ValueError``."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"meter_units_per_credit must be a decimal, got {value!r}") from None
    if not number.is_finite() or number <= 0:
        raise ValueError(f"meter_units_per_credit must be positive, got {value!r}")
    return number


def _net(store: Store, entitlement_id: str, customer_id: str, arrived_by_us: int | None) -> Decimal:
    """Grants minus debits minus linked usage, in credits (unrounded). Usage counts the
    events that arrived at or before ``arrived_by_us`` (all of them when ``None``)."""
    credits, debits = store.ledger_totals(entitlement_id, customer_id)
    used = Decimal(0)
    for meter_id, _, units_per_credit in store.links(entitlement_id):
        meter = store.get_meter(meter_id)
        if meter is None:
            continue
        usage = store.meter_usage(meter, customer_id=customer_id, arrived_by_us=arrived_by_us).get(
            customer_id
        )
        if usage is not None:
            used += usage.total() / units_per_credit
    return credits - debits - used


def _split(net: Decimal, precision: int) -> tuple[str, str]:
    """``(balance, overage)`` strings of a net amount rounded to ``precision`` places."""
    quantum = Decimal(1).scaleb(-precision)
    balance = max(net, Decimal(0)).quantize(quantum, ROUND_HALF_UP)
    overage = max(-net, Decimal(0)).quantize(quantum, ROUND_HALF_UP)
    return _plain(balance), _plain(overage)


def balance_of(
    store: Store,
    entitlement: dict[str, Any],
    record: dict[str, Any],
    *,
    arrived_by_us: int | None = None,
) -> dict[str, Any]:
    """A ``CustomerCreditBalance`` for a balance record of ``store.get_balance_row``; usage
    counts the events that arrived at or before ``arrived_by_us`` (all when ``None``)."""
    net = _net(store, entitlement["id"], record["customer_id"], arrived_by_us)
    balance, overage = _split(net, entitlement["precision"])
    return {
        **record,
        "credit_entitlement_id": entitlement["id"],
        "balance": balance,
        "overage": overage,
        "last_transaction_at": record["updated_at"],
    }


def make_ledger_entry(
    store: Store,
    entitlement: dict[str, Any],
    customer_id: str,
    body: object,
    *,
    arrived_by_us: int | None = None,
) -> dict[str, Any]:
    """Apply a credit (a new grant) or debit to a customer's balance; return the stored entry.

    The balance before and after counts the usage that arrived at or before
    ``arrived_by_us`` (all of it when ``None``), as :func:`balance_of` does.

    Raises :class:`APIError`: 422 for a bad body (``amount`` must be a positive decimal string
    with at most 9 integer digits and at most ``precision`` decimal places; ``entry_type`` is
    ``credit`` or ``debit``), 409 when the ``idempotency_key`` was used before, 400 when a
    debit exceeds the balance.
    """
    if type(body) is not dict:
        raise _invalid("the body must be a JSON object")
    entry_type = body.get("entry_type")
    if entry_type not in ("credit", "debit"):
        raise _invalid(f"entry_type must be 'credit' or 'debit', got {entry_type!r}")
    amount = _decimal(body.get("amount"), "amount")
    precision = entitlement["precision"]
    if amount <= 0 or amount.adjusted() >= MAX_AMOUNT_INTEGER_DIGITS:
        raise _invalid(
            f"amount must be positive with at most {MAX_AMOUNT_INTEGER_DIGITS} integer digits"
        )
    if amount != amount.quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP):
        raise _invalid(f"amount has more than the entitlement's {precision} decimal places")
    metadata = body.get("metadata") or {}
    reason = body.get("reason")
    key = body.get("idempotency_key")
    if type(metadata) is not dict or (reason is not None and type(reason) is not str):
        raise _invalid("metadata must be an object and reason a string")
    if key is not None:
        if type(key) is not str:
            raise _invalid("idempotency_key must be a string")
        if store.find_ledger_entry(entitlement["id"], customer_id, key) is not None:
            raise APIError(409, "idempotency_key_exists", f"idempotency key {key!r} already used")
    before = _net(store, entitlement["id"], customer_id, arrived_by_us)
    is_credit = entry_type == "credit"
    if not is_credit and amount > before:
        raise APIError(
            400,
            "insufficient_balance",
            f"cannot debit {_plain(amount)}: the balance is {_split(before, precision)[0]}",
        )
    after = before + amount if is_credit else before - amount
    balance_before, overage_before = _split(before, precision)
    balance_after, overage_after = _split(after, precision)
    entry = {
        "id": new_id("cle"),
        "customer_id": customer_id,
        "credit_entitlement_id": entitlement["id"],
        "created_at": format_us(store.now_us()),
        "entry_type": entry_type,
        "is_credit": is_credit,
        "amount": _plain(amount),
        "balance_before": balance_before,
        "balance_after": balance_after,
        "overage_before": overage_before,
        "overage_after": overage_after,
        "grant_id": new_id("cgr") if is_credit else None,
        "reason": reason,
        "metadata": metadata,
    }
    store.add_ledger_entry(entry, key)
    return entry


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
