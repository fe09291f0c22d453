"""``BatchSender``: the delivery policy for one batch, apart from threads and sockets.

It settles every event of a batch exactly once (acknowledged, dead-lettered, or handed back
when the pipeline stops) through a :class:`~._transport.Transport`. It decides:

- **duplicates**: an id twice in one batch is sent once (the API would refuse the request);
- **size**: a body over ``max_request_bytes`` is split in halves;
- **expiry**: events older than ``max_event_age`` are dead-lettered before each attempt;
- **refusals**: 400/413/422 are bisected down to the events the API refuses, which are
  dead-lettered with its message; 401/403 and other refusals pause sending, nothing dropped;
- **transient failures** (no answer, a timeout, 408/409/429, a 2xx that is not an
  acknowledgement) are retried with the same ids after a backoff (``Retry-After`` honoured,
  at most ``max_retry_after``);
- **server errors and poison events**: a part that fails with 5xx
  :data:`POISON_THRESHOLD` times in a row is split in halves when the API has acknowledged
  something since the last such split, or when every part in flight has failed that often
  (several poisoned events, or an outage); otherwise it is retried after its siblings
  (rotation), which serve as the probe. Sends stay one at a time with one backoff each, so
  splitting never raises the request rate. A single event that fails that often while other
  events were acknowledged is dead-lettered as the cause.

Everything it needs from the outside (sleeping, reporting, the clock) is passed in, so the
policy is unit-tested with a scripted transport and no threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from ..client import APIConnectionError, APIStatusError
from ..client._errors import UnexpectedResponseError
from ..client._retry import RetryPolicy, is_retryable
from ._errors import EventExpiredError
from ._queues import EventQueue, QueuedEvent, encode_batch
from ._settings import Settings
from ._transport import Transport

__all__ = ["POISON_THRESHOLD", "SPLIT_STATUSES", "Abandoned", "BatchSender"]

logger = logging.getLogger("dodo_ingest")

SPLIT_STATUSES = frozenset({400, 413, 422})
"""Refusals of the whole request that bisection can pin on some of its events."""
POISON_THRESHOLD = 5
"""Consecutive 5xx answers to one part before the sender suspects an event in it."""

Report = Callable[[BaseException, Sequence[QueuedEvent]], None]
Sleep = Callable[[float, bool], bool]
"""``sleep(seconds, wake_on_flush)``: False when the pipeline is stopping."""


class Abandoned(Exception):
    """The pipeline stopped while ``items`` were unsettled (they are not counted)."""

    def __init__(self, items: list[QueuedEvent]) -> None:
        super().__init__(f"{len(items)} unsettled")
        self.items = items


class _Part:
    """A slice of a batch in flight, with what the isolation policy knows about it."""

    __slots__ = ("acks_at_start", "body", "items", "last_error", "server_errors", "suspect")

    def __init__(self, items: list[QueuedEvent], acks_at_start: int) -> None:
        self.items = items
        self.acks_at_start = acks_at_start
        self.server_errors = 0
        self.body = b""
        self.last_error: BaseException | None = None
        self.suspect = False
        """Failed with 5xx :data:`POISON_THRESHOLD` times in a row at some point."""


class BatchSender:
    """Settles batches through ``transport`` and keeps the delivery counters."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport | None,
        queue: EventQueue,
        report: Report,
        sleep: Sleep,
        redact: Callable[[str], str],
        *,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.queue = queue
        self._report = report
        self._sleep = sleep
        self._redact = redact
        self._clock = clock
        self._jitter = jitter
        self.retry_policy = RetryPolicy(
            initial_delay=settings.retry_initial_delay,
            max_delay=settings.retry_max_delay,
            max_retry_after=settings.max_retry_after,
        )
        self.lock = threading.Lock()
        """Guards the counters and the write-off of a batch still in flight at close."""
        self.delivered = 0
        self.ingested = 0
        self.retried = 0
        self.dead_lettered = 0
        self.paused = False
        self._parts: deque[_Part] = deque()
        self._written_off = False
        self._failures = 0
        """Failed attempts since the last acknowledgement (the backoff exponent)."""
        self._acks = 0
        self._split_acks = -1
        self._batch_acks = 0
        """``_acks`` when the batch in flight was taken."""
        """``_acks`` when the last split on server errors was made."""
        self._unexpected_reported = False

    # --- called by the pipeline ------------------------------------------------------------

    def deliver(self, items: list[QueuedEvent]) -> None:
        """Settle ``items``; raise :class:`Abandoned` when stopped before all were settled."""
        unique: dict[str, QueuedEvent] = {}
        duplicates: list[QueuedEvent] = []
        for item in items:
            if item.event_id in unique:
                duplicates.append(item)
            else:
                unique[item.event_id] = item
        with self.lock:
            self._written_off = False
            self._parts = deque()
            if duplicates:
                self.queue.delivered(duplicates)
                self.delivered += len(duplicates)
                items = list(unique.values())
            self._parts = deque([_Part(items, self._acks)])
            self._batch_acks = self._acks
        while self._parts:
            self._attempt(self._parts[0])

    def write_off(self) -> list[QueuedEvent]:
        """Give up on the batch in flight (``close()`` ran out of time): return its unsettled
        events, which nothing will count or settle afterwards."""
        with self.lock:
            items = [] if self._written_off else self.unsettled()
            self._written_off = True
            return items

    # --- one attempt -------------------------------------------------------------------------

    def _attempt(self, part: _Part) -> None:
        count = len(part.items)
        self._expire(part)
        if not part.items:
            return  # all expired (and the part removed)
        if len(part.items) != count or not part.body:  # encoded once, again if events expired
            part.body = encode_batch(part.items)
            if len(part.body) > self.settings.max_request_bytes and len(part.items) > 1:
                self._split(part)
                return
        transport = self.transport
        assert transport is not None, "the pipeline sets the transport before sending"
        self._check_written_off(part)
        try:
            ingested = transport.send(part.body)
        except APIStatusError as error:
            self._check_written_off(part)
            if error.status_code >= 500 and is_retryable(error):
                self._server_error(part, error)
            elif is_retryable(error):
                self._retry(part, error)
            elif error.status_code in SPLIT_STATUSES:
                self._refused(part, error)
            else:
                self._pause(part, error)
        except Exception as error:  # no answer, a timeout, or an answer that is no ack
            self._check_written_off(part)
            unexpected = isinstance(error, UnexpectedResponseError) or not isinstance(
                error, APIConnectionError
            )
            if unexpected and not self._unexpected_reported:
                self._unexpected_reported = True
                self._report(error, part.items)
            self._retry(part, error)
        else:
            self._acknowledged(part, ingested)

    def _check_written_off(self, part: _Part) -> None:
        """``close()`` gave up on this batch: nothing of it may be sent or counted again."""
        if self._written_off:
            raise Abandoned([])

    def _acknowledged(self, part: _Part, ingested: int) -> None:
        with self.lock:
            if self._written_off:
                raise Abandoned([])
            self.queue.delivered(part.items)
            self.delivered += len(part.items)
            self.ingested += ingested
            self._parts.popleft()
        self._acks += 1
        self._failures = 0
        self._unexpected_reported = False
        if self.paused:
            self.paused = False
            logger.warning("delivery resumed")

    def _retry(self, part: _Part, error: BaseException) -> None:
        """Count the failed attempt and wait before the next one."""
        part.last_error = error
        with self.lock:
            self.retried += len(part.items)
        delay = self._retry_delay(error)
        self._failures += 1
        logger.warning(
            "sending %d event(s) failed (%s); retrying in %.2f s",
            len(part.items),
            self._redact(str(error)),
            delay,
        )
        if not self._sleep(delay, False):
            self._abandon()

    def _server_error(self, part: _Part, error: APIStatusError) -> None:
        """A 5xx: retry, and isolate an event that keeps failing while others go through."""
        part.server_errors += 1
        if part.server_errors >= POISON_THRESHOLD:
            if len(part.items) == 1 and (
                self._acks > part.acks_at_start
                # Only failing single events are left (poisoned siblings), and other events
                # of this batch went through.
                or (
                    self._acks > self._batch_acks
                    and all(p.suspect and len(p.items) == 1 for p in self._parts if p is not part)
                )
            ):
                reason = self._redact(
                    f"HTTP {error.status_code}: {error.message} (failed {part.server_errors} "
                    "times in a row while other events were acknowledged)"
                )
                self._bury(part, part.items, reason, error.status_code, error)
                return
            part.suspect = True
            if len(part.items) > 1 and (
                self._acks > self._split_acks or all(p.suspect for p in self._parts)
            ):
                # An ack since the last split, or every part keeps failing (two poisoned
                # events, or an outage): split. Sends stay one at a time, one backoff each,
                # so splitting never raises the request rate.
                self._split_acks = self._acks
                self._split(part)
            elif len(self._parts) > 1:
                part.server_errors = 0
                self._parts.rotate(-1)
        self._retry(part, error)

    def _refused(self, part: _Part, error: APIStatusError) -> None:
        """400/413/422: bisect down to the events the API refuses, and keep those."""
        if len(part.items) > 1:
            self._split(part)
            return
        reason = self._redact(f"HTTP {error.status_code}: {error.message}")
        self._bury(part, part.items, reason, error.status_code, error)

    def _pause(self, part: _Part, error: APIStatusError) -> None:
        """The API refused the key or the endpoint: keep the events, try again later."""
        if not self.paused:
            self.paused = True
            logger.error(
                "the API refused delivery (HTTP %s: %s); events are kept and retried every "
                "%g s or on flush()",
                error.status_code,
                self._redact(error.message),
                self.settings.auth_retry_interval,
            )
            self._report(error, part.items)
        if not self._sleep(self.settings.auth_retry_interval, True):
            self._abandon()

    def _split(self, part: _Part) -> None:
        """Replace ``part`` at the front by its two halves, first half first."""
        middle = len(part.items) // 2
        self._parts.popleft()
        self._parts.appendleft(_Part(part.items[middle:], self._acks))
        self._parts.appendleft(_Part(part.items[:middle], self._acks))

    def _expire(self, part: _Part) -> None:
        """Dead-letter the events of ``part`` older than ``max_event_age``."""
        cutoff = self._clock() - self.settings.max_event_age
        if min(item.timestamp for item in part.items) >= cutoff:
            return
        expired = [item for item in part.items if item.timestamp < cutoff]
        error = EventExpiredError(self.settings.max_event_age, part.last_error)
        self._bury(part, expired, self._redact(f"expired: {error}"), None, error)

    def _bury(
        self,
        part: _Part,
        items: list[QueuedEvent],
        reason: str,
        status_code: int | None,
        error: BaseException,
    ) -> None:
        """Dead-letter ``items`` of ``part`` and take them out of it in one step, so that a
        write-off never counts them again."""
        with self.lock:
            if self._written_off:
                raise Abandoned([])
            self.queue.bury(items, reason, status_code)
            self.dead_lettered += len(items)
            buried = {id(item) for item in items}
            part.items = [item for item in part.items if id(item) not in buried]
            if not part.items:
                self._parts.remove(part)
        logger.error("%d event(s) dead-lettered: %s", len(items), reason)
        self._report(error, items)

    def _retry_delay(self, error: BaseException) -> float:
        return self.retry_policy.delay(self._failures, error, jitter=self._jitter)

    def unsettled(self) -> list[QueuedEvent]:
        """The events of the last batch not settled yet (after :meth:`deliver` raised)."""
        return [item for part in self._parts for item in part.items]

    def _abandon(self) -> None:
        """The pipeline is stopping: hand back what is unsettled (unless written off)."""
        with self.lock:
            items = [] if self._written_off else self.unsettled()
            self._written_off = True
        raise Abandoned(items)
