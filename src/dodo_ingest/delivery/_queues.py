"""Where events wait for the sender: in memory, or in an :class:`Outbox` on disk.

Both queues hand the sender batches of *items*, tuples whose first two fields are the
event id and the event's Unix timestamp, plus the flush waiters the batch completes.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from ..client import EventInput
from ._dead_letter import DeadLetter
from ._ids import format_epoch
from ._outbox import Outbox, OutboxRow, event_from_json
from ._waiter import Waiter

__all__ = [
    "DEAD_LETTER_MEMORY",
    "EventQueue",
    "Item",
    "MemoryItem",
    "MemoryQueue",
    "OutboxQueue",
    "OutboxRow",
    "encode_event",
    "event_json",
    "with_timestamp",
]

Item = tuple[Any, ...]
MemoryItem = tuple[str, float, EventInput]
"""An event waiting in memory: ``(event_id, timestamp, event)``."""

_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_quote = json.encoder.encode_basestring  # JSON string literal, C-accelerated


def _make_encoder() -> Callable[[Mapping[str, Any]], str]:
    """The C encoder of the json module built once, else :func:`json.dumps` (other Pythons).

    Building it per call is what makes ``json.dumps`` slow for small objects. Events hold
    only validated scalars, so the circular-reference check is not needed.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            encoder = make(None, _unencodable, _quote, None, ":", ",", False, False, True)
            if "".join(encoder({"k": 1.5}, 0)) == '{"k":1.5}':
                return lambda data: "".join(encoder(data, 0))
        except Exception:  # a different C signature: fall back
            pass
    return _encode_json


def _unencodable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_encode_fast = _make_encoder()

DEAD_LETTER_MEMORY = 10_000
"""Dead letters kept in memory without an outbox (the oldest are forgotten first)."""


def event_json(event: EventInput, timestamp: float) -> dict[str, Any]:
    """The JSON object of one event, with its timestamp fixed."""
    data: dict[str, Any] = {
        "event_id": event.event_id,
        "customer_id": event.customer_id,
        "event_name": event.event_name,
        "timestamp": format_epoch(timestamp),
    }
    if event.metadata is not None:
        data["metadata"] = event.metadata
    return data


_heads: dict[tuple[str, str], str] = {}
"""Encoded ``customer_id``/``event_name`` part per pair seen (few pairs repeat a lot)."""
_MAX_HEADS = 4096


def _head(customer_id: str, event_name: str) -> str:
    head = _heads.get((customer_id, event_name))
    if head is None:
        if len(_heads) >= _MAX_HEADS:
            _heads.clear()
        head = f',"customer_id":{_quote(customer_id)},"event_name":{_quote(event_name)},'
        _heads[(customer_id, event_name)] = head
    return head


def encode_event(event: EventInput, timestamp: float) -> str:
    """One event as compact JSON text, the same text as ``json.dumps`` of :func:`event_json`
    (built from cached parts, because the sender does this for every event)."""
    metadata = event.metadata
    text = (
        f'{{"event_id":{_quote(event.event_id)}{_head(event.customer_id, event.event_name)}'
        f'"timestamp":"{format_epoch(timestamp)}"'
    )
    if metadata is None:
        return text + "}"
    return f'{text},"metadata":{_encode_fast(metadata)}}}'


def with_timestamp(event: EventInput, timestamp: float) -> EventInput:
    """``event`` with its timestamp filled in (for reports to ``on_error``)."""
    if event.timestamp is not None:
        return event
    return EventInput(
        event.event_id,
        event.customer_id,
        event.event_name,
        datetime.fromtimestamp(timestamp, timezone.utc),
        event.metadata,
    )


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
        now = datetime.now(timezone.utc)
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

    def reset_after_fork(self) -> None:
        """Forget the parent's state: the child owns nothing yet."""
        self.lock = threading.Lock()
        self.last_seq = 0
        self.unsent = 0
        self._waiters = []
