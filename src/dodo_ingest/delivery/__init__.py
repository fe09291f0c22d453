"""The delivery pipeline: :class:`Ingestion` queues usage events and delivers them in the
background, batched, retried with the same ids, and (with an :class:`Outbox`) crash-safe."""

from ._dead_letter import DeadLetter
from ._errors import DeliveryError, EventExpiredError, EventsDroppedError
from ._ids import new_event_id
from ._ingestion import DEFAULT_DELIVERY_TIMEOUT, Ingestion
from ._outbox import Outbox
from ._outbox_protocol import OutboxBackend, OutboxRow
from ._signals import install_signal_handlers
from ._stats import DeliveryStats
from ._transport import ClientTransport, Transport

__all__ = [
    "DEFAULT_DELIVERY_TIMEOUT",
    "ClientTransport",
    "DeadLetter",
    "DeliveryError",
    "DeliveryStats",
    "EventExpiredError",
    "EventsDroppedError",
    "Ingestion",
    "Outbox",
    "OutboxBackend",
    "OutboxRow",
    "Transport",
    "install_signal_handlers",
    "new_event_id",
]
