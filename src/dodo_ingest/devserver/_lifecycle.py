"""The credit lifecycle of a customer's balance: grants, FIFO draws, usage, expiry, ledger.

A balance is a list of **grants** (each credit ledger entry makes one, with an optional
``expires_at``) and an **overage** (what was used beyond them). Usage of linked meters and
debits draw on the oldest grants first (FIFO); what no grant covers becomes overage, as far
as the entitlement allows (none when ``overage_enabled`` is false, at most
``overage_limit``: usage beyond is not deducted). Under ``carry_deficit_auto_repay`` a new
grant first pays off the overage. When the server's clock passes a grant's ``expires_at``
the grant expires and what was left of it leaves the balance.

Nothing runs on its own: :meth:`CreditLedger.settle` brings a balance up to the server's time,
replaying in order what happened since it last ran (usage that became due, then each expiry
in turn), and every read and write of a balance settles it first. Each change is a ledger
entry (a ``CreditLedgerEntry``) and is reported to ``emit`` as a webhook event.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from ._store import BUSINESS_ID, Store, new_id
from ._time import format_us

__all__ = [
    "BRAND_ID",
    "DEFAULT_LOW_BALANCE_PERCENT",
    "GRANT_STATUSES",
    "TRANSACTION_WEBHOOKS",
    "CreditLedger",
    "Emit",
    "grant_body",
    "grant_status",
    "plain",
    "rounded",
]

BRAND_ID = "brand_devserver"
"""The ``brand_id`` of ledger entries and credit webhooks."""
DEFAULT_LOW_BALANCE_PERCENT = 10
"""``credit.balance_low`` fires when a balance falls below this share (in %) of what its
cycles grant per period (a cycle may set its own share), or without a cycle, of what its
unexpired grants gave."""

TRANSACTION_WEBHOOKS = {
    "credit_added": "credit.added",
    "credit_deducted": "credit.deducted",
    "credit_expired": "credit.expired",
    "credit_rolled_over": "credit.rolled_over",
    "rollover_forfeited": "credit.rollover_forfeited",
    "overage_charged": "credit.overage_charged",
    "overage_reset": "credit.overage_reset",
    "manual_adjustment": "credit.manual_adjustment",
}
"""The webhook event each ledger transaction type sends."""

AUTO_REPAY = "carry_deficit_auto_repay"
"""The only ``overage_behavior`` whose new credits pay off the overage first."""

GRANT_STATUSES = ("active", "expired", "depleted")
"""The ``status`` filter of ``GET .../grants``."""

Emit = Callable[[str, dict[str, Any], int], None]
"""Called with a webhook event type, its ``data`` and the server time (epoch µs) it happened."""

_ZERO = Decimal(0)
_US_PER_DAY = 86_400 * 1_000_000


def plain(number: Decimal) -> str:
    """A decimal as a plain string (no exponent)."""
    return format(number, "f")


def rounded(number: Decimal, precision: int) -> str:
    """A decimal rounded half-up to ``precision`` places, as a plain string."""
    return plain(number.quantize(Decimal(1).scaleb(-precision), ROUND_HALF_UP))


def grant_body(grant: dict[str, Any], precision: int) -> dict[str, Any]:
    """A grant as ``GET .../grants`` returns it (a ``BalanceListGrantsResponse``)."""
    expires = grant["expires_us"]
    return {
        "id": grant["id"],
        "credit_entitlement_id": grant["credit_entitlement_id"],
        "customer_id": grant["customer_id"],
        "created_at": format_us(grant["created_us"]),
        "updated_at": format_us(grant["updated_us"]),
        "initial_amount": rounded(Decimal(grant["initial"]), precision),
        "remaining_amount": rounded(Decimal(grant["remaining"]), precision),
        "is_expired": grant["expired"],
        "is_rolled_over": grant["rolled_over"],
        "rollover_count": grant["rollover_count"],
        "source_type": grant["source_type"],
        "source_id": grant["source_id"],
        "parent_grant_id": grant["parent_grant_id"],
        "expires_at": None if expires is None else format_us(expires),
        "metadata": grant["metadata"],
    }


def grant_status(grant: dict[str, Any]) -> str:
    """``expired``, ``depleted`` (nothing left) or ``active``."""
    if grant["expired"]:
        return "expired"
    return "depleted" if Decimal(grant["remaining"]) <= 0 else "active"


_INTERVAL_DAYS = {"Day": 1, "Week": 7, "Month": 30, "Year": 365}
"""Days of a ``rollover_timeframe_interval`` (a month is 30 days, a year 365)."""


def _next_moment(state: _Balance, cycles: list[dict[str, Any]], now_us: int) -> int | None:
    """The earliest expiry, cycle reset or daily grant due at or before ``now_us``."""
    moments = [
        g["expires_us"] for g in state.grants if not g["expired"] and g["expires_us"] is not None
    ]
    for cycle in cycles:
        moments.append(cycle["period_end_us"])
        if cycle["next_drip_us"] is not None:
            moments.append(cycle["next_drip_us"])
    due = [moment for moment in moments if moment <= now_us]
    return min(due, default=None)


def _rolls_at(grant: dict[str, Any], cycle: dict[str, Any], at_us: int) -> bool:
    """Whether ``grant`` is credit of ``cycle`` (its cycle grant or a rollover) ending at
    ``at_us`` with something left, and the entitlement may roll it over."""
    return (
        not grant["expired"]
        and grant["source_id"] == cycle["id"]
        and grant.get("kind") in ("cycle", "rollover")
        and grant["expires_us"] == at_us
        and Decimal(grant["remaining"]) > 0
    )


def _rollover_expiry(entitlement: dict[str, Any], at_us: int) -> int | None:
    """When a grant rolled over at ``at_us`` expires by the entitlement's rollover timeframe
    (``None``: at the end of the next cycle)."""
    count = entitlement.get("rollover_timeframe_count")
    days = _INTERVAL_DAYS.get(entitlement.get("rollover_timeframe_interval") or "")
    if not isinstance(count, int) or count <= 0 or days is None:
        return None
    return at_us + count * days * _US_PER_DAY


def _room(state: _Balance) -> Decimal | None:
    """How much usage the balance can still take: what is left plus the overage still
    allowed (none when ``overage_enabled`` is false, up to ``overage_limit`` otherwise);
    ``None`` when the overage is unlimited."""
    entitlement = state.entitlement
    if not entitlement["overage_enabled"]:
        headroom = _ZERO
    elif entitlement.get("overage_limit") is None:
        return None
    else:
        headroom = max(Decimal(str(entitlement["overage_limit"])) - state.overage, _ZERO)
    return state.balance() + headroom


class _Balance:
    """One customer's balance of one entitlement, loaded for a change."""

    def __init__(self, store: Store, entitlement: dict[str, Any], customer_id: str) -> None:
        self.store = store
        self.entitlement = entitlement
        self.customer_id = customer_id
        self.grants = store.grants(entitlement["id"], customer_id)
        self.overage = store.overage(entitlement["id"], customer_id)

    def live(self) -> list[dict[str, Any]]:
        """Unexpired grants with something left, oldest first."""
        return [g for g in self.grants if not g["expired"] and Decimal(g["remaining"]) > 0]

    def balance(self) -> Decimal:
        return sum((Decimal(g["remaining"]) for g in self.grants if not g["expired"]), _ZERO)

    def granted(self) -> Decimal:
        """What the unexpired grants gave (the base of the low-balance threshold)."""
        return sum((Decimal(g["initial"]) for g in self.grants if not g["expired"]), _ZERO)

    def save(self, grant: dict[str, Any], at_us: int) -> None:
        grant["updated_us"] = at_us
        self.store.save_grant(grant)

    def draw(self, amount: Decimal, at_us: int) -> tuple[Decimal, str | None]:
        """Take ``amount`` from the oldest grants first; return what no grant covered and
        the id of the first grant drawn on."""
        first: str | None = None
        for grant in self.live():
            if amount <= 0:
                break
            remaining = Decimal(grant["remaining"])
            taken = min(remaining, amount)
            grant["remaining"] = plain(remaining - taken)
            amount -= taken
            first = first or grant["id"]
            self.save(grant, at_us)
        return amount, first


