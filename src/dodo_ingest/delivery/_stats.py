"""``DeliveryStats``: a snapshot of the pipeline's counters."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeliveryStats"]


@dataclass(frozen=True)
class DeliveryStats:
    """Counters of one :class:`~dodo_ingest.Ingestion` in this process, taken at one moment.

    - ``enqueued``: events accepted by ``track()`` (plus events taken over from an outbox).
    - ``delivered``: events the API acknowledged (a duplicate id inside one batch counts once
      more here, as the API would ignore it).
    - ``ingested``: of those, the events the API reported as newly stored (the sum of its
      ``ingested_count`` answers); ``delivered - ingested`` is how many ids it had already
      seen and ignored (replays, answers lost on the way back).
    - ``retried``: event sends repeated after a transient failure (an event retried 3 times
      counts 3).
    - ``dead_lettered``: events given up on, kept with the reason (see ``dead_letters()``).
    - ``dropped``: events lost without being sent (queue full, ``track()`` after ``close()``,
      unsent at the end of ``close()`` without an outbox).
    - ``queued``: events still waiting or in flight:
      ``enqueued - delivered - dead_lettered - dropped``.
    """

    enqueued: int
    delivered: int
    ingested: int
    retried: int
    dead_lettered: int
    dropped: int
    queued: int
