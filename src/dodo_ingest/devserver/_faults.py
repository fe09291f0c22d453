"""Fault injection for reliability tests: which ``POST /events/ingest`` requests misbehave.

A spec such as ``"5xx=0.1,429=0.05,reset=0.05,lost_ack=0.05,slow=0.02"`` gives each kind's
probability per request. One uniform draw per request picks at most one kind (the
probabilities are stacked in the order of :data:`FAULT_KINDS`, so they must add up to at most
1). With a seed the sequence of outcomes is the same on every run.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "FaultInjector", "parse_faults"]

FAULT_KINDS = ("5xx", "429", "reset", "lost_ack", "slow")
"""``5xx``: answer 500 without storing. ``429``: answer 429 with ``Retry-After`` without
storing. ``reset``: drop the connection without storing or answering. ``lost_ack``: store the
batch, then drop the connection without answering. ``slow``: store, then answer after a delay."""


def parse_faults(spec: str | None) -> dict[str, float]:
    """Parse a fault spec into ``{kind: probability}`` (empty for ``None`` or ``""``).

    Raises :class:`ValueError` naming the bad part: an unknown kind, a repeated kind, a
    probability that is not a number from 0 to 1, or probabilities adding up to more than 1.
    """
    faults: dict[str, float] = {}
    if not spec or not spec.strip():
        return faults
    for part in spec.split(","):
        kind, sep, raw = (piece.strip() for piece in part.partition("="))
        if not sep or kind not in FAULT_KINDS:
            raise ValueError(
                f"fault spec part {part.strip()!r}: expected KIND=PROBABILITY with KIND one of "
                f"{', '.join(FAULT_KINDS)}"
            )
        if kind in faults:
            raise ValueError(f"fault spec part {part.strip()!r}: {kind} is given twice")
        try:
            probability = float(raw)
        except ValueError:
            probability = -1.0
        if not 0.0 <= probability <= 1.0:
            raise ValueError(
                f"fault spec part {part.strip()!r}: the probability must be a number from 0 to 1"
            )
        faults[kind] = probability
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault spec {spec!r}: the probabilities add up to more than 1")
    return faults


@dataclass(frozen=True)
class FaultInjector:
    """Draws the fault (or none) of each ingest request; thread-safe.

    ``retry_after`` (seconds) goes into the ``Retry-After`` header of 429 answers;
    ``slow_delay`` (seconds) is how long a ``slow`` answer waits.
    """

    faults: dict[str, float]
    retry_after: float
    slow_delay: float
    rng: random.Random
    lock: threading.Lock

    @classmethod
    def create(
        cls, spec: str | None, *, retry_after: float, seed: int | None, slow_delay: float
    ) -> FaultInjector:
        """Build from a spec string (see :func:`parse_faults`)."""
        if retry_after < 0 or slow_delay < 0:
            raise ValueError("retry_after and slow_delay must be >= 0 seconds")
        return cls(
            parse_faults(spec), retry_after, slow_delay, random.Random(seed), threading.Lock()
        )

    def draw(self) -> str | None:
        """The fault kind of the next request, or ``None`` to answer normally."""
        if not self.faults:
            return None
        with self.lock:
            roll = self.rng.random()
        threshold = 0.0
        for kind in FAULT_KINDS:
            threshold += self.faults.get(kind, 0.0)
            if roll < threshold:
                return kind
        return None