class CreditLedger:
    """Applies the credit lifecycle to the balances in ``store``.

    ``lag_us()`` is the deduction lag in microseconds (usage counts once it arrived that long
    ago); ``emit`` receives a webhook event for every ledger entry and low-balance crossing;
    ``low_balance_percent`` sets that threshold.
    """

    def __init__(
        self,
        store: Store,
        emit: Emit,
        lag_us: Callable[[], int],
        low_balance_percent: int = DEFAULT_LOW_BALANCE_PERCENT,
    ) -> None:
        self.store = store
        self.emit = emit
        self.lag_us = lag_us
        self.low_balance_percent = low_balance_percent

    # --- reading ---------------------------------------------------------------------

    def totals(self, entitlement: dict[str, Any], customer_id: str) -> tuple[Decimal, Decimal]:
        """``(balance, overage)`` after settling, unrounded."""
        self.settle(entitlement, customer_id)
        state = _Balance(self.store, entitlement, customer_id)
        return state.balance(), state.overage

    # --- settling --------------------------------------------------------------------

    def settle(self, entitlement: dict[str, Any], customer_id: str) -> None:
        """Bring the customer's balance up to the server's time: usage that became due, each
        cycle reset, expiry and daily grant that passed, in the order they happened."""
        store = self.store
        with store.transaction():
            if store.get_balance_row(entitlement["id"], customer_id) is None:
                return
            now = store.now_us()
            state = _Balance(store, entitlement, customer_id)
            cycles = store.cycles(entitlement["id"], customer_id)
            while (moment := _next_moment(state, cycles, now)) is not None:
                self._deduct_usage(state, moment)
                for cycle in cycles:
                    if cycle["period_end_us"] == moment:
                        self._reset(state, cycle, moment)
                self._expire(state, moment)
                for cycle in cycles:
                    if cycle["next_drip_us"] == moment:
                        self._drip(state, cycle, moment)
            self._deduct_usage(state, now)

    def settle_all(self, entitlement_id: str | None = None) -> None:
        """Settle every balance (of one entitlement)."""
        for owner_entitlement, customer_id in self.store.balance_owners(entitlement_id):
            entitlement = self.store.get_entitlement(owner_entitlement)
            if entitlement is not None:
                self.settle(entitlement, customer_id)

    def _deduct_usage(self, state: _Balance, at_us: int) -> None:
        """Deduct the usage of linked meters that arrived by ``at_us`` minus the lag and is
        not deducted yet: one ``credit_deducted`` entry per meter."""
        store = self.store
        entitlement_id = state.entitlement["id"]
        cutoff = at_us - self.lag_us()
        for meter_id, _, units_per_credit in store.links(entitlement_id):
            meter = store.get_meter(meter_id)
            if meter is None:
                continue
            usage = store.meter_usage(
                meter, customer_id=state.customer_id, arrived_by_us=cutoff
            ).get(state.customer_id)
            total = _ZERO if usage is None else usage.total()
            applied = store.usage_applied(entitlement_id, state.customer_id, meter_id)
            if total <= applied:  # a max or last meter that fell: nothing is given back
                continue
            store.set_usage_applied(entitlement_id, state.customer_id, meter_id, total)
            used = (total - applied) / units_per_credit
            room = _room(state)
            credits = used if room is None else min(used, room)
            if credits <= 0:  # no balance and no overage allowed: nothing is deducted
                continue
            description = f"usage of meter {meter_id}"
            if credits < used:
                description += f" ({plain(used - credits)} beyond the allowed overage)"
            self._use(
                state,
                credits,
                at_us,
                transaction_type="credit_deducted",
                description=description,
                reference=("meter", meter_id),
            )

    def _use(
        self,
        state: _Balance,
        amount: Decimal,
        at_us: int,
        *,
        transaction_type: str,
        description: str | None,
        reference: tuple[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        entry_id: str | None = None,
    ) -> dict[str, Any]:
        before = (state.balance(), state.overage)
        uncovered, grant_id = state.draw(amount, at_us)
        if uncovered > 0:
            state.overage += uncovered
            self.store.set_overage(state.entitlement["id"], state.customer_id, state.overage)
        return self._record(
            state,
            transaction_type,
            False,
            amount,
            before,
            at_us,
            grant_id=grant_id,
            description=description,
            reference=reference,
            metadata=metadata,
            idempotency_key=idempotency_key,
            entry_id=entry_id,
        )

    def _expire(self, state: _Balance, at_us: int) -> None:
        for grant in state.grants:
            if grant["expired"] or grant["expires_us"] is None or grant["expires_us"] > at_us:
                continue
            before = (state.balance(), state.overage)
            left = Decimal(grant["remaining"])
            grant["expired"] = True
            state.save(grant, at_us)
            if left > 0:
                self._record(
                    state,
                    "credit_expired",
                    False,
                    left,
                    before,
                    at_us,
                    grant_id=grant["id"],
                    description="grant expired",
                    reference=("grant", grant["id"]),
                )

    # --- changes requested over the API ----------------------------------------------

    def grant(
        self,
        entitlement: dict[str, Any],
        customer_id: str,
        amount: Decimal,
        *,
        expires_us: int | None,
        lifetime_days: object = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """A new grant of ``amount`` (paying off the overage first under
        ``carry_deficit_auto_repay``); return its
        ``credit_added`` ledger entry. It expires at ``expires_us``, else ``lifetime_days``
        (an entitlement's ``expires_after_days``) after it is made, else never."""
        store = self.store
        with store.transaction():
            store.ensure_balance(entitlement["id"], customer_id)
            self.settle(entitlement, customer_id)
            now = store.now_us()
            if expires_us is None and isinstance(lifetime_days, int) and lifetime_days > 0:
                expires_us = now + lifetime_days * _US_PER_DAY
            state = _Balance(store, entitlement, customer_id)
            _, entry = self._add_grant(
                state,
                amount,
                now,
                expires_us=expires_us,
                source_type="api",
                metadata=metadata,
                description=description,
                idempotency_key=idempotency_key,
            )
            return entry

    def _add_grant(
        self,
        state: _Balance,
        amount: Decimal,
        at_us: int,
        *,
        expires_us: int | None,
        source_type: str,
        source_id: str | None = None,
        kind: str = "grant",
        parent: dict[str, Any] | None = None,
        transaction_type: str = "credit_added",
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Add a grant and its ledger entry (under ``carry_deficit_auto_repay`` a new one
        first pays off the overage; a rolled-over one never does)."""
        before = (state.balance(), state.overage)
        repays = parent is None and state.entitlement["overage_behavior"] == AUTO_REPAY
        repaid = min(state.overage, amount) if repays else _ZERO
        if repaid > 0:
            state.overage -= repaid
            self.store.set_overage(state.entitlement["id"], state.customer_id, state.overage)
        grant = {
            "id": new_id("cgr"),
            "credit_entitlement_id": state.entitlement["id"],
            "customer_id": state.customer_id,
            "created_us": at_us,
            "updated_us": at_us,
            "expires_us": expires_us,
            "initial": plain(amount),
            "remaining": plain(amount - repaid),
            "expired": False,
            "rolled_over": False,
            "rollover_count": 0 if parent is None else parent["rollover_count"] + 1,
            "source_type": source_type,
            "source_id": source_id,
            "parent_grant_id": None if parent is None else parent["id"],
            "metadata": metadata or {},
            "kind": kind,
        }
        self.store.save_grant(grant)
        state.grants.append(grant)
        if parent is not None:  # the parent's credits now live in this grant
            parent["expired"] = parent["rolled_over"] = True
            state.save(parent, at_us)
            before = (state.balance() - amount + Decimal(parent["remaining"]), state.overage)
        entry = self._record(
            state,
            transaction_type,
            True,
            amount,
            before,
            at_us,
            grant_id=grant["id"],
            description=description,
            reference=None if parent is None else ("grant", parent["id"]),
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return grant, entry

    # --- billing cycles (dev-only) -----------------------------------------------------

    def start_cycle(
        self,
        entitlement: dict[str, Any],
        customer_id: str,
        amount: Decimal,
        cycle_days: int,
        daily_amount: Decimal | None,
        low_balance_percent: int = DEFAULT_LOW_BALANCE_PERCENT,
    ) -> dict[str, Any]:
        """Attach a recurring grant to a customer: ``amount`` now and at every reset
        (``cycle_days`` apart), and ``daily_amount`` every day if given; return the cycle.
        ``credit.balance_low`` fires below ``low_balance_percent`` % of ``amount``."""
        store = self.store
        with store.transaction():
            store.ensure_balance(entitlement["id"], customer_id)
            self.settle(entitlement, customer_id)
            now = store.now_us()
            cycle = {
                "id": new_id("cyc"),
                "credit_entitlement_id": entitlement["id"],
                "customer_id": customer_id,
                "amount": plain(amount),
                "cycle_days": cycle_days,
                "daily_amount": None if daily_amount is None else plain(daily_amount),
                "low_balance_percent": low_balance_percent,
                "period_start_us": now,
                "period_end_us": now + cycle_days * _US_PER_DAY,
                "next_drip_us": None,
                "created_us": now,
            }
            state = _Balance(store, entitlement, customer_id)
            self._cycle_grant(state, cycle, now)
            if daily_amount is not None:
                self._drip(state, cycle, now)
            store.save_cycle(cycle)
            return cycle

    def _cycle_grant(self, state: _Balance, cycle: dict[str, Any], at_us: int) -> None:
        self._add_grant(
            state,
            Decimal(cycle["amount"]),
            at_us,
            expires_us=cycle["period_end_us"],
            source_type="subscription",
            source_id=cycle["id"],
            kind="cycle",
            description="billing cycle credits",
        )

    def _drip(self, state: _Balance, cycle: dict[str, Any], at_us: int) -> None:
        """The daily grant of a cycle: it lasts one day."""
        self._add_grant(
            state,
            Decimal(cycle["daily_amount"]),
            at_us,
            expires_us=at_us + _US_PER_DAY,
            source_type="subscription",
            source_id=cycle["id"],
            kind="daily",
            description="daily credits",
        )
        cycle["next_drip_us"] = at_us + _US_PER_DAY
        self.store.save_cycle(cycle)

    def _reset(self, state: _Balance, cycle: dict[str, Any], at_us: int) -> None:
        """The end of a cycle: its credits roll over (or not), the overage is handled by the
        entitlement's ``overage_behavior``, and the next cycle's grant is made."""
        entitlement = state.entitlement
        next_end = at_us + cycle["cycle_days"] * _US_PER_DAY
        if entitlement["rollover_enabled"]:  # otherwise the cycle's credits simply expire
            for grant in [g for g in state.grants if _rolls_at(g, cycle, at_us)]:
                self._roll_over(state, grant, at_us, next_end)
        if state.overage > 0 and entitlement["overage_behavior"] in (
            "forgive_at_reset",
            "invoice_at_billing",
        ):
            kind = (
                "overage_reset"
                if entitlement["overage_behavior"] == "forgive_at_reset"
                else "overage_charged"
            )
            before = (state.balance(), state.overage)
            amount = state.overage
            state.overage = _ZERO
            self.store.set_overage(entitlement["id"], state.customer_id, _ZERO)
            self._record(
                state,
                kind,
                True,
                amount,
                before,
                at_us,
                description=f"overage at the end of cycle {cycle['id']}",
                reference=("cycle", cycle["id"]),
            )
        self._expire(state, at_us)  # what did not roll over, before the new credits
        cycle["period_start_us"] = at_us
        cycle["period_end_us"] = next_end
        self.store.save_cycle(cycle)
        self._cycle_grant(state, cycle, at_us)

    def _roll_over(self, state: _Balance, grant: dict[str, Any], at_us: int, next_end: int) -> None:
        """Carry what is left of a cycle grant into a new grant (``rollover_percentage`` of
        it, at most ``max_rollover_count`` times); the rest is forfeited."""
        entitlement = state.entitlement
        left = Decimal(grant["remaining"])
        limit = entitlement.get("max_rollover_count")
        percentage = entitlement.get("rollover_percentage")
        share = Decimal(100 if percentage is None else percentage) / 100
        rolled = left * share if limit is None or grant["rollover_count"] < limit else _ZERO
        forfeited = left - rolled
        if forfeited > 0:
            before = (state.balance(), state.overage)
            grant["remaining"] = plain(rolled)
            if rolled <= 0:
                grant["expired"] = True
            state.save(grant, at_us)
            self._record(
                state,
                "rollover_forfeited",
                False,
                forfeited,
                before,
                at_us,
                grant_id=grant["id"],
                description="credits beyond the rollover limit",
                reference=("grant", grant["id"]),
            )
        if rolled > 0:
            self._add_grant(
                state,
                rolled,
                at_us,
                expires_us=_rollover_expiry(entitlement, at_us) or next_end,
                source_type="rollover",
                source_id=grant["source_id"],
                kind="rollover",
                parent=grant,
                transaction_type="credit_rolled_over",
                description="credits rolled over",
            )

    def debit(
        self,
        entitlement: dict[str, Any],
        customer_id: str,
        amount: Decimal,
        *,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        idempotency_key: str | None = None,
        entry_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Draw ``amount`` from the oldest grants (a ``manual_adjustment`` entry, returned);
        ``None`` (nothing changed) when it exceeds the balance."""
        store = self.store
        with store.transaction():
            store.ensure_balance(entitlement["id"], customer_id)
            self.settle(entitlement, customer_id)
            state = _Balance(store, entitlement, customer_id)
            if amount > state.balance():
                return None
            return self._use(
                state,
                amount,
                store.now_us(),
                transaction_type="manual_adjustment",
                description=description,
                metadata=metadata,
                idempotency_key=idempotency_key,
                entry_id=entry_id,
            )

    def balance_of(self, entitlement: dict[str, Any], customer_id: str) -> tuple[str, str]:
        """``(balance, overage)`` after settling, rounded to the entitlement's precision."""
        balance, overage = self.totals(entitlement, customer_id)
        precision = entitlement["precision"]
        return rounded(balance, precision), rounded(overage, precision)

    # --- recording -------------------------------------------------------------------

    def _record(
        self,
        state: _Balance,
        transaction_type: str,
        is_credit: bool,
        amount: Decimal,
        before: tuple[Decimal, Decimal],
        at_us: int,
        *,
        grant_id: str | None = None,
        description: str | None = None,
        reference: tuple[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        entry_id: str | None = None,
    ) -> dict[str, Any]:
        precision = state.entitlement["precision"]
        after = (state.balance(), state.overage)
        entry = {
            "id": entry_id or new_id("cle"),
            "business_id": BUSINESS_ID,
            "brand_id": BRAND_ID,
            "customer_id": state.customer_id,
            "credit_entitlement_id": state.entitlement["id"],
            "transaction_type": transaction_type,
            "is_credit": is_credit,
            "amount": rounded(amount, precision),
            "balance_before": rounded(before[0], precision),
            "balance_after": rounded(after[0], precision),
            "overage_before": rounded(before[1], precision),
            "overage_after": rounded(after[1], precision),
            "created_at": format_us(at_us),
            "grant_id": grant_id,
            "description": description,
            "reference_type": None if reference is None else reference[0],
            "reference_id": None if reference is None else reference[1],
            "metadata": metadata or {},
        }
        self.store.add_ledger_entry(entry, idempotency_key)
        self.emit(TRANSACTION_WEBHOOKS[transaction_type], entry, at_us)
        self._check_low_balance(state, before[0], after[0], at_us)
        return entry

    def _check_low_balance(
        self, state: _Balance, before: Decimal, after: Decimal, at_us: int
    ) -> None:
        cycles = self.store.cycles(state.entitlement["id"], state.customer_id)
        # The base is what a cycle grants each period, else what the unexpired grants gave;
        # the share is the first cycle's, else the server's.
        granted = sum((Decimal(c["amount"]) for c in cycles), _ZERO) or state.granted()
        percent = self.low_balance_percent
        if cycles:
            percent = cycles[0].get("low_balance_percent", percent)
        threshold = granted * percent / 100
        if granted <= 0 or not before >= threshold > after:
            return
        precision = state.entitlement["precision"]
        self.emit(
            "credit.balance_low",
            {
                "customer_id": state.customer_id,
                "credit_entitlement_id": state.entitlement["id"],
                "credit_entitlement_name": state.entitlement["name"],
                "brand_id": BRAND_ID,
                "subscription_id": cycles[0]["id"] if cycles else "",
                "available_balance": rounded(after, precision),
                "subscription_credits_amount": rounded(granted, precision),
                "threshold_amount": rounded(threshold, precision),
                "threshold_percent": percent,
            },
            at_us,
        )
