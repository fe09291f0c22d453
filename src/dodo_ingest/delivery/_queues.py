"""Where events wait for the sender: in memory, or in an :class:`Outbox` on disk.

Both queues hand the sender batches of *items*, tuples whose first two fields are the
event id and the event's Unix timestamp, plus the flush waiters the batch completes.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from ..client import EventInput
from ._dead_letter import DeadLetter
from ._encoding import encode_event, with_timestamp
from ._outbox import Outbox, event_from_json
from ._waiter import Waiter

__all__ = ["DEAD_LETTER_MEMORY", "EventQueue", "Item", "MemoryQueue", "OutboxQueue"]

Item = tuple[Any, ...]
"""A queued event: ``(event_id, timestamp, event)`` in memory, ``(event_id, timestamp,
json_body, seq)`` from an outbox."""

DEAD_LETTER_MEMORY = 10_000
"""Dead letters kept in memory without an outbox (the oldest are forgotten first)."""


class EventQueue(Protocol):
    """What the sender needs from a queue."""

    def take(self, limit: int) -> tuple[list[Item], list[Waiter]]:
        """The next batch (at most ``limit`` items) and the waiters it completes."""

    def add_waiter(self, waiter: Waiter) -> None:
        """Place a flush waiter after everything queued so far."""

    def encode(self, items: Sequence[Item]) -> bytes:
        """The ``POST /events/ingest`` body for ``items``."""

    def events(self, items: Sequence[Item]) -> list[EventInput]:
        """``items`` as events (for ``on_error``)."""

    def delivered(self, items: Sequence[Item]) -> None:
        """Forget acknowledged items."""

    def bury(self, items: Sequence[Item], reason: str, status_code: int | None) -> None:
        """Keep ``items`` as dead letters."""

    def backlog(self) -> int:
        """Roughly how many items wait (a hint for batching)."""

    def requeue(self, items: Sequence[Item], waiters: Sequence[Waiter]) -> None:
        """Put back a batch whose delivery failed unexpectedly, at the front."""


class MemoryQueue:
    """A FIFO in memory. ``track()`` appends to :attr:`items` directly (no lock)."""

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_MEMORY)

    def take(self, limit: int) -> tuple[list[Item], list[Waiter]]:
        items: list[Item] = []
        waiters: list[Waiter] = []
        popleft = self.items.popleft
        try:
            while len(items) < limit:
                entry = popleft()
                if type(entry) is tuple:
                    items.append(entry)
                else:
                    waiters.append(entry)
        except IndexError:
            pass
        return items, waiters

    def add_waiter(self, waiter: Waiter) -> None:
        self.items.append(waiter)

    def encode(self, items: Sequence[Item]) -> bytes:
        events = ",".join([encode_event(event, ts) for _, ts, event in items])
        return f'{{"events":[{events}]}}'.encode()

    def events(self, items: Sequence[Item]) -> list[EventInput]:
        return [with_timestamp(event, ts) for _, ts, event in items]

    def delivered(self, items: Sequence[Item]) -> None:
        pass

    def bury(self, items: Sequence[Item], reason: str, status_code: int | None) -> None:
        now = datetime.now(UTC)
        for event in self.events(items):
            self.dead_letters.append(DeadLetter(event, reason, status_code, now))

    def backlog(self) -> int:
        return len(self.items)

    def requeue(self, items: Sequence[Item], waiters: Sequence[Waiter]) -> None:
        self.items.extendleft(reversed([*items, *waiters]))

    def clear(self) -> list[Item]:
        """Remove and return every waiting item (waiters are fired)."""
        items, waiters = self.take(len(self.items) + 1)
        for waiter in waiters:
            waiter.fire()
        return items


class OutboxQueue:
    """The events this pipeline owns in an :class:`Outbox`, in order of their sequence number.

    ``track()`` appends through :meth:`append`. A flush waits until every event of ours with a
    sequence number up to the highest in the file at the time of the flush is settled: what
    this pipeline appended, and what it took over from dead processes.
    """

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.lock = threading.Lock()
        self.last_seq = 0
        """Highest sequence number appended by this pipeline."""
        self.unsent = 0
        """Appended since the sender last looked (a hint for batching)."""
        self._waiters: list[tuple[int, Waiter]] = []

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Store one event (committed when this returns); return how many wait unsent."""
        seq = self.outbox.append(event_id, timestamp, body)
        with self.lock:
            if seq > self.last_seq:
                self.last_seq = seq
            self.unsent += 1
            return self.unsent

    def take(self, limit: int) -> tuple[list[Item], list[Waiter]]:
        with self.lock:
            self.unsent = 0
            registered = list(self._waiters)
        rows = self.outbox.fetch(limit)
        # Rows come in sequence order, so once this batch settles, everything of ours up to
        # its last row is settled; a short read means nothing else of ours was pending.
        if len(rows) < limit:
            ready = registered
        else:
            last = rows[-1][3]
            ready = [(seq, waiter) for seq, waiter in registered if seq <= last]
        if ready:
            with self.lock:
                self._waiters = [entry for entry in self._waiters if entry not in ready]
        return list(rows), [waiter for _, waiter in ready]

    def add_waiter(self, waiter: Waiter) -> None:
        """Wait for every event pending in the file now that this pipeline owns or takes over."""
        target = self.outbox.last_seq()
        with self.lock:
            self._waiters.append((target, waiter))

    def encode(self, items: Sequence[Item]) -> bytes:
        return ('{"events":[' + ",".join([row[2] for row in items]) + "]}").encode()

    def events(self, items: Sequence[Item]) -> list[EventInput]:
        return [event_from_json(row[2]) for row in items]

    def delivered(self, items: Sequence[Item]) -> None:
        self.outbox.delete(items)

    def bury(self, items: Sequence[Item], reason: str, status_code: int | None) -> None:
        self.outbox.bury(items, reason, status_code)

    def backlog(self) -> int:
        return self.unsent

    def requeue(self, items: Sequence[Item], waiters: Sequence[Waiter]) -> None:
        # The rows are still in the file and are read again; only the waiters need putting back.
        with self.lock:
            self._waiters[:0] = [(0, waiter) for waiter in waiters]
