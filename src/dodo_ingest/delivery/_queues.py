"""Where events wait for the sender: in memory, or in an outbox (:class:`OutboxBackend`).

Both queues hold :class:`QueuedEvent` items, encoded once by ``track()``, and keep the flush
waiters beside the events (:class:`~._waiter.Waiters`), never among them.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol, cast

from ..client import EventInput
from ._dead_letter import DeadLetter
from ._encoding import event_from_json
from ._outbox_protocol import OutboxBackend, OutboxRow, SharedOutboxBackend
from ._waiter import Waiter, Waiters

__all__ = [
    "DEAD_LETTER_MEMORY",
    "EventQueue",
    "MemoryQueue",
    "OutboxQueue",
    "QueuedEvent",
    "SharedOutboxQueue",
    "encode_batch",
    "events_of",
    "utf8_size",
]

logger = logging.getLogger("dodo_ingest")

_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_ID_START = len('{"event_id":"')


def _event_id(body: str) -> str:
    """The id an encoded event starts with (its JSON string decoded when it has escapes)."""
    end = body.index('"', _ID_START)
    if "\\" not in body[_ID_START:end]:
        return body[_ID_START:end]
    return str(json.JSONDecoder().raw_decode(body, _ID_START - 1)[0])


DEAD_LETTER_MEMORY = 10_000
"""Dead letters kept in memory without an outbox (the oldest are forgotten first)."""


class QueuedEvent(NamedTuple):
    """One event waiting for the sender."""

    event_id: str
    timestamp: float
    """Unix time of the event (for expiry)."""
    body: str | bytes
    """The event's JSON object, encoded once by ``track()``: text from an outbox, UTF-8 from
    the memory queue (which keeps it so; a batch of those is joined without re-encoding)."""
    seq: int
    """Position in its queue: the outbox's sequence number, or the memory queue's counter."""


_STAMP = struct.Struct("d")
_STAMP_SIZE = _STAMP.size
_pack_stamp = _STAMP.pack
_unpack_stamp = _STAMP.unpack_from
_PACKED_ID_START = _STAMP_SIZE + _ID_START
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _unpack(packed: bytes, seq: int) -> QueuedEvent:
    """The item of an event packed by :meth:`MemoryQueue.put` (its body stays UTF-8)."""
    raw = packed[_PACKED_ID_START : packed.index(_QUOTE, _PACKED_ID_START)]
    body = packed[_STAMP_SIZE:]
    event_id = raw.decode() if _BACKSLASH not in raw else _event_id(body.decode())
    return _new_tuple(QueuedEvent, (event_id, _unpack_stamp(packed)[0], body, seq))


def utf8_size(body: str | bytes) -> int:
    """Bytes of ``body`` in UTF-8 (what :class:`MemoryQueue` counts against its bound)."""
    if isinstance(body, bytes) or body.isascii():
        return len(body)
    return len(body.encode())


def _rows(items: Sequence[QueuedEvent]) -> Sequence[OutboxRow]:
    """Items of an outbox queue as its rows (their bodies are the outbox's text)."""
    return cast("Sequence[OutboxRow]", items)


def encode_batch(items: Sequence[QueuedEvent]) -> bytes:
    """The ``POST /events/ingest`` body for ``items``."""
    bodies = [item.body for item in items]
    if bodies and type(bodies[0]) is bytes:  # the memory queue's, UTF-8 already
        try:
            return b'{"events":[' + b",".join(bodies) + b"]}"  # type: ignore[arg-type]
        except TypeError:  # text among them: encoded below
            pass
    texts = [body if isinstance(body, str) else body.decode() for body in bodies]
    return ('{"events":[' + ",".join(texts) + "]}").encode()


def events_of(items: Sequence[QueuedEvent]) -> list[EventInput]:
    """``items`` rebuilt as events (for ``on_error`` and dead letters)."""
    return [event_from_json(item.body) for item in items]


class EventQueue(Protocol):
    """What the sender needs from a queue."""

    def take(self, limit: int) -> list[QueuedEvent]:
        """The next batch: at most ``limit`` items, oldest first."""

    def settle(self, items: Sequence[QueuedEvent], *, drained: bool) -> None:
        """``items`` are settled: fire the flush waiters that were waiting for them;
        ``drained`` says a short batch was taken (nothing of ours was left behind it)."""

    def add_waiter(self) -> Waiter | None:
        """A waiter for everything queued so far (``None``: it is all settled already)."""

    def cancel(self, waiter: Waiter) -> None:
        """A flush gave up waiting on ``waiter``."""

    def delivered(self, items: Sequence[QueuedEvent]) -> None:
        """Forget acknowledged items."""

    def bury(self, items: Sequence[QueuedEvent], reason: str, status_code: int | None) -> None:
        """Keep ``items`` as dead letters."""

    def backlog(self) -> int:
        """Roughly how many items wait (a hint for batching)."""

    def requeue(self, items: Sequence[QueuedEvent]) -> None:
        """Put back a batch whose delivery failed unexpectedly, at the front."""


class MemoryQueue:
    """A FIFO in memory, bounded by count and by the size of the encoded events.

    Events are kept compactly: one ``bytes`` object each, the timestamp (8 bytes, a C double)
    followed by the body encoded in UTF-8 (which starts with the event's id), appended to one
    deque by one call (a ``track()`` from a signal handler that interrupted another cannot
    come between an event's parts); the :class:`QueuedEvent` items are built when the sender
    takes them (the id read back from the body, the sequence number from the position).
    About 240 bytes per small event, against 280 for a float and a ``str`` side by side and
    460 for a tuple of four objects. Items put back by :meth:`requeue` (a sender failure) wait
    whole in front of the others.

    Producers append under :attr:`lock` (a few hundred nanoseconds), which keeps the deque
    in sequence order and makes the bounds and the close check exact. The lock is re-entrant
    so that ``track()`` from a signal handler that interrupted a ``track()`` cannot deadlock.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.entries: deque[bytes] = deque()
        """One packed event each: timestamp, then UTF-8 body (guarded by :attr:`lock`)."""
        self.head_seq = 1
        """The sequence number of the first event of :attr:`entries` (guarded by :attr:`lock`)."""
        self.requeued: deque[QueuedEvent] = deque()
        """Items put back by the sender, taken before the others (guarded by :attr:`lock`)."""
        self.lock = threading.RLock()
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.bytes = 0
        """UTF-8 bytes of the encoded events queued (guarded by :attr:`lock`)."""
        self.next_seq = 1
        """The sequence number of the next event appended (guarded by :attr:`lock`)."""
        self.settled_through = 0
        """Every event with a sequence number up to this one is settled (sender only)."""
        self.taken_since: float | None = None
        """The oldest timestamp of the events taken and not settled yet (guarded by
        :attr:`lock`)."""
        self.closed = False
        """Set by the final sweep: nothing may be appended any more."""
        self.dead_letters: deque[DeadLetter] = deque(maxlen=DEAD_LETTER_MEMORY)
        self._waiters = Waiters()

    def __len__(self) -> int:
        return len(self.entries) + len(self.requeued)

    def put(self, timestamp: float, body: str) -> int:
        """Append one event (``body`` as :func:`~._encoding.encode_event` made it, starting
        with its id); 1 when appended, 0 when full, -1 when closed (nothing appended)."""
        packed = _pack_stamp(timestamp) + body.encode()
        size = len(packed) - _STAMP_SIZE
        with self.lock:
            if self.closed:
                return -1
            count = len(self.entries) + len(self.requeued)
            if count and (count >= self.max_events or self.bytes + size > self.max_bytes):
                return 0
            self.next_seq += 1
            self.entries.append(packed)  # one call: the whole event or nothing
            self.bytes += size
            return 1

    def oldest_timestamp(self) -> float | None:
        """The timestamp of the oldest event waiting, or taken by the sender and not settled
        yet (``None``: none)."""
        with self.lock:
            stamps = [item.timestamp for item in self.requeued]
            if self.entries:
                stamps.append(_unpack_stamp(self.entries[0])[0])
            if self.taken_since is not None:
                stamps.append(self.taken_since)
            return min(stamps) if stamps else None

    def has_room(self, size: int) -> bool:
        """True when an event of ``size`` bytes (UTF-8) would fit now."""
        count = len(self)
        return not count or (count < self.max_events and self.bytes + size <= self.max_bytes)

    def take(self, limit: int) -> list[QueuedEvent]:
        with self.lock:  # only popping under it: producers wait for the lock meanwhile
            requeued = self.requeued
            batch = [requeued.popleft() for _ in range(min(limit, len(requeued)))]
            size = sum([utf8_size(item.body) for item in batch])
            entries = self.entries
            count = min(limit - len(batch), len(entries))
            seq = self.head_seq
            self.head_seq = seq + count
            popleft = entries.popleft
            packed = [popleft() for _ in range(count)]
            self.bytes -= size + sum(map(len, packed)) - count * _STAMP_SIZE
            # The batch is in neither the queue nor the sender's hands until it is built:
            # its oldest timestamp stays known until it is settled.
            stamps = [item.timestamp for item in batch]
            if packed:
                stamps.append(_unpack_stamp(packed[0])[0])
            if self.taken_since is not None:
                stamps.append(self.taken_since)
            if stamps:
                self.taken_since = min(stamps)
        batch += map(_unpack, packed, range(seq, seq + count))
        return batch

    def settle(self, items: Sequence[QueuedEvent], *, drained: bool) -> None:
        with self.lock:
            self.taken_since = None  # everything taken so far is settled
            low = self.head_seq if self.entries else self.next_seq
            if self.requeued:
                low = min(low, *[item.seq for item in self.requeued])
        if low - 1 > self.settled_through:
            self.settled_through = low - 1
        self._waiters.fire_through(self.settled_through)

    def add_waiter(self) -> Waiter | None:
        target = self.next_seq - 1
        if target <= self.settled_through:
            return None
        waiter = self._waiters.add(target)
        if target <= self.settled_through:  # the sender settled it meanwhile
            self._waiters.fire_through(self.settled_through)
        return waiter

    def cancel(self, waiter: Waiter) -> None:
        self._waiters.cancel(waiter)

    def waiting_flushes(self) -> int:
        """How many distinct flush targets are waited on (for tests and diagnostics)."""
        return len(self._waiters)

    def delivered(self, items: Sequence[QueuedEvent]) -> None:
        pass

    def bury(self, items: Sequence[QueuedEvent], reason: str, status_code: int | None) -> None:
        now = datetime.now(UTC)
        for event in events_of(items):
            self.dead_letters.append(DeadLetter(event, reason, status_code, now))

    def backlog(self) -> int:
        return len(self)

    def requeue(self, items: Sequence[QueuedEvent]) -> None:
        with self.lock:
            self.requeued.extendleft(reversed(items))
            self.bytes += sum([utf8_size(item.body) for item in items])

    def close(self, *, ok: bool = True) -> list[QueuedEvent]:
        """Refuse further appends; remove and return what waits, and fire the waiters (not
        ``ok`` when events are removed here or ``ok`` is False: those events are lost)."""
        with self.lock:
            self.closed = True  # from here a put() appends nothing
            # Taken as whole lists first (one call each), turned into items afterwards.
            requeued = list(self.requeued)
            self.requeued.clear()
            packed = list(self.entries)
            self.entries.clear()
            head, self.head_seq = self.head_seq, self.head_seq + len(packed)
            self.bytes = 0
            self.settled_through = max(self.settled_through, self.next_seq - 1)
        items = requeued + [_unpack(event, head + index) for index, event in enumerate(packed)]
        self._waiters.fire_through(None, ok=ok and not items)
        return items


class OutboxQueue:
    """The events this pipeline owns in an outbox, in order of their sequence number.

    ``track()`` appends through :meth:`append`. A flush waits until every event of ours with a
    sequence number up to the highest in the file at the time of the flush is settled: what
    this pipeline appended, and what it took over from dead processes.
    """

    def __init__(self, outbox: OutboxBackend) -> None:
        self.outbox = outbox
        # Re-entrant: a signal handler's track() may interrupt append() in the same thread.
        self.lock = threading.RLock()
        self.last_seq = 0
        """Highest sequence number appended by this pipeline."""
        self.unsent = 0
        """Appended since the sender last looked (a hint for batching)."""
        self._waiters = Waiters()
        self._last_seq_at_take = 0

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Store one event (committed when this returns); return how many wait unsent."""
        seq = self.outbox.append(event_id, timestamp, body)
        with self.lock:
            if seq > self.last_seq:
                self.last_seq = seq
            self.unsent += 1
            return self.unsent

    def take(self, limit: int) -> list[QueuedEvent]:
        with self.lock:
            self.unsent = 0
        # Read before the batch: a short batch settles what was in the file at this moment,
        # not what was appended while it was being sent.
        self._last_seq_at_take = self.outbox.last_seq()
        return [QueuedEvent._make(row) for row in self.outbox.fetch(limit)]

    def settle(self, items: Sequence[QueuedEvent], *, drained: bool) -> None:
        # Rows come in sequence order, so once a batch settles, everything of ours up to its
        # last row is settled; a short read means nothing else of ours was pending up to the
        # highest sequence number in the file when the batch was taken.
        if drained:
            # The batch may hold events appended after last_seq() was read: they count too.
            last = max(self._last_seq_at_take, items[-1].seq if items else 0)
            self._waiters.fire_through(last)
        elif items:
            self._waiters.fire_through(items[-1].seq)

    def add_waiter(self) -> Waiter | None:
        """Wait for every event pending in the file now that this pipeline owns or takes over."""
        return self._waiters.add(self.outbox.last_seq())

    def cancel(self, waiter: Waiter) -> None:
        self._waiters.cancel(waiter)

    def waiting_flushes(self) -> int:
        """How many distinct flush targets are waited on (for tests and diagnostics)."""
        return len(self._waiters)

    def delivered(self, items: Sequence[QueuedEvent]) -> None:
        self.outbox.delete(_rows(items))

    def bury(self, items: Sequence[QueuedEvent], reason: str, status_code: int | None) -> None:
        self.outbox.bury(_rows(items), reason, status_code)

    def backlog(self) -> int:
        return self.unsent

    def requeue(self, items: Sequence[QueuedEvent]) -> None:
        pass  # the rows are still in the file and are read again


class SharedOutboxQueue:
    """A shared outbox (:class:`SharedOutboxBackend`) as one member of a fleet sees it.

    ``track()`` appends through :meth:`append`. With ``deliver``, the sender takes batches
    for this consumer of the group; without, it only writes what waits in the spill. A flush
    waits until the store holds every event tracked before it and, with ``deliver``, until
    every entry up to the newest of them is settled, by whichever consumer (so events of
    other producers that came before count too).
    """

    def __init__(self, outbox: SharedOutboxBackend, *, deliver: bool) -> None:
        self.outbox = outbox
        self.deliver = deliver
        self.lock = threading.RLock()
        self.unsent = 0
        """Appended since the sender last looked (a hint for batching)."""
        self.fetched = 1 << 30 if deliver else 0
        """Entries the last fetch returned (a full batch means more wait; a consumer reads
        at once when it starts)."""
        self._waiters = Waiters()
        """Keyed by stream position: fired once the group settled everything up to it."""
        self._unstored: list[Waiter] = []
        """Waiting until the spill is written (the positions are not known before)."""
        self._staged: list[tuple[int, Waiter]] = []
        self._failing = False

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Store one event (in the store, or in the spill when it is unreachable); return
        how many wait unsent."""
        self.outbox.append(event_id, timestamp, body)
        with self.lock:
            self.unsent += 1
            return self.unsent

    def take(self, limit: int) -> list[QueuedEvent]:
        with self.lock:
            self.unsent = 0
        try:
            self.outbox.push_spill()
            rows = self.outbox.fetch(limit) if self.deliver else []
        except Exception as error:  # the store is unreachable: tried again next time
            self.fetched = 0
            if not self._failing:
                self._failing = True
                logger.error("the shared outbox cannot be read (%s); trying again", error)
            return []
        if self._failing:
            self._failing = False
            logger.warning("the shared outbox can be read again")
        self.fetched = len(rows)
        return [QueuedEvent._make(row) for row in rows]

    def settle(self, items: Sequence[QueuedEvent], *, drained: bool) -> None:
        if self._unstored and self.outbox.spilled() == 0:
            with self.lock:
                stored, self._unstored = self._unstored, []
            target = self.outbox.last_position()
            for waiter in stored:
                if self.deliver and target:
                    self._staged.append((target, waiter))
                else:
                    waiter.fire()
        if not self.deliver or not (self._staged or len(self._waiters)):
            return
        try:
            settled = self.outbox.settled_position()
        except Exception:
            logger.debug("could not read how far the group has settled", exc_info=True)
            return
        self._waiters.fire_through(settled)
        with self.lock:
            ready = [waiter for target, waiter in self._staged if target <= settled]
            self._staged = [(t, w) for t, w in self._staged if t > settled]
        for waiter in ready:
            waiter.fire()

    def add_waiter(self) -> Waiter | None:
        with self.lock:
            if self.outbox.spilled():
                waiter = Waiter(0)
                self._unstored.append(waiter)
                return waiter
        target = self.outbox.last_position()
        if not self.deliver or not target:
            return None
        return self._waiters.add(target)

    def cancel(self, waiter: Waiter) -> None:
        with self.lock:
            if waiter in self._unstored:
                self._unstored.remove(waiter)
                return
            staged = [(t, w) for t, w in self._staged if w is not waiter]
            if len(staged) != len(self._staged):
                self._staged = staged
                return
        self._waiters.cancel(waiter)

    def delivered(self, items: Sequence[QueuedEvent]) -> None:
        self.outbox.delete(_rows(items))

    def bury(self, items: Sequence[QueuedEvent], reason: str, status_code: int | None) -> None:
        self.outbox.bury(_rows(items), reason, status_code)

    def backlog(self) -> int:
        return max(self.unsent, self.fetched)

    def requeue(self, items: Sequence[QueuedEvent]) -> None:
        self.outbox.reread()

    def close(self) -> list[QueuedEvent]:
        """Give up on what never reached the store and return it; fire the waiters left (not
        ``ok``: what they wait for was not seen settled)."""
        items = [QueuedEvent._make(row) for row in self.outbox.take_spill()]
        with self.lock:
            waiting = self._unstored + [waiter for _, waiter in self._staged]
            self._unstored, self._staged = [], []
        for waiter in waiting:
            waiter.fire(ok=False)
        self._waiters.fire_through(None, ok=False)
        return items
