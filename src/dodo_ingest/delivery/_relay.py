"""``Relay``: a process that delivers what producers wrote to a shared outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._ingestion import Ingestion
from ._redis_outbox import RedisOutbox

__all__ = ["Relay", "RelayStats"]

logger = logging.getLogger("dodo_ingest")


@dataclass(frozen=True)
class RelayStats:
    """Counters of one relay, and the stream's state, taken at one moment.

    - ``received``: entries this relay read from the stream or claimed from a silent one.
    - ``delivered``, ``ingested``, ``retried``, ``dead_lettered``: as in
      :class:`~dodo_ingest.DeliveryStats`, for what this relay sent.
    - ``pending``: unsettled entries in the stream (all consumers); ``lag``: of those,
      entries no consumer has read yet; ``dead_letters``: kept in ``<stream>:dead``. These
      three are ``None`` when Redis cannot be reached.
    """

    received: int
    claimed: int
    delivered: int
    ingested: int
    retried: int
    dead_lettered: int
    pending: int | None
    lag: int | None
    dead_letters: int | None


class Relay:
    """Deliver the events of a shared outbox to the API, as one consumer of its group.

    A relay is an :class:`Ingestion` that tracks nothing: the same batching, retry, split,
    expiry and dead-letter policy, run on entries any producer wrote. Run several for
    throughput and availability; entries a relay held when it died are claimed by another
    after the outbox's ``claim_idle`` and sent again with the same ids (the API ignores ids
    it has stored). ``outbox`` is a ``redis://`` URL or a :class:`RedisOutbox`; the other
    arguments are :class:`Ingestion`'s (``client=``, ``api_key=``, ``base_url=``, ...).
    ``poll_interval`` is how long an idle relay waits before it looks at the stream again.
    """

    def __init__(
        self,
        outbox: str | RedisOutbox,
        *,
        batch_size: int = 1000,
        poll_interval: float = 0.2,
        **ingestion: Any,
    ) -> None:
        self.outbox = RedisOutbox(outbox) if isinstance(outbox, str) else outbox
        self._owns_outbox = isinstance(outbox, str)
        try:
            self.ingestion = Ingestion(
                outbox=self.outbox,
                batch_size=batch_size,
                flush_interval=poll_interval,
                **ingestion,
            )
        except BaseException:
            if self._owns_outbox:
                self.outbox.close()
            raise
        self._stopped = threading.Event()

    @property
    def stats(self) -> RelayStats:
        """This relay's counters and the stream's state (one round trip to Redis)."""
        delivery = self.ingestion.stats
        pending = lag = dead = None
        if self.outbox.reachable:  # else a status would wait out the Redis timeout
            try:
                status = self.outbox.status()
            except Exception as error:
                logger.debug("relay: stream status unavailable (%s)", error)
            else:
                pending, lag, dead = status.pending, status.lag, status.dead_letters
        return RelayStats(
            received=self.outbox.received,
            claimed=self.outbox.claimed,
            delivered=delivery.delivered,
            ingested=delivery.ingested,
            retried=delivery.retried,
            dead_lettered=delivery.dead_lettered,
            pending=pending,
            lag=lag,
            dead_letters=dead,
        )

    def run(
        self,
        *,
        stats_interval: float = 10.0,
        on_stats: Callable[[RelayStats], None] | None = None,
    ) -> None:
        """Deliver until :meth:`stop` is called (from another thread or a signal handler),
        calling ``on_stats`` (default: an INFO log line) every ``stats_interval`` seconds
        and once at the end; then close, finishing the batch in flight for at most the
        ``shutdown_timeout``."""
        report = on_stats or _log_stats
        try:
            while not self._stopped.wait(stats_interval):
                report(self.stats)
        finally:
            self.close()
            report(self.stats)

    def stop(self) -> None:
        """Make :meth:`run` return (safe in a signal handler)."""
        self._stopped.set()

    def close(self, timeout: float | None = None) -> None:
        """Stop delivering (see :meth:`Ingestion.close`); what this relay held is left for
        the others to claim at once."""
        self._stopped.set()
        self.ingestion.close(timeout)
        if self._owns_outbox:
            self.outbox.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Relay({self.outbox!r})"


def _log_stats(stats: RelayStats) -> None:
    logger.info(
        "relay: received %d, delivered %d, retried %d, dead-lettered %d; stream pending %s, "
        "lag %s, dead letters %s",
        stats.received,
        stats.delivered,
        stats.retried,
        stats.dead_lettered,
        stats.pending,
        stats.lag,
        stats.dead_letters,
    )
