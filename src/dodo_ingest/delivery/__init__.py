"""The delivery pipeline: :class:`Ingestion` queues usage events and delivers them in the
background, batched, retried with the same ids, and (with an :class:`Outbox`) crash-safe."""

from ._dead_letter import DeadLetter
from ._errors import DeliveryError, EventExpiredError, EventsDroppedError
from ._ids import new_event_id
from ._ingestion import DEFAULT_DELIVERY_TIMEOUT, Ingestion
from ._outbox import Outbox
from ._stats import DeliveryStats

__all__ = [
    "DEFAULT_DELIVERY_TIMEOUT",
    "DeadLetter",
    "DeliveryError",
    "DeliveryStats",
    "EventExpiredError",
    "EventsDroppedError",
    "Ingestion",
    "Outbox",
    "new_event_id",
]
