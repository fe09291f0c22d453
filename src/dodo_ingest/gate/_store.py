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

import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

__all__ = ["PRUNE_MARGIN", "MemoryStore", "Reservation", "ReservationStore", "Snapshot"]

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


@dataclass(frozen=True)
class Reservation:
    """The answer of :meth:`ReservationStore.reserve`: ``admitted``, and what was available
    before the amount was taken (``headroom`` minus holds and unreflected usage)."""

    admitted: bool
    available: Decimal


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
    ) -> Reservation:
        """If ``headroom`` minus the live holds (those whose lease ends after ``now``) and
        the usage recorded at or after ``reflected_before`` leaves at least ``amount``, hold
        ``amount`` under ``hold_id`` until ``expires_at``. Either way, say what was
        available."""

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        """End the hold ``hold_id`` and record ``usage`` (>= 0) as settled at ``now``."""

    def extend(self, key: str, hold_id: str, *, expires_at: float) -> bool:
        """Move the end of a live hold's lease; False when it has ended already."""

    def outstanding(self, key: str, *, reflected_before: float, now: float) -> Decimal:
        """Live holds plus the usage recorded at or after ``reflected_before``."""


class MemoryStore:
    """A :class:`ReservationStore` for one process: dictionaries under one lock.

    Expired holds and usage older than every snapshot that could still need it are dropped as
    they are met, so memory stays proportional to the work in progress.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._holds: dict[str, dict[str, tuple[Decimal, float]]] = {}
        self._usage: dict[str, list[list[Any]]] = {}
        """Per key, ``[recorded_at, amount not yet reflected]`` in the order recorded."""

    def snapshot(self, key: str) -> Snapshot | None:
        """See :meth:`ReservationStore.snapshot`."""
        return self._snapshots.get(key)

    def save_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """See :meth:`ReservationStore.save_snapshot`."""
        with self._lock:
            current = self._snapshots.get(key)
            if current is not None and snapshot.fetched_at < current.fetched_at:
                return
            self._snapshots[key] = snapshot
            if current is None or not (
                current.headroom.is_finite() and snapshot.headroom.is_finite()
            ):
                return
            deducted = current.headroom - snapshot.headroom
            for entry in self._usage.get(key, ()):
                if deducted <= 0 or entry[0] >= snapshot.fetched_at:
                    break
                taken = min(entry[1], deducted)
                entry[1] -= taken
                deducted -= taken

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
    ) -> Reservation:
        """See :meth:`ReservationStore.reserve`."""
        with self._lock:
            available = headroom - self._outstanding(key, reflected_before, now)
            if available < amount:
                return Reservation(False, available)
            self._holds.setdefault(key, {})[hold_id] = (amount, expires_at)
            return Reservation(True, available)

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        """See :meth:`ReservationStore.release`."""
        with self._lock:
            holds = self._holds.get(key)
            if holds is not None:
                holds.pop(hold_id, None)
            if usage > 0:
                self._usage.setdefault(key, []).append([now, usage])

    def extend(self, key: str, hold_id: str, *, expires_at: float) -> bool:
        """See :meth:`ReservationStore.extend`."""
        with self._lock:
            holds = self._holds.get(key, {})
            held = holds.get(hold_id)
            if held is None:
                return False
            holds[hold_id] = (held[0], expires_at)
            return True

    def outstanding(self, key: str, *, reflected_before: float, now: float) -> Decimal:
        """See :meth:`ReservationStore.outstanding`."""
        with self._lock:
            return self._outstanding(key, reflected_before, now)

    def _outstanding(self, key: str, reflected_before: float, now: float) -> Decimal:
        total = Decimal(0)
        holds = self._holds.get(key)
        if holds:
            expired = [hold_id for hold_id, (_, until) in holds.items() if until <= now]
            for hold_id in expired:
                del holds[hold_id]
            total += sum((amount for amount, _ in holds.values()), Decimal(0))
        usage = self._usage.get(key)
        if usage:
            # Long reflected in every snapshot still in use, or all deducted: forget it.
            if usage[0][0] < reflected_before - PRUNE_MARGIN or not usage[0][1]:
                usage = self._usage[key] = [
                    entry
                    for entry in usage
                    if entry[0] >= reflected_before - PRUNE_MARGIN and entry[1]
                ]
            total += sum((amount for at, amount in usage if at >= reflected_before), Decimal(0))
        return total
