"""The credit gate: reserve a customer's credits before work starts, refuse (HTTP 402) what
they cannot pay for, and settle the real cost afterwards; race-free within a process, and
across a fleet with a :class:`RedisStore` (which needs the ``redis`` extra and imports it on
first use)."""

import importlib
from typing import TYPE_CHECKING, Any

from .. import _present_as
from ._errors import CreditCheckUnavailableError, InsufficientCreditsError
from ._gate import CreditGate, GateStats, Hold, HoldRequest, headroom_of
from ._store import MemoryStore, Reservation, ReservationStore, Snapshot, StaleSnapshotError

if TYPE_CHECKING:
    from ._redis_store import RedisStore

__all__ = [
    "CreditCheckUnavailableError",
    "CreditGate",
    "GateStats",
    "Hold",
    "HoldRequest",
    "InsufficientCreditsError",
    "MemoryStore",
    "RedisStore",
    "Reservation",
    "ReservationStore",
    "Snapshot",
    "StaleSnapshotError",
    "headroom_of",
]

_present_as(__name__, globals(), __all__)


def __getattr__(name: str) -> Any:
    if name != "RedisStore":
        raise AttributeError(f"module 'dodo_ingest.gate' has no attribute {name!r}")
    value = importlib.import_module("._redis_store", __name__).RedisStore  # needs redis
    globals()[name] = value
    _present_as(__name__, globals(), [name])
    return value
