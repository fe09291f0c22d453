"""The delivery pipeline: :class:`Ingestion` queues usage events and delivers them in the
background, batched, retried with the same ids, and (with an :class:`Outbox`) crash-safe;
with a :class:`RedisOutbox`, a fleet of producers and :class:`Relay` processes shares one
Redis stream. The Redis names need the ``redis`` extra and import it on first use; the SQLite
``Outbox`` is loaded on first use too."""

import importlib
from typing import TYPE_CHECKING, Any

from .. import _present_as
from ._dead_letter import DeadLetter
from ._errors import DeliveryError, EventExpiredError, EventsDroppedError
from ._ids import new_event_id
from ._ingestion import Ingestion
from ._outbox_protocol import OutboxBackend, OutboxRow, SharedOutboxBackend
from ._signals import install_signal_handlers
from ._stats import DeliveryStats
from ._transport import ClientTransport, Transport

if TYPE_CHECKING:
    from ._ingestion import DEFAULT_DELIVERY_TIMEOUT
    from ._outbox import Outbox
    from ._redis_outbox import ConsumerStatus, OutboxFullError, RedisOutbox, StreamStatus
    from ._relay import Relay, RelayStats

_LAZY = {
    "DEFAULT_DELIVERY_TIMEOUT": "._ingestion",
    "Outbox": "._outbox",
    "ConsumerStatus": "._redis_outbox",
    "OutboxFullError": "._redis_outbox",
    "RedisOutbox": "._redis_outbox",
    "StreamStatus": "._redis_outbox",
    "Relay": "._relay",
    "RelayStats": "._relay",
}

__all__ = [
    "DEFAULT_DELIVERY_TIMEOUT",
    "ClientTransport",
    "ConsumerStatus",
    "DeadLetter",
    "DeliveryError",
    "DeliveryStats",
    "EventExpiredError",
    "EventsDroppedError",
    "Ingestion",
    "Outbox",
    "OutboxBackend",
    "OutboxFullError",
    "OutboxRow",
    "RedisOutbox",
    "Relay",
    "RelayStats",
    "SharedOutboxBackend",
    "StreamStatus",
    "Transport",
    "install_signal_handlers",
    "new_event_id",
]

_present_as(__name__, globals(), __all__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dodo_ingest.delivery' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    _present_as(__name__, globals(), [name])
    return value
