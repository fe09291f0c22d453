"""``CreditGate``: reserve a customer's credits before the work, settle the real cost after."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Literal, TypeVar

from ..client import (
    APIConnectionError,
    APIStatusError,
    AsyncDodoClient,
    ConfigurationError,
    CreditBalance,
    CreditEntitlement,
    DodoClient,
    NotFoundError,
)
from ._errors import CreditCheckUnavailableError, InsufficientCreditsError
from ._renewer import renewer
from ._store import MemoryStore, ReservationStore, Snapshot, StaleSnapshotError

__all__ = ["CreditGate", "GateStats", "Hold", "HoldRequest"]

logger = logging.getLogger("dodo_ingest")

_T = TypeVar("_T")
INFINITY = Decimal("Infinity")
_HOLD_PREFIX = f"{uuid.uuid4().hex[:16]}-"
"""Hold ids are unique across processes and machines (a random prefix, new in a forked
child) and cheap (a count)."""
_hold_numbers = itertools.count()


def _new_hold_prefix() -> None:
    global _HOLD_PREFIX
    _HOLD_PREFIX = f"{uuid.uuid4().hex[:16]}-"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_hold_prefix)
_STALE_RETRIES = 3
"""Reservations tried on newer snapshots read by other processes before giving up on them."""
UNDELIVERED_SLACK = 1.0
"""Seconds between a release and the tracking of its usage event that still count as one
(the LLM tracker releases, then tracks)."""
_RETRY_RENEWAL = 1.0
"""Seconds, at most, before a renewal that could not reach the store is tried again."""
ENTITLEMENT_REFRESH = 60.0
"""Seconds an entitlement's overage settings are reused before they are read again."""


@dataclass(frozen=True)
class GateStats:
    """Counters of one :class:`CreditGate` in this process.

    - ``admitted`` / ``refused``: reservations granted, and refused for want of credits;
    - ``balance_reads``: balances read from the API (each cached ``refresh_interval`` s);
    - ``unavailable_allowed`` / ``unavailable_denied``: reservations decided by
      ``on_unavailable`` because the balance (or the store) could not be read.
    """

    admitted: int
    refused: int
    balance_reads: int
    unavailable_allowed: int
    unavailable_denied: int


def _decimal(name: str, value: object) -> Decimal:
    """``value`` as a finite ``Decimal`` >= 0, or a ``ValueError`` naming ``name``."""
    if type(value) is Decimal and value.is_finite() and value >= 0:
        return value
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str, float)):
        raise ValueError(f"{name} must be a Decimal, int or decimal string, got {value!r}")
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{name} must be a finite amount >= 0, got {value!r}")
    return amount


def _count_value(counter: itertools.count[int]) -> int:
    """The next value of a counter, without advancing it (``next()`` on it is atomic)."""
    return int(repr(counter)[6:-1])


