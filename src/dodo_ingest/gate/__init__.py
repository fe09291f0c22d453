"""The credit gate: reserve a customer's credits before work starts, refuse (HTTP 402) what
they cannot pay for, and settle the real cost afterwards; race-free within a process, and
across a fleet with a shared store."""

from ._errors import CreditCheckUnavailableError, InsufficientCreditsError
from ._gate import CreditGate, GateStats, Hold, headroom_of
from ._store import MemoryStore, Reservation, ReservationStore, Snapshot

__all__ = [
    "CreditCheckUnavailableError",
    "CreditGate",
    "GateStats",
    "Hold",
    "InsufficientCreditsError",
    "MemoryStore",
    "Reservation",
    "ReservationStore",
    "Snapshot",
    "headroom_of",
]
