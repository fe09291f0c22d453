"""Where a :class:`~dodo_ingest.CreditGate` keeps what it knows between calls.

A leaf module (plain data and a protocol): stores never import the gate. Per *key* (one
customer's balance of one entitlement) a store keeps:

- the last **snapshot** read from the billing API (shared: one read serves every process);
- the **holds**: amounts reserved by work in progress, each with a lease (a holder that dies
  stops counting when its lease ends);
- the **usage** settled by finished work and not yet reflected in the API's balance. The API
  deducts usage asynchronously, so each entry counts until the balances read show it was
  deducted: when a newer snapshot is saved, the drop in headroom since the previous one is
  usage the API deducted in between, and marks as much of the usage recorded before the newer
  read as reflected, oldest first. Whatever is left stops counting once a snapshot was read
  ``ingestion_lag`` seconds after it was recorded (the longest the API takes).

:class:`MemoryStore` keeps them in this process; a Redis store shares them with a fleet.
"""

from __future__ import annotations

import bisect
import heapq
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "PRUNE_MARGIN",
    "MemoryStore",
    "Reservation",
    "ReservationStore",
    "Snapshot",
    "StaleSnapshotError",
]

PRUNE_MARGIN = 300.0
"""Seconds usage is kept after the newest snapshot reflects it (a process may still be using
an older snapshot for a moment)."""


@dataclass(frozen=True)
class Snapshot:
    """A customer's balance as the billing API reported it.

    ``headroom`` is what the customer may still use: the balance, plus what the entitlement's
    overage allows beyond it (``Decimal("Infinity")`` when overage is unlimited).
    ``fetched_at`` is the Unix time the balance was read.
    """

    balance: Decimal
    overage: Decimal
    headroom: Decimal
    fetched_at: float


class Reservation(NamedTuple):
    """The answer of :meth:`ReservationStore.reserve`: ``admitted``, and what was available
    before the amount was taken (``headroom`` minus holds and unreflected usage)."""

    admitted: bool
    available: Decimal


class StaleSnapshotError(Exception):
    """Nothing was decided: the store holds a snapshot newer than the one the caller reserved
    on (read it with :meth:`ReservationStore.snapshot` and ask again)."""