def _seconds_arg(name: str, value: object) -> float:
    """A positive finite number of seconds given to a method, or a ``ValueError``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _seconds(name: str, value: object, *, minimum: float = 0.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigurationError(
            f"{name} must be a finite number of seconds >= {minimum:g}, got {value!r}"
        )
    return float(value)


def headroom_of(balance: CreditBalance | None, entitlement: CreditEntitlement) -> Decimal:
    """What a customer may still use: the balance, plus what the entitlement's overage allows
    beyond it (``Infinity`` for unlimited overage). A customer with no balance has 0."""
    left = balance.balance if balance is not None else Decimal(0)
    used_over = balance.overage if balance is not None else Decimal(0)
    if not entitlement.overage_enabled:
        return left
    if entitlement.overage_limit is None:
        return INFINITY
    return left + max(entitlement.overage_limit - used_over, Decimal(0))


class Hold:
    """Credits held for one piece of work, from :meth:`CreditGate.reserve` until it ends.

    Use it as a context manager (``with``, or ``async with`` from :meth:`CreditGate.areserve`).
    The hold ends at the first of:

    - :meth:`settle` with the real cost: call it when the work reports its usage (tracks its
      event). The hold ends and the cost counts as usage the API has yet to deduct, from now;
    - leaving the block (or :meth:`release`) without settling: the reserved estimate counts;
    - :meth:`cancel`: nothing counts (the work did not happen).

    While the hold lives, the process renews its lease in the background (once a third of it
    has passed), so work of any length keeps its credits; the lease only bounds how long the
    hold of a process that died (or was frozen, or cut off from the store, for most of a lease)
    keeps counting. Ending a hold never raises because the store cannot be
    reached (logged; the hold then ends with its lease). A hold is safe to end from any
    thread: the first ending counts, later ones do nothing (a later :meth:`settle` with a
    higher cost records the difference).
    """

    def __init__(self, gate: CreditGate, customer_id: str, hold_id: str, amount: Decimal) -> None:
        self.customer_id = customer_id
        self.amount = amount
        """The amount reserved."""
        self.actual: Decimal | None = None
        """The cost given to :meth:`settle` (``None`` until then)."""
        self._gate = gate
        self._hold_id = hold_id
        self._lock = threading.Lock()
        self._counted: Decimal | None = None
        """The usage recorded for this hold once it ended (``None``: live)."""
        self._more = 0
        """Higher settlements recorded after the hold ended (each under its own id)."""
        self._span = gate.lease
        """The length of its lease (the gate's, or what :meth:`extend` asked for)."""
        self._due = math.inf
        """When (monotonic seconds) the renewer must move its lease at the latest."""
        self._earliest = math.inf
        """From when the renewer may move it (with others due soon)."""

    @property
    def ended(self) -> bool:
        """True once settled, released or cancelled."""
        return self._counted is not None

    def settle(self, actual: Decimal | int | str) -> None:
        """End the hold with the real cost of the work (it may exceed the amount reserved):
        from now on it counts as usage the API has yet to deduct. Call it when the work's
        usage is reported, so a balance read after that can match the API's deduction to it.
        Settling an ended hold again with a higher cost records the difference; a lower one
        is ignored (logged): usage already counted is never taken back."""
        cost = _decimal("actual", actual)
        with self._lock:
            counted = self._counted
            if counted is None:
                self.actual = self._counted = cost
                self._end(cost)
                return
            if cost <= counted:
                if cost < counted:
                    logger.warning(
                        "credit gate: a hold of %s was settled again at %s, below the %s "
                        "already counted; usage already counted is kept",
                        self.customer_id,
                        cost,
                        counted,
                    )
                return
            self.actual = self._counted = cost
            self._more += 1  # its own entry: a store may keep one usage entry per id
            self._end(cost - counted, f"{self._hold_id}+{self._more}")

    async def asettle(self, actual: Decimal | int | str) -> None:
        """:meth:`settle` for asyncio code: a shared store is written from a worker thread,
        and the settlement happens even if the awaiting task is cancelled."""
        await self._gate._offload_ending(self.settle, actual)

    def extend(self, seconds: float | None = None) -> bool:
        """Make the hold last ``seconds`` (default: the gate's ``lease``) from now; False when
        it has ended already (ended here, or its lease ran out). The gate renews live holds
        by itself: this is for a lease longer than the gate's. Never raises because the store
        cannot be reached (False then)."""
        span = self._gate.lease if seconds is None else _seconds_arg("seconds", seconds)
        if self._counted is not None:
            return False
        gate = self._gate
        started = time.monotonic()
        try:
            extended = gate.store.extend(
                gate._key(self.customer_id), self._hold_id, expires_at=gate._clock() + span
            )
        except Exception as error:
            logger.warning(
                "credit gate: could not extend a hold of %s (%s)", self.customer_id, error
            )
            return False
        self.lease_renewed(started, span, extended)
        if extended:
            renewer.add(self)  # its next renewal may be sooner than the renewer planned
        return bool(extended)

    # --- what the lease renewer uses (see _renewer.Renewable) --------------------------------

    @property
    def renewal_due(self) -> float:
        """Internal: when (monotonic seconds) the lease must be renewed at the latest."""
        return self._due

    @property
    def renewal_earliest(self) -> float:
        """Internal: from when (monotonic seconds) the lease may be renewed with others."""
        return self._earliest

    def lease_request(self) -> tuple[ReservationStore, str, str, float, float] | None:
        """Internal: what renewing the lease now takes: store, key, hold id, new end, span."""
        if self._counted is not None:
            return None
        gate = self._gate
        span = self._span
        return gate.store, gate._key(self.customer_id), self._hold_id, gate._clock() + span, span

    def lease_renewed(self, started: float, span: float, extended: bool | None) -> None:
        """Internal: note the answer to a renewal started at ``started`` (monotonic seconds)."""
        if extended:
            self._span = span
            self._earliest, self._due = started + span / 6, started + span / 3
        elif extended is None:  # the store could not be reached: try again soon
            self._earliest = self._due = time.monotonic() + min(_RETRY_RENEWAL, span / 10)

    def cancel(self) -> None:
        """End the hold without recording usage (the work was not done); nothing once it
        has ended."""
        with self._lock:
            if self._counted is None:
                self.actual = self._counted = Decimal(0)
                self._end(Decimal(0))

    def release(self) -> None:
        """End the hold: the settled cost counts, else the reserved estimate (an unsettled
        hold is assumed to have used all of it); nothing once it has ended."""
        with self._lock:
            if self._counted is None:
                self._counted = self.amount
                self._end(self.amount)

    async def arelease(self) -> None:
        """:meth:`release` for asyncio code: a shared store is written from a worker thread,
        and the release happens even if the awaiting task is cancelled."""
        await self._gate._offload_ending(self.release)

    def _end(self, usage: Decimal, hold_id: str | None = None) -> None:
        """End the hold in the store (or record more usage under ``hold_id``), recording
        ``usage``; never raises."""
        self._gate._release(self.customer_id, hold_id or self._hold_id, usage)

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.arelease()

    def __repr__(self) -> str:
        state = "held" if self._counted is None else "ended"
        return f"Hold(customer_id={self.customer_id!r}, amount={self.amount}, {state})"


class HoldRequest:
    """What :meth:`CreditGate.areserve` returns: ``async with`` it, or ``await`` it for the
    :class:`Hold`."""

    def __init__(self, gate: CreditGate, customer_id: str, amount: Decimal) -> None:
        self._gate = gate
        self._customer_id = customer_id
        self._amount = amount
        self._hold: Hold | None = None

    def __await__(self) -> Generator[Any, None, Hold]:
        return self._gate._areserve(self._customer_id, self._amount).__await__()

    async def __aenter__(self) -> Hold:
        self._hold = await self._gate._areserve(self._customer_id, self._amount)
        return self._hold

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hold is not None:
            await self._hold.arelease()


class CreditGate:
    """Refuse work a customer cannot pay for, before it starts.

    ``reserve(customer_id, amount)`` checks what the customer has left and holds ``amount``
    for the work, or raises :class:`InsufficientCreditsError` (HTTP 402) and nothing is done.
    What is *available* is the balance the billing API reported (plus what the entitlement's
    overage allows), minus the holds of work in progress, minus the usage settled by finished
    work that the API has not deducted yet. Concurrent reservations never admit more than
    that in total: each is one atomic step of the ``store`` (this process by default; a
    Redis store shares holds and usage with a fleet).

    - ``client``: a :class:`DodoClient` (or :class:`AsyncDodoClient` for :meth:`areserve`).
    - ``store``: a :class:`MemoryStore` by default (this process); a :class:`RedisStore` or
      a ``redis://`` URL to share holds and usage with a fleet.
    - ``refresh_interval``: how old (seconds) a cached balance may be; a fresh one is used
      without a request.
    - ``on_unavailable``: when the balance (or the store) cannot be read, ``"allow"`` admits
      on the last balance known (or unchecked when there is none) and ``"deny"`` raises
      :class:`CreditCheckUnavailableError` (HTTP 503); either way it is counted and logged.
    - ``ingestion_lag``: seconds the API may take to deduct usage after it was recorded
      here; settled usage counts against the balance until a balance read that much later.
    - ``lease``: seconds a hold lasts at most (a holder that died stops counting then).
    - ``ingestion``: the :class:`~dodo_ingest.Ingestion` that delivers the usage; while it
      has events it could not deliver, usage settled since then keeps counting (the API
      cannot have deducted it), however long that takes.

    Amounts are ``Decimal`` in the entitlement's unit (credits, or the currency).
    See ``docs/credit-gate.md``.
    """

    def __init__(
        self,
        client: DodoClient | AsyncDodoClient,
        credit_entitlement_id: str,
        *,
        refresh_interval: float = 5.0,
        store: ReservationStore | str | None = None,
        on_unavailable: Literal["allow", "deny"] = "allow",
        ingestion_lag: float = 30.0,
        lease: float = 300.0,
        ingestion: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(client, (DodoClient, AsyncDodoClient)):
            raise ConfigurationError(
                f"client must be a DodoClient or AsyncDodoClient, got {type(client).__name__}"
            )
        if type(credit_entitlement_id) is not str or not credit_entitlement_id:
            raise ConfigurationError(
                f"credit_entitlement_id must be a non-empty string, got {credit_entitlement_id!r}"
            )
        if on_unavailable not in ("allow", "deny"):
            raise ConfigurationError(
                f"on_unavailable must be 'allow' or 'deny', got {on_unavailable!r}"
            )
        if isinstance(store, str) and store.startswith(("redis://", "rediss://", "unix://")):
            from ._redis_store import RedisStore

            store = RedisStore(store)
        if store is not None and not isinstance(store, ReservationStore):
            raise ConfigurationError(
                f"store must be a ReservationStore or a redis:// URL, got {type(store).__name__}"
            )
        self.client = client
        self.credit_entitlement_id = credit_entitlement_id
        self.refresh_interval = _seconds("refresh_interval", refresh_interval)
        self.ingestion_lag = _seconds("ingestion_lag", ingestion_lag)
        self.lease = _seconds("lease", lease, minimum=1.0)
        self.on_unavailable = on_unavailable
        if ingestion is not None and not hasattr(ingestion, "pending_since"):
            raise ConfigurationError(
                f"ingestion must be an Ingestion (with pending_since), got {type(ingestion).__name__}"
            )
        self.ingestion = ingestion
        self.store: ReservationStore = store if store is not None else MemoryStore()
        self._inline_store = type(self.store) is MemoryStore
        """Calls to the store are cheap and never block (asyncio code calls it directly)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._local: dict[str, Snapshot] = {}
        """The newest snapshot this process knows per customer (it saves what it reads)."""
        self._areading: dict[tuple[int, str], asyncio.Future[Snapshot | None]] = {}
        self._entitlement: CreditEntitlement | None = None
        self._entitlement_at = -math.inf
        self._admitted = itertools.count()
        self._refused = itertools.count()
        self._reads = 0
        self._allowed_blind = 0
        self._denied_blind = 0
        self._failing = False
        _GATES.add(self)

    # --- the public surface --------------------------------------------------------------

    def reserve(self, customer_id: str, amount: Decimal | int | str) -> Hold:
        """Hold ``amount`` for ``customer_id``'s work; raise :class:`InsufficientCreditsError`
        when it is not available (nothing held). Use the :class:`Hold` in a ``with`` block.

        Reads the balance only when the cached one is older than ``refresh_interval``.
        """
        amount = _decimal("amount", amount)
        snapshot = self._snapshot(customer_id)
        return self._hold(customer_id, amount, snapshot)

    def areserve(self, customer_id: str, amount: Decimal | int | str) -> HoldRequest:
        """:meth:`reserve` for asyncio code: ``async with gate.areserve(...) as hold`` (or
        ``hold = await gate.areserve(...)``); never blocks the event loop on the API."""
        return HoldRequest(self, customer_id, _decimal("amount", amount))

    def available(self, customer_id: str) -> Decimal:
        """What ``customer_id`` can still reserve now (``Infinity`` with unlimited overage,
        or when the balance cannot be read and ``on_unavailable`` is ``"allow"``)."""
        snapshot = self._snapshot(customer_id)
        return self._available(customer_id, snapshot)

    async def aavailable(self, customer_id: str) -> Decimal:
        """:meth:`available` for asyncio code."""
        snapshot = await self._asnapshot(customer_id)
        return await self._offload(self._available, customer_id, snapshot)

    def would_fit(self, customer_id: str, amount: Decimal | int | str) -> bool:
        """True when ``amount`` is available now, without reserving it: ask before choosing a
        path (a cheaper model, a relax mode) rather than refusing."""
        return self.available(customer_id) >= _decimal("amount", amount)

    async def awould_fit(self, customer_id: str, amount: Decimal | int | str) -> bool:
        """:meth:`would_fit` for asyncio code."""
        return await self.aavailable(customer_id) >= _decimal("amount", amount)

    @property
    def stats(self) -> GateStats:
        """A snapshot of the counters."""
        with self._lock:
            return GateStats(
                admitted=_count_value(self._admitted),
                refused=_count_value(self._refused),
                balance_reads=self._reads,
                unavailable_allowed=self._allowed_blind,
                unavailable_denied=self._denied_blind,
            )

    def __repr__(self) -> str:
        return (
            f"CreditGate(credit_entitlement_id={self.credit_entitlement_id!r}, "
            f"store={type(self.store).__name__})"
        )

    # --- reservations ----------------------------------------------------------------------

    def _key(self, customer_id: str) -> str:
        return f"{self.credit_entitlement_id}:{customer_id}"

    def _reflected_before(self, snapshot: Snapshot) -> float:
        """Usage settled before this time is in ``snapshot`` (the API had ``ingestion_lag``
        to deduct it), unless the ``ingestion`` still holds events tracked since then."""
        # Never later than this host's own clock allows: a snapshot stamped in the future
        # (another host's clock runs ahead) must not mark this host's usage as deducted.
        boundary = min(snapshot.fetched_at, self._clock()) - self.ingestion_lag
        if self.ingestion is not None:
            try:
                pending = self.ingestion.pending_since
            except Exception:
                pending = None
            if pending is not None:
                boundary = min(boundary, pending - UNDELIVERED_SLACK)
        return boundary

    def _hold(self, customer_id: str, amount: Decimal, snapshot: Snapshot | None) -> Hold:
        started = time.monotonic()  # the lease is counted from before the store's answer
        now = self._clock()
        hold_id = f"{_HOLD_PREFIX}{next(_hold_numbers)}"
        if snapshot is None:  # balance unknown, on_unavailable="allow": held, unchecked
            headroom, reflected_before = INFINITY, now - self.ingestion_lag
        else:
            headroom = snapshot.headroom
            reflected_before = self._reflected_before(snapshot)
        key = self._key(customer_id)
        try:
            for attempt in range(_STALE_RETRIES):
                last = attempt == _STALE_RETRIES - 1
                try:
                    reservation = self.store.reserve(
                        key,
                        hold_id,
                        amount,
                        headroom=headroom,
                        reflected_before=reflected_before,
                        expires_at=now + self.lease,
                        now=now,
                        # The last try decides on what it has (others keep reading newer).
                        fetched_at=None if snapshot is None or last else snapshot.fetched_at,
                    )
                    break
                except StaleSnapshotError:
                    # Another process read a newer balance: reserve on that one.
                    newer = self.store.snapshot(key)
                    if newer is not None:
                        snapshot = self._local[customer_id] = newer
                        headroom = newer.headroom
                        reflected_before = self._reflected_before(newer)
        except Exception as error:
            if not _unreachable(error):
                raise  # bad input for this store (an amount beyond its range): not "unknown"
            self._blind(customer_id, error)  # raises when denying
            return _DetachedHold(self, customer_id, hold_id, amount)
        if not reservation[0]:
            next(self._refused)
            raise InsufficientCreditsError(customer_id, amount, reservation[1])
        next(self._admitted)
        hold = Hold(self, customer_id, hold_id, amount)
        hold.lease_renewed(started, self.lease, True)
        renewer.add(hold)
        return hold

    async def _areserve(self, customer_id: str, amount: Decimal) -> Hold:
        snapshot = await self._asnapshot(customer_id)
        if self._inline_store:
            return self._hold(customer_id, amount, snapshot)
        claim = _Claim()

        def reserve() -> Hold:
            hold = self._hold(customer_id, amount, snapshot)
            claim.deliver(hold)
            return hold

        reserving = asyncio.get_running_loop().run_in_executor(None, reserve)
        try:
            return await asyncio.shield(reserving)
        except asyncio.CancelledError:
            claim.abandon()  # a hold granted meanwhile is given back, by whichever comes last
            raise

    def _release(self, customer_id: str, hold_id: str, usage: Decimal) -> None:
        try:
            self.store.release(self._key(customer_id), hold_id, usage, now=self._clock())
        except Exception as error:
            logger.warning(
                "credit gate: could not release a hold of %s (%s); it ends with its lease",
                customer_id,
                error,
            )

    def _available(self, customer_id: str, snapshot: Snapshot | None) -> Decimal:
        if snapshot is None:
            return INFINITY
        try:
            stored = self.store.snapshot(self._key(customer_id))
            if stored is not None and stored.fetched_at > snapshot.fetched_at:
                snapshot = self._local[customer_id] = stored  # another process read later
            outstanding = self.store.outstanding(
                self._key(customer_id),
                reflected_before=self._reflected_before(snapshot),
                now=self._clock(),
            )
        except Exception as error:
            if not _unreachable(error):
                raise
            self._blind(customer_id, error)
            return snapshot.headroom
        return snapshot.headroom - outstanding

    # --- balances ----------------------------------------------------------------------------

    def _local_fresh(self, customer_id: str) -> Snapshot | None:
        """This process's copy of the balance, if younger than ``refresh_interval``."""
        local = self._local.get(customer_id)
        if local is not None and 0 <= self._clock() - local.fetched_at < self.refresh_interval:
            return local
        return None

    async def _offload(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` from asyncio code: at once on the in-process store, else in a
        worker thread (a shared store is a network round trip)."""
        if self._inline_store:
            return call(*args)
        return await asyncio.to_thread(call, *args)

    async def _offload_ending(self, call: Callable[..., None], *args: Any) -> None:
        """:meth:`_offload` for what ends a hold: once started it runs to the end, even if
        the awaiting task is cancelled (a queued call is not dropped)."""
        if self._inline_store:
            call(*args)
            return
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, call, *args))

    def _fresh(self, customer_id: str) -> Snapshot | None:
        """A snapshot younger than ``refresh_interval``: this process's copy (no round trip
        to a shared store; a reservation on it is refused as stale by the store when another
        process has read a newer one), else the store's."""
        local = self._local_fresh(customer_id)
        if local is not None:
            return local
        now = self._clock()
        try:
            snapshot = self.store.snapshot(self._key(customer_id))
        except Exception:
            return None
        # A snapshot stamped in the future (a host whose clock runs ahead) is never fresh.
        if snapshot is not None and 0 <= now - snapshot.fetched_at < self.refresh_interval:
            self._local[customer_id] = snapshot
            return snapshot
        return None

    def _snapshot(self, customer_id: str) -> Snapshot | None:
        """A balance younger than ``refresh_interval``: cached, or read now (one read per
        customer at a time in this process). ``None``: unknown, and allowed unchecked."""
        cached = self._fresh(customer_id)
        if cached is not None:
            return cached
        if isinstance(self.client, AsyncDodoClient):
            raise ConfigurationError(
                "this CreditGate has an AsyncDodoClient: use areserve(), aavailable() and "
                "awould_fit() (or give it a DodoClient)"
            )
        with self._lock:
            fetching = self._fetching.setdefault(customer_id, threading.Lock())
        with fetching:
            cached = self._fresh(customer_id)  # another thread read it meanwhile
            if cached is not None:
                return cached
            started = self._clock()
            try:
                entitlement = self._entitlement_sync()
                balance = self._balance_sync(customer_id)
            except (APIConnectionError, APIStatusError) as error:
                return self._unavailable(customer_id, error)
            return self._save(customer_id, balance, entitlement, started)

    async def _asnapshot(self, customer_id: str) -> Snapshot | None:
        """:meth:`_snapshot` for asyncio code: one read per customer at a time per event
        loop; the other tasks await it."""
        cached = self._local_fresh(customer_id) or await self._offload(self._fresh, customer_id)
        if cached is not None:
            return cached
        key = (id(asyncio.get_running_loop()), customer_id)
        reading = self._areading.get(key)
        if reading is None:
            reading = self._areading[key] = asyncio.ensure_future(self._aread(customer_id))
            reading.add_done_callback(lambda _: self._areading.pop(key, None))
        return await asyncio.shield(reading)

    async def _aread(self, customer_id: str) -> Snapshot | None:
        started = self._clock()
        try:
            if isinstance(self.client, AsyncDodoClient):
                entitlement = await self._entitlement_async()
                balance = await self._balance_async(customer_id)
            else:
                entitlement, balance = await asyncio.to_thread(self._read_sync, customer_id)
        except (APIConnectionError, APIStatusError) as error:
            return await self._offload(self._unavailable, customer_id, error)
        return await self._offload(self._save, customer_id, balance, entitlement, started)

    def _read_sync(self, customer_id: str) -> tuple[CreditEntitlement, CreditBalance | None]:
        return self._entitlement_sync(), self._balance_sync(customer_id)

    def _save(
        self,
        customer_id: str,
        balance: CreditBalance | None,
        entitlement: CreditEntitlement,
        started: float,
    ) -> Snapshot | None:
        # Read time = when the request started: usage recorded after that may be missing
        # from the answer, so it still counts (the safe side).
        if balance is not None and not (
            balance.balance.is_finite() and balance.overage.is_finite()
        ):
            return self._unavailable(
                customer_id, ValueError("the API answered a balance that is not a finite number")
            )
        snapshot = Snapshot(
            balance=balance.balance if balance is not None else Decimal(0),
            overage=balance.overage if balance is not None else Decimal(0),
            headroom=headroom_of(balance, entitlement),
            fetched_at=started,
        )
        self._local[customer_id] = snapshot
        with self._lock:
            self._reads += 1
            recovered, self._failing = self._failing, False
        if recovered:
            logger.warning("credit gate: balances can be read again")
        try:
            self.store.save_snapshot(self._key(customer_id), snapshot)
        except Exception as error:
            logger.debug("credit gate: could not store a balance (%s)", error)
        return snapshot

    def _entitlement_sync(self) -> CreditEntitlement:
        entitlement = self._entitlement
        if entitlement is None or self._clock() - self._entitlement_at >= ENTITLEMENT_REFRESH:
            assert isinstance(self.client, DodoClient)
            entitlement = self.client.credits.entitlement(self.credit_entitlement_id)
            self._entitlement, self._entitlement_at = entitlement, self._clock()
        return entitlement

    async def _entitlement_async(self) -> CreditEntitlement:
        entitlement = self._entitlement
        if entitlement is None or self._clock() - self._entitlement_at >= ENTITLEMENT_REFRESH:
            assert isinstance(self.client, AsyncDodoClient)
            entitlement = await self.client.credits.entitlement(self.credit_entitlement_id)
            self._entitlement, self._entitlement_at = entitlement, self._clock()
        return entitlement

    def _balance_sync(self, customer_id: str) -> CreditBalance | None:
        assert isinstance(self.client, DodoClient)
        try:
            return self.client.credits.balance(self.credit_entitlement_id, customer_id)
        except NotFoundError:
            return None  # no balance yet: nothing to spend

    async def _balance_async(self, customer_id: str) -> CreditBalance | None:
        assert isinstance(self.client, AsyncDodoClient)
        try:
            return await self.client.credits.balance(self.credit_entitlement_id, customer_id)
        except NotFoundError:
            return None

    # --- failure policy ----------------------------------------------------------------------

    def _unavailable(self, customer_id: str, error: BaseException) -> Snapshot | None:
        """The balance cannot be read: the last one known (allow), or raise (deny)."""
        self._blind(customer_id, error)
        try:
            return self.store.snapshot(self._key(customer_id))
        except Exception:
            return None

    def _blind(self, customer_id: str, error: BaseException) -> None:
        """Count and log a decision taken without a balance; raise when denying."""
        deny = self.on_unavailable == "deny"
        with self._lock:
            if deny:
                self._denied_blind += 1
            else:
                self._allowed_blind += 1
            first, self._failing = not self._failing, True
        if first:
            logger.error(
                "credit gate: the balance of %s cannot be read (%s); %s",
                customer_id,
                error,
                "refusing work (on_unavailable='deny')"
                if deny
                else "admitting on the last balance known (on_unavailable='allow')",
            )
        if deny:
            raise CreditCheckUnavailableError(customer_id, error) from error


class _Claim:
    """A hold reserved in a worker thread for an asyncio caller that may be cancelled: the
    hold is given back by the worker when the caller gave up first, or by the caller when
    the hold came first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hold: Hold | None = None
        self._abandoned = False

    def deliver(self, hold: Hold) -> None:
        with self._lock:
            self._hold = hold
            abandoned = self._abandoned
        if abandoned:
            hold.cancel()

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            hold = self._hold
        if hold is None:
            return  # the worker gives it back when it gets it
        try:
            asyncio.get_running_loop().run_in_executor(None, hold.cancel)
        except RuntimeError:  # no running loop any more
            hold.cancel()


def _forget_locks_after_fork() -> None:
    """In a forked child: locks another thread held at the fork stay held forever in the
    child's copy; every gate gets new ones (and no reads in progress)."""
    for gate in list(_GATES):
        gate._lock = threading.Lock()
        gate._fetching = {}
        gate._areading = {}


_GATES: weakref.WeakSet[CreditGate] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_after_fork)


def _unreachable(error: BaseException) -> bool:
    """True for the errors of a store that cannot be reached (connection refused or lost,
    timed out, loading its data), as opposed to a store refusing what it was given."""
    if isinstance(error, (OSError, TimeoutError)):
        return True
    return type(error).__module__.startswith("redis") and type(error).__name__ in {
        "ConnectionError",
        "TimeoutError",
        "BusyLoadingError",
    }


class _DetachedHold(Hold):
    """A hold admitted while the store could not be reached. Its reservation may have gone
    through all the same (an answer lost on the way back): ending it is still tried, quietly
    (ending an unknown hold only records the usage), and it is not renewed."""

    def _end(self, usage: Decimal, hold_id: str | None = None) -> None:
        gate = self._gate
        key = gate._key(self.customer_id)
        try:
            gate.store.release(key, hold_id or self._hold_id, usage, now=gate._clock())
        except Exception:
            logger.debug("credit gate: a hold admitted blind could not be ended either")
