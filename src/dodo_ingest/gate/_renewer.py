"""``LeaseRenewer``: the one thread of a process that keeps the leases of live holds.

A hold's lease bounds how long the hold of a process that died keeps counting; while the
process lives, the renewer moves each live hold's lease forward once a third of it has
passed, so work of any length keeps its credits. Holds are weakly referenced: one nobody
references any more is not renewed (it ends with its lease).

- One thread per process, for every gate (started with the first live hold, ended after a
  minute without any); a forked child starts with no holds and its own thread.
- Renewals of one store are sent together (``extend_many`` when the store has it: one round
  trip to Redis), so a round costs one request per store, not one per hold.
- A renewal that cannot reach the store is tried again soon (a tenth of the lease, at most a
  second later), not a third of a lease later.

A leaf module: it knows holds only through the small :class:`Renewable` protocol.
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

    def lease_request(self) -> tuple[Any, str, str, float, float] | None:
        """``(store, key, hold_id, expires_at, span)`` to renew it now; ``None`` when it
        ended."""

    def lease_renewed(self, started: float, span: float, extended: bool | None) -> None:
        """The answer to a renewal started at ``started`` (monotonic): True, False (the
        store no longer has the hold), ``None`` (the store could not be reached)."""

    @property
    def renewal_due(self) -> float:
        """When (monotonic seconds) the hold should be renewed next."""


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
        self._failing = False
        """The last renewal could not reach its store (logged once per streak)."""

    def add(self, hold: Renewable) -> None:
        """Keep ``hold``'s lease renewed until it ends (or nobody references it)."""
        with self._condition:
            self._holds.add(hold)
            thread = self._thread
            if thread is None or not thread.is_alive():
                thread = self._thread = threading.Thread(
                    target=self._run, name="dodo-gate-renewer", daemon=True
                )
                self._wake_at = math.inf
                thread.start()
            elif hold.renewal_due < self._wake_at:
                self._condition.notify()

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
                        continue  # a hold arrived after the round
                    if idle:  # nothing to renew for a whole wait: end (add() starts another)
                        self._thread = None
                        return
                    wait = self._idle  # short holds come and go: stay for the next ones
                    idle = True
                else:
                    idle = False
                self._wake_at = self._monotonic() + wait
                self._condition.wait(wait)
                self._wake_at = math.inf

    def _round(self) -> float | None:
        """Renew what is due; the seconds until the next renewal is due (``None``: no live
        hold left)."""
        with self._condition:
            holds = list(self._holds)
        now = self._monotonic()
        live = []
        by_store: dict[int, list[tuple[Any, tuple[Any, str, str, float, float]]]] = {}
        for hold in holds:
            if hold.ended:
                self._discard(hold)
                continue
            live.append(hold)
            if hold.renewal_due <= now:
                request = hold.lease_request()
                if request is not None:
                    by_store.setdefault(id(request[0]), []).append((hold, request))
        for batch in by_store.values():
            self._renew(batch)
        if not live:
            return None
        soonest = float(min(hold.renewal_due for hold in live)) - self._monotonic()
        return min(max(soonest, _SHORTEST_WAIT), LONGEST_WAIT)

    def _renew(self, batch: Sequence[tuple[Any, tuple[Any, str, str, float, float]]]) -> None:
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
        except Exception as error:
            log = logger.debug if self._failing else logger.warning
            self._failing = True
            log(
                "credit gate: could not renew %d hold(s) (%s); trying again shortly",
                len(batch),
                error,
            )
            answers = [None] * len(batch)
        else:
            if self._failing:
                self._failing = False
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