@runtime_checkable
class ReservationStore(Protocol):
    """What a :class:`~dodo_ingest.CreditGate` needs from a store; every method is atomic."""

    def snapshot(self, key: str) -> Snapshot | None:
        """The newest snapshot stored for ``key``, any process's (``None``: none yet)."""

    def save_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` unless a newer one is stored. When it replaces an older one and
        both headrooms are finite, the drop in headroom between them marks as much of the
        usage recorded before ``snapshot.fetched_at`` as reflected, oldest first."""

    def reserve(
        self,
        key: str,
        hold_id: str,
        amount: Decimal,
        *,
        headroom: Decimal,
        reflected_before: float,
        expires_at: float,
        now: float,
        fetched_at: float | None = None,
    ) -> Reservation:
        """If ``headroom`` minus the live holds (those whose lease ends after ``now``) and
        the usage recorded at or after ``reflected_before`` leaves at least ``amount``, hold
        ``amount`` under ``hold_id`` until ``expires_at``. Either way, say what was
        available. With ``fetched_at`` (when the caller's snapshot was read), raise
        :class:`StaleSnapshotError` without deciding when the stored snapshot is newer: a
        newer read may have marked usage reflected that the caller's older headroom still
        includes."""

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        """End the hold ``hold_id`` and record ``usage`` (>= 0) as settled at ``now``."""

    def extend(self, key: str, hold_id: str, *, expires_at: float) -> bool:
        """Move the end of a live hold's lease; False when it has ended already."""

    def outstanding(self, key: str, *, reflected_before: float, now: float) -> Decimal:
        """Live holds plus the usage recorded at or after ``reflected_before``."""


class _Ledger:
    """One key's holds and unreflected usage, with running totals (no scan per call).

    Usage is kept as recording times (sorted) with cumulative amounts; deductions seen in the
    balance consume it oldest first, as one running ``consumed`` amount. The usage recorded
    at or after a time ``t`` still unreflected is then
    ``max(0, cumulative[-1] - max(cumulative before t, consumed))``: a bisection.
    """

    __slots__ = ("consumed", "cumulative", "expiries", "held", "holds", "snapshot", "times")

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.holds: dict[str, tuple[Decimal, float]] = {}
        self.held = Decimal(0)
        self.expiries: list[tuple[float, str]] = []
        """A heap of ``(expires_at, hold_id)``; entries of moved or ended holds are stale."""
        self.times: list[float] = []
        self.cumulative: list[Decimal] = []
        self.consumed = Decimal(0)

    def expire(self, now: float) -> None:
        expiries = self.expiries
        while expiries and expiries[0][0] <= now:
            until, hold_id = heapq.heappop(expiries)
            held = self.holds.get(hold_id)
            if held is not None and held[1] == until:
                del self.holds[hold_id]
                self.held -= held[0]

    def record(self, at: float, amount: Decimal) -> None:
        times, cumulative = self.times, self.cumulative
        if not times or at >= times[-1]:
            times.append(at)
            cumulative.append((cumulative[-1] if cumulative else Decimal(0)) + amount)
            return
        index = bisect.bisect_right(times, at)  # recorded out of order (another thread)
        times.insert(index, at)
        before = cumulative[index - 1] if index else Decimal(0)
        cumulative.insert(index, before)
        for i in range(index, len(cumulative)):
            cumulative[i] += amount

    def _before(self, at: float) -> Decimal:
        index = bisect.bisect_left(self.times, at)
        return self.cumulative[index - 1] if index else Decimal(0)

    def unreflected(self, since: float) -> Decimal:
        if not self.times:
            return Decimal(0)
        return max(Decimal(0), self.cumulative[-1] - max(self._before(since), self.consumed))

    def consume(self, amount: Decimal, before: float) -> None:
        """Mark ``amount`` of the usage recorded before ``before`` reflected, oldest first."""
        self.consumed = max(self.consumed, min(self.consumed + amount, self._before(before)))

    def prune(self, older_than: float) -> None:
        """Forget usage recorded before ``older_than`` (reflected in every snapshot in use)."""
        index = bisect.bisect_left(self.times, older_than)
        if index < 64 or index * 2 < len(self.times):
            return  # rarely: dropping a prefix costs a copy
        base = self.cumulative[index - 1]
        del self.times[:index]
        self.cumulative = [value - base for value in self.cumulative[index:]]
        self.consumed = max(Decimal(0), self.consumed - base)


def _new_locks_after_fork() -> None:
    """In a forked child: a lock another thread held at the fork stays held forever in the
    child's copy; every in-process store gets a new one."""
    for store in list(_STORES):
        store._lock = threading.Lock()


class MemoryStore:
    """A :class:`ReservationStore` for one process: per key, running totals under one lock.

    Each call costs a dictionary lookup and a bisection, whatever the number of holds and of
    recent settlements; expired holds and long-reflected usage are dropped as they are met.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}
        _STORES.add(self)

    def _ledger(self, key: str) -> _Ledger:
        ledger = self._ledgers.get(key)
        if ledger is None:
            ledger = self._ledgers[key] = _Ledger()
        return ledger

    def snapshot(self, key: str) -> Snapshot | None:
        """See :meth:`ReservationStore.snapshot`."""
        ledger = self._ledgers.get(key)
        return None if ledger is None else ledger.snapshot

    def save_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """See :meth:`ReservationStore.save_snapshot`."""
        with self._lock:
            ledger = self._ledger(key)
            current = ledger.snapshot
            if current is not None and snapshot.fetched_at < current.fetched_at:
                return
            ledger.snapshot = snapshot
            if (
                current is not None
                and current.headroom.is_finite()
                and snapshot.headroom.is_finite()
                and current.headroom > snapshot.headroom
            ):
                ledger.consume(current.headroom - snapshot.headroom, snapshot.fetched_at)

    def reserve(
        self,
        key: str,
        hold_id: str,
        amount: Decimal,
        *,
        headroom: Decimal,
        reflected_before: float,
        expires_at: float,
        now: float,
        fetched_at: float | None = None,
    ) -> Reservation:
        """See :meth:`ReservationStore.reserve`."""
        with self._lock:
            ledger = self._ledger(key)
            stored = ledger.snapshot
            if fetched_at is not None and stored is not None and stored.fetched_at > fetched_at:
                raise StaleSnapshotError(key)
            ledger.expire(now)
            ledger.prune(reflected_before - PRUNE_MARGIN)
            available = headroom - ledger.held - ledger.unreflected(reflected_before)
            if available < amount:
                return Reservation(False, available)
            previous = ledger.holds.get(hold_id)
            if previous is not None:  # the same id again: it replaces its hold
                ledger.held -= previous[0]
            ledger.holds[hold_id] = (amount, expires_at)
            ledger.held += amount
            heapq.heappush(ledger.expiries, (expires_at, hold_id))
            return Reservation(True, available)

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        """See :meth:`ReservationStore.release`."""
        with self._lock:
            ledger = self._ledger(key)
            held = ledger.holds.pop(hold_id, None)
            if held is not None:
                ledger.held -= held[0]
            if usage > 0:
                ledger.record(now, usage)
            if not ledger.holds:
                ledger.expiries.clear()

    def extend(self, key: str, hold_id: str, *, expires_at: float) -> bool:
        """See :meth:`ReservationStore.extend`."""
        with self._lock:
            return self._extend(key, hold_id, expires_at)

    def extend_many(self, leases: Sequence[tuple[str, str, float]]) -> list[bool]:
        """:meth:`extend` for each ``(key, hold_id, expires_at)``, a thousand per lock (the
        lock is released in between, so reservations are not held up by a large batch)."""
        answers: list[bool] = []
        for first in range(0, len(leases), 1000):
            with self._lock:
                answers += [
                    self._extend(key, hold_id, at)
                    for key, hold_id, at in leases[first : first + 1000]
                ]
        return answers

    def _extend(self, key: str, hold_id: str, expires_at: float) -> bool:
        ledger = self._ledgers.get(key)
        held = None if ledger is None else ledger.holds.get(hold_id)
        if ledger is None or held is None:
            return False
        ledger.holds[hold_id] = (held[0], expires_at)
        expiries = ledger.expiries
        heapq.heappush(expiries, (expires_at, hold_id))
        if len(expiries) > 2 * len(ledger.holds) + 64:  # renewals leave stale entries
            ledger.expiries = [(until, held_id) for held_id, (_, until) in ledger.holds.items()]
            heapq.heapify(ledger.expiries)
        return True

    def outstanding(self, key: str, *, reflected_before: float, now: float) -> Decimal:
        """See :meth:`ReservationStore.outstanding`."""
        with self._lock:
            ledger = self._ledger(key)
            ledger.expire(now)
            ledger.prune(reflected_before - PRUNE_MARGIN)
            return ledger.held + ledger.unreflected(reflected_before)


_STORES: weakref.WeakSet[MemoryStore] = weakref.WeakSet()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_locks_after_fork)
