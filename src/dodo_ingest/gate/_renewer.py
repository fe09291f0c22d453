"""``LeaseRenewer``: the one thread of a process that keeps the leases of live holds.

A hold's lease bounds how long the hold of a process that died keeps counting; while the
process lives, the renewer moves each live hold's lease forward once a third of it has
passed, so work of any length keeps its credits. Holds are weakly referenced: one nobody
references any more is not renewed (it ends with its lease).

- One thread per process, for every gate (started with the first live hold, ended after a
  minute without any); a forked child starts with no holds and its own thread.
- A hold is renewed once a third of its lease has passed, or a little earlier (from a sixth)
  when a round renews others anyway; renewals of one store are sent together
  (``extend_many`` when the store has it: one round trip to Redis), the in-process store's
  first, so a round costs one request per store, not one per hold.
- A renewal that cannot reach the store is tried again soon (a tenth of the lease, at most a
  second later), not a third of a lease later.

It knows holds only through the small :class:`Renewable` protocol (it never imports the
gate).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ._store import MemoryStore

__all__ = ["LONGEST_WAIT", "LeaseRenewer", "Renewable", "renewer"]

logger = logging.getLogger("dodo_ingest")

LONGEST_WAIT = 60.0
"""The renewer looks at its holds at least this often (seconds)."""
_SHORTEST_WAIT = 0.01
_RETRY = 1.0
"""Seconds, at most, before a renewal that failed is tried again."""


class Renewable(Protocol):
    """What the renewer needs from a hold."""

    @property
    def ended(self) -> bool:
        """True once the hold was settled, released or cancelled."""

    @property
    def renewal_due(self) -> float:
        """When (monotonic seconds) the lease must be renewed at the latest."""

    @property
    def renewal_earliest(self) -> float:
        """From when (monotonic seconds) renewing it is worth a request: holds due within
        a window are renewed together."""

    def lease_request(self) -> tuple[Any, str, str, float, float] | None:
        """``(store, key, hold_id, expires_at, span)`` to renew it now; ``None`` when it
        ended."""

    def lease_renewed(self, started: float, span: float, extended: bool | None) -> None:
        """The answer to a renewal started at ``started`` (monotonic): True, False (the
        store no longer has the hold), ``None`` (the store could not be reached)."""


_Request = tuple[Any, str, str, float, float]


class LeaseRenewer:
    """Renews live holds' leases from one background thread (see the module)."""

    def __init__(
        self, *, idle: float = LONGEST_WAIT, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._idle = idle
        """Seconds the thread stays without live holds before it ends."""
        self._monotonic = monotonic
        self._condition = threading.Condition(threading.Lock())
        self._holds: weakref.WeakSet[Any] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf
        """When the thread's current wait ends (``inf``: not waiting)."""
        self._added_due = math.inf
        """The soonest ``renewal_due`` of holds added since the round began taking holds."""
        self._failing: set[int] = set()
        """Stores (by id) whose last renewal failed (logged once per streak and store)."""

    def add(self, hold: Renewable) -> None:
        """Keep ``hold``'s lease renewed until it ends (or nobody references it); also the
        way to say its due time moved sooner. Never raises."""
        with self._condition:
            self._holds.add(hold)
            due = hold.renewal_due
            self._added_due = min(self._added_due, due)
            thread = self._thread
            if thread is not None and thread.is_alive():
                if due < self._wake_at:
                    self._condition.notify()
                return
            thread = self._thread = threading.Thread(
                target=self._run, name="dodo-gate-renewer", daemon=True
            )
            self._wake_at = math.inf
            try:
                thread.start()
            except RuntimeError as error:  # no thread to be had (a pids limit, shutdown)
                self._thread = None
                logger.error(
                    "credit gate: cannot start the lease renewer (%s); holds end with their "
                    "lease unless a later reservation starts it",
                    error,
                )

    def live(self) -> int:
        """How many holds are renewed (ended ones leave at the next round)."""
        with self._condition:
            return len(self._holds)

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's holds and thread (never renew them)."""
        self._condition = threading.Condition(threading.Lock())
        self._holds = weakref.WeakSet()
        self._thread = None
        self._wake_at = math.inf
        self._added_due = math.inf
        self._failing = set()

    def _run(self) -> None:
        idle = False
        while True:
            try:
                wait = self._round()
            except Exception:  # never let the thread die with holds to renew
                logger.exception("credit gate: renewing leases failed; trying again")
                wait = _RETRY
            with self._condition:
                if wait is None:
                    if len(self._holds):
                        continue  # a hold arrived after the round took its holds
                    if idle:  # nothing to renew for a whole wait: end (add() starts another)
                        self._thread = None
                        return
                    wait = self._idle  # short holds come and go: stay for the next ones
                    idle = True
                else:
                    idle = False
                now = self._monotonic()
                # Holds added while the round ran are not in its plan.
                wait = min(wait, max(self._added_due - now, _SHORTEST_WAIT))
                self._wake_at = now + wait
                self._condition.wait(wait)
                self._wake_at = math.inf

    def _round(self) -> float | None:
        """Renew what is due (every hold past its earliest renewal time, in one request per
        store, the in-process ones first); the seconds until the next renewal is due
        (``None``: no live hold left)."""
        with self._condition:
            holds = list(self._holds)
            self._added_due = math.inf
        now = self._monotonic()
        live = []
        by_store: dict[int, list[tuple[Any, _Request]]] = {}
        for hold in holds:
            if hold.ended:
                self._discard(hold)
                continue
            live.append(hold)
            if hold.renewal_earliest <= now:
                request = hold.lease_request()
                if request is not None:
                    by_store.setdefault(id(request[0]), []).append((hold, request))
        # The in-process store never waits: a slow shared store must not hold it back.
        batches = sorted(by_store.values(), key=lambda b: not isinstance(b[0][1][0], MemoryStore))
        for batch in batches:
            self._renew(batch)
        if not live:
            return None
        soonest = float(min(hold.renewal_due for hold in live)) - self._monotonic()
        return min(max(soonest, _SHORTEST_WAIT), LONGEST_WAIT)

    def _renew(self, batch: Sequence[tuple[Any, _Request]]) -> None:
        store = batch[0][1][0]
        started = self._monotonic()
        leases = [(key, hold_id, expires_at) for _, (_, key, hold_id, expires_at, _) in batch]
        answers: Sequence[bool | None]
        try:
            many = getattr(store, "extend_many", None)
            if many is not None:
                answers = list(many(leases))
            else:
                answers = [store.extend(key, hold_id, expires_at=at) for key, hold_id, at in leases]
            if len(answers) != len(batch):
                raise ValueError(f"{len(answers)} answers for {len(batch)} holds")
        except Exception as error:
            log = logger.debug if id(store) in self._failing else logger.warning
            self._failing.add(id(store))
            log(
                "credit gate: could not renew %d hold(s) (%s); trying again shortly",
                len(batch),
                error,
            )
            answers = [None] * len(batch)
        else:
            if id(store) in self._failing:
                self._failing.discard(id(store))
                logger.warning("credit gate: leases are renewed again")
        for (hold, request), extended in zip(batch, answers, strict=True):
            hold.lease_renewed(started, request[4], extended)
            if extended is False:
                self._discard(hold)
                if not hold.ended:
                    logger.warning(
                        "credit gate: a live hold (%s) had ended in the store before its "
                        "renewal (its lease ran out): it no longer counts",
                        request[2],
                    )

    def _discard(self, hold: Any) -> None:
        with self._condition:
            self._holds.discard(hold)


renewer = LeaseRenewer()
"""The renewer of this process."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=renewer.reset_after_fork)
