"""``RedisOutbox``: a durable outbox on a Redis stream, shared by many producers and relays.

Producers ``XADD`` each event to the stream; consumers of one consumer group (relays, or
``Ingestion(outbox=url)`` processes) read batches with ``XREADGROUP``, deliver them with the
same policy as the in-process pipeline, and remove an entry (``XACK`` + ``XDEL``, one
transaction) only after the API acknowledged it. Dead letters live in a second stream,
``<stream>:dead``, with their reason. Entries held by a consumer that died are claimed by
another one (``XAUTOCLAIM``) after ``claim_idle`` seconds and sent again with the same ids.

When Redis cannot be reached, ``track()`` waits at most ``timeout`` seconds once, then keeps
events in a bounded in-memory *spill* (in order) that the sender thread writes to the stream
when Redis answers again. See ``docs/fleet.md``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..client import ConfigurationError, EventInput
from ._dead_letter import DeadLetter
from ._outbox_protocol import OutboxRow

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_STREAM",
    "ConsumerStatus",
    "OutboxFullError",
    "RedisOutbox",
    "StreamStatus",
]

logger = logging.getLogger("dodo_ingest")

DEFAULT_STREAM = "dodo-usage"
DEFAULT_GROUP = "dodo-relays"
_CHUNK = 500
"""Entries per pipelined round trip when many are written, acknowledged or claimed at once."""
_RELEASED_IDLE_MS = 10**12
"""Idle time given to entries a consumer releases, so that any consumer may claim them at once."""

_APPEND = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'i', ARGV[2], 't', ARGV[3], 'b', ARGV[4])
"""
"""Append one event unless the stream holds ``maxlen`` entries (never trims: an entry leaves the
stream only once it is acknowledged or dead-lettered)."""


class OutboxFullError(Exception):
    """The stream holds ``maxlen`` unsettled entries (the relays are behind): event dropped."""

    drop_reason = "outbox_full"


class _SpillFullError(Exception):
    """Redis is unreachable and the in-memory spill is full: event dropped."""

    drop_reason = "outbox_error"


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer of the group: entries it holds (read, not settled) and how long it has
    been idle, in seconds."""

    name: str
    pending: int
    idle: float


@dataclass(frozen=True)
class StreamStatus:
    """The state of a Redis outbox at one moment (``dodo-ingest outbox status``).

    - ``pending``: entries in the stream not settled yet (waiting or held by a consumer).
    - ``in_flight``: of those, entries read by a consumer and not settled yet.
    - ``lag``: entries no consumer has read yet (``None`` when Redis cannot tell).
    - ``dead_letters``: events given up on, kept with their reason.
    - ``oldest_age``: seconds since the oldest unsettled entry was added (``None``: none).
    """

    stream: str
    group: str
    pending: int
    in_flight: int
    lag: int | None
    dead_letters: int
    oldest_age: float | None
    consumers: tuple[ConsumerStatus, ...]


_UNSENT = object()


class _Append:
    """One event a ``track()`` waits to see written (by itself or by the leading thread)."""

    __slots__ = ("done", "reply", "row", "thread")

    def __init__(self, row: OutboxRow) -> None:
        self.row = row
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.reply: Any = _UNSENT


def _position(entry_id: bytes | str) -> int:
    """A stream entry id (``"<ms>-<seq>"``) as an int that sorts like the ids."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return (int(ms) << 64) | int(seq or 0)


def _entry_id(position: int) -> str:
    return f"{position >> 64}-{position & 0xFFFFFFFFFFFFFFFF}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: dict[Any, Any], name: str) -> Any:
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """The connection URL without our parameters, and our parameters."""
    parts = urlsplit(url)
    ours = {"stream", "group", "maxlen", "consumer", "claim_idle"}
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = {key: value for key, value in query if key in ours}
    rest = urlencode([(key, value) for key, value in query if key not in ours])
    return urlunsplit(parts._replace(query=rest)), params


def _redacted(url: str) -> str:
    """``url`` without its password (for messages and ``repr``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class RedisOutbox:
    """A durable outbox on a Redis stream: many producers, a consumer group of relays.

    ``url_or_client`` is a ``redis://`` (``rediss://``, ``unix://``) URL, whose query may
    also name ``stream``, ``group``, ``maxlen``, ``consumer`` and ``claim_idle``, or a
    ``redis.Redis`` client (its own timeouts and retries then apply; ``decode_responses``
    may be either). Arguments given here win over the URL's.

    - ``stream``: the stream key (default ``dodo-usage``); dead letters go to
      ``<stream>:dead``. On Redis Cluster, put a hash tag in the name (``{dodo}-usage``) so
      that both keys live in one slot.
    - ``group``: the consumer group of the relays (default ``dodo-relays``), created at the
      start of the stream when missing, so that no entry is skipped.
    - ``maxlen``: most unsettled entries the stream may hold (default 1,000,000); beyond it
      ``track()`` drops the event and counts it (``outbox_full``). Nothing is ever trimmed.
    - ``consumer``: this process's name in the group (default: host, pid and a random part).
    - ``claim_idle``: seconds an entry may stay held by a silent consumer before another
      one claims it (default 60; it must exceed the request ``timeout``: a consumer shows
      it is alive every ``claim_idle / 3`` seconds, at most every 10 seconds).
    - ``timeout``: connect and read timeout in seconds of a client built from a URL (default
      0.5): the longest ``track()`` waits on a Redis that does not answer.
    - ``spill_size``: events kept in memory while Redis is unreachable (default 100,000);
      beyond it they are dropped and counted (``outbox_error``).

    Pass it (or its URL) as ``Ingestion(outbox=...)``; ``deliver=False`` makes a producer
    that only writes to the stream.
    """

    def __init__(
        self,
        url_or_client: str | redis.Redis,
        *,
        stream: str | None = None,
        group: str | None = None,
        maxlen: int | None = None,
        consumer: str | None = None,
        claim_idle: float | None = None,
        timeout: float = 0.5,
        spill_size: int = 100_000,
    ) -> None:
        params: dict[str, str] = {}
        if isinstance(url_or_client, str):
            url, params = _split_url(url_or_client)
            self._url: str | None = url
            self.where = _redacted(url)
            _check_positive("timeout", timeout)
            self._timeout = float(timeout)
            try:
                self._client: Any = self._connect()  # Any: redis-py's replies are untyped unions
            except ValueError as error:
                raise ConfigurationError(f"invalid Redis URL {self.where!r}: {error}") from None
            self._owns_client = True
        elif isinstance(url_or_client, redis.Redis):
            self._url = None
            self._timeout = float(timeout)
            self._client = url_or_client
            kwargs = url_or_client.connection_pool.connection_kwargs
            self.where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._owns_client = False
        else:
            raise ConfigurationError(
                "RedisOutbox needs a redis:// URL or a redis.Redis client, got "
                f"{type(url_or_client).__name__}"
            )
        self.stream = stream or params.get("stream") or DEFAULT_STREAM
        self.group = group or params.get("group") or DEFAULT_GROUP
        self.dead_stream = f"{self.stream}:dead"
        self.maxlen = _int_setting("maxlen", maxlen, params.get("maxlen"), 1_000_000)
        self.spill_size = _int_setting("spill_size", spill_size, None, 100_000)
        self.claim_idle = _float_setting("claim_idle", claim_idle, params.get("claim_idle"), 60.0)
        self._given_consumer = consumer or params.get("consumer")
        self.consumer = self._given_consumer or _consumer_name()
        self.heartbeat_interval = min(10.0, self.claim_idle / 3)
        self._append_script = self._client.register_script(_APPEND)
        self._user: object | None = None
        self._closed = False
        self._reset()

    def _connect(self) -> redis.Redis:
        assert self._url is not None
        return redis.Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # bounded: a failed call is spilled, not retried here
            health_check_interval=0,
        )

    def _reset(self) -> None:
        """Fresh per-process state (at construction, and in a forked child)."""
        self._lock = threading.RLock()
        """Guards the spill and the counters below."""
        self._group_lock = threading.Lock()
        self._local = threading.local()
        self._waiting: list[_Append] = []
        """Events waiting for the next pipelined write (guarded by ``_group_lock``)."""
        self._leader: int | None = None
        """The thread writing for the others now, if any."""
        self._spill: deque[OutboxRow] = deque()
        self._spill_failing = False
        self._appended = itertools.count(1)
        self._last_seq = 0
        self._last_position = 0
        """Position of the newest entry this process wrote to the stream."""
        self._held: dict[int, None] = {}
        """Positions this consumer read and has not settled (sender thread)."""
        self._unsettled_acks: list[int] = []
        """Positions acknowledged by the API whose ``XACK`` failed: retried, never re-sent."""
        self._unsettled_burials: list[tuple[list[OutboxRow], dict[str, str]]] = []
        self._claim_cursor = "0-0"
        self._claim_more = False
        self._reread = True
        """Read this consumer's own pending entries before new ones (after a start, a claim
        or a failure)."""
        self.received = 0
        """Entries this consumer read from the stream for the first time, or claimed."""
        self.claimed = 0
        """Entries claimed from consumers that went silent."""
        self.spilled_total = 0
        """Events kept in memory because Redis could not be reached."""

    # --- OutboxBackend: ownership --------------------------------------------------------------

    def claim(self, user: object) -> None:
        """Internal: become the outbox of one ``Ingestion``."""
        with self._lock:
            if self._user is not None and self._user is not user:
                raise ConfigurationError(
                    "this RedisOutbox is already used by another open Ingestion"
                )
            self._user = user

    def register(self) -> None:
        """Internal: create the consumer group (at the start of the stream) when missing, and
        warn when Redis may evict the stream to free memory."""
        try:
            self._ensure_group()
        except redis.RedisError as error:  # tried again when reading
            logger.warning("Redis outbox %s: could not create the group (%s)", self.where, error)
            return
        try:
            policy = self._client.config_get("maxmemory-policy").get("maxmemory-policy")
        except redis.RedisError:  # CONFIG is often disabled on managed Redis
            return
        if policy is not None and _text(policy).startswith("allkeys"):
            logger.warning(
                "Redis outbox %s: maxmemory-policy is %s, so Redis may evict the stream and "
                "lose usage under memory pressure; use noeviction (or a volatile-* policy)",
                self.where,
                _text(policy),
            )

    def _ensure_group(self) -> None:
        try:
            self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def heartbeat(self) -> None:
        """Internal (sender): reset the idle time of the entries this consumer holds, so that
        no other consumer claims them while a delivery is retried."""
        if not self._held:
            return
        mine = self._client.xpending_range(
            self.stream, self.group, "-", "+", len(self._held), consumername=self.consumer
        )
        ids = [entry["message_id"] for entry in mine]
        if ids:
            self._client.xclaim(self.stream, self.group, self.consumer, 0, ids, justid=True)

    def reclaim(self) -> int:
        """Internal (sender): claim up to a batch (1000) of the entries other consumers held
        for ``claim_idle`` seconds or more; return how many. When more may wait, the next
        call comes at the sender's next turn (:attr:`reclaim_interval` is 0 until then), so
        a consumer never holds more than it is about to send."""
        idle_ms = int(self.claim_idle * 1000)
        try:
            reply = self._client.xautoclaim(
                self.stream, self.group, self.consumer, idle_ms, self._claim_cursor, count=1000
            )
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._ensure_group()
            return 0
        cursor, claimed = _text(reply[0]), len(reply[1])
        self._claim_cursor = "0-0" if cursor == "0-0" else cursor
        self._claim_more = cursor != "0-0"
        if claimed:
            self._reread = True
            with self._lock:
                self.claimed += claimed
                self.received += claimed
        return claimed

    @property
    def reclaim_interval(self) -> float:
        """Internal: seconds until the sender should call :meth:`reclaim` again."""
        return 0.0 if self._claim_more else min(30.0, self.claim_idle / 2)

    def release(self) -> None:
        """Internal: let other consumers claim what this one still holds at once, and leave
        the group when it holds nothing."""
        try:
            mine = self._client.xpending_range(
                self.stream, self.group, "-", "+", 10_000, consumername=self.consumer
            )
            ids = [entry["message_id"] for entry in mine]
            for start in range(0, len(ids), _CHUNK):
                self._client.xclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    0,
                    ids[start : start + _CHUNK],
                    idle=_RELEASED_IDLE_MS,
                    justid=True,
                )
            if not ids and not self._unsettled_acks and not self._unsettled_burials:
                self._client.xgroup_delconsumer(self.stream, self.group, self.consumer)
        except redis.RedisError as error:
            logger.debug("Redis outbox: release failed (%s)", error)
        self._held.clear()
        with self._lock:
            self._user = None

    def close_sender(self) -> None:
        """Internal: nothing to release per thread (the client is thread-safe)."""

    def after_fork_in_child(self) -> None:
        """Internal: start over in a forked child as a new consumer with its own connections."""
        if self._owns_client:
            self._client = self._connect()
            self._append_script = self._client.register_script(_APPEND)
        given = self._given_consumer
        self.consumer = f"{given}-{os.getpid()}" if given else _consumer_name()
        self._user = None
        self._reset()

    # --- producer side -------------------------------------------------------------------------

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Internal: write one event to the stream and return its sequence number in this
        process. While Redis cannot be reached the event waits in the spill.

        One round trip: events tracked at the same time by other threads go in the same
        one (pipelined). Raises :class:`OutboxFullError` when the stream holds ``maxlen``
        entries, and an error when the spill is full too (the pipeline counts the event as
        dropped).
        """
        seq = next(self._appended)
        row: OutboxRow = (event_id, timestamp, body, seq)
        if self._spill:  # Redis failed: keep the order until the sender wrote the spill
            self._spill_one(row, None)
            return seq
        local = self._local
        if getattr(local, "busy", False):  # a signal handler interrupted our own append
            self._spill_one(row, None)  # written by the sender soon after
            return seq
        local.busy = True
        try:
            me = _Append(row)
            with self._group_lock:
                leader = self._leader
                self._waiting.append(me)
                if leader is None:
                    self._leader = me.thread
            if leader is not None:
                me.done.wait()  # a leader writes ours (bounded by its socket timeout) ...
            if me.reply is _UNSENT:
                self._lead()  # ... or made us the next leader
            return self._outcome(me)
        finally:
            local.busy = False

    def _lead(self) -> None:
        """Write every event waiting now in one round trip; hand over to the next waiter."""
        with self._group_lock:
            batch, self._waiting = self._waiting, []
        try:
            self._write(batch)
        finally:
            with self._group_lock:
                following = self._waiting[0] if self._waiting else None
                self._leader = None if following is None else following.thread
            for waiting in batch:
                waiting.done.set()
            if following is not None:
                following.done.set()

    def _write(self, batch: list[_Append]) -> None:
        replies: list[Any]
        try:
            if len(batch) == 1:
                event_id, timestamp, body, _ = batch[0].row
                replies = [
                    self._append_script(
                        keys=[self.stream], args=[self.maxlen, event_id, repr(timestamp), body]
                    )
                ]
            else:
                pipe = self._client.pipeline(transaction=False)
                for waiting in batch:
                    event_id, timestamp, body, _ = waiting.row
                    self._append_script(
                        keys=[self.stream],
                        args=[self.maxlen, event_id, repr(timestamp), body],
                        client=pipe,
                    )
                replies = pipe.execute(raise_on_error=False)
        except Exception as error:
            replies = [error] * len(batch)
        for waiting, reply in zip(batch, replies, strict=True):
            waiting.reply = reply

    def _outcome(self, me: _Append) -> int:
        reply = me.reply
        seq = me.row[3]
        if isinstance(reply, BaseException):
            if not isinstance(reply, redis.RedisError) or (
                isinstance(reply, redis.ResponseError) and not _transient(reply)
            ):
                raise reply
            self._spill_one(me.row, reply)  # unreachable, timed out, out of memory...
            return seq
        if reply is None:
            raise OutboxFullError(
                f"the stream {self.stream!r} holds maxlen={self.maxlen} unsettled entries"
            )
        position = _position(reply)
        with self._lock:
            if position > self._last_position:
                self._last_position = position
            if seq > self._last_seq:
                self._last_seq = seq
        return seq

    def _spill_one(self, row: OutboxRow, error: BaseException | None) -> None:
        with self._lock:
            if len(self._spill) >= self.spill_size:
                raise _SpillFullError(
                    f"Redis at {self.where} is unreachable and {self.spill_size} events wait "
                    "in memory already"
                )
            if not self._spill_failing:
                self._spill_failing = True
                logger.error(
                    "Redis outbox %s unreachable (%s); events wait in memory (at most %d)",
                    self.where,
                    error,
                    self.spill_size,
                )
            self._spill.append(row)
            self.spilled_total += 1
            if row[3] > self._last_seq:
                self._last_seq = row[3]

    def spilled(self) -> int:
        """Events waiting in memory for Redis."""
        return len(self._spill)

    def push_spill(self) -> bool:
        """Internal (sender): write the spilled events to the stream, oldest first; True when
        none is left. Producers keep spilling meanwhile, so the order of events holds."""
        while self._spill:
            chunk = list(itertools.islice(self._spill, _CHUNK))
            pipe = self._client.pipeline(transaction=False)
            for event_id, timestamp, body, _ in chunk:
                self._append_script(
                    keys=[self.stream],
                    args=[self.maxlen, event_id, repr(timestamp), body],
                    client=pipe,
                )
            try:
                replies = pipe.execute()
            except redis.RedisError as error:
                logger.debug("Redis outbox: spill not written yet (%s)", error)
                return False
            stored = 0
            for reply in replies:
                if reply is None:  # the stream is full: keep the rest for later
                    break
                stored += 1
                position = _position(reply)
                if position > self._last_position:
                    self._last_position = position
            with self._lock:
                for row in chunk[:stored]:
                    if self._spill and self._spill[0] is row:
                        self._spill.popleft()
                if not self._spill and self._spill_failing:
                    self._spill_failing = False
                    logger.warning("Redis outbox %s: events are stored again", self.where)
            if stored < len(chunk):
                return False
        return True

    def take_spill(self) -> list[OutboxRow]:
        """Internal: remove and return the events that never reached Redis (at close)."""
        with self._lock:
            rows = list(self._spill)
            self._spill.clear()
            return rows

    def last_seq(self) -> int:
        """Internal: the sequence number of the last event appended in this process."""
        return self._last_seq

    def last_position(self) -> int:
        """Internal: the position of the newest entry this process wrote to the stream."""
        return self._last_position

    def has_other_pending(self) -> bool:
        """Internal: True when the stream holds unsettled entries."""
        try:
            return int(self._client.xlen(self.stream)) > 0
        except redis.RedisError:
            return False

    # --- consumer side (sender thread) ----------------------------------------------------------

    def fetch(self, limit: int) -> list[OutboxRow]:
        """Internal (sender): up to ``limit`` entries for this consumer: those it holds
        already (after a claim or a failure) first, then new ones."""
        self._retry_settlements()  # raises while Redis fails: nothing is read twice
        rows: list[OutboxRow] = []
        if self._reread:
            entries = self._read("0", limit)
            if len(entries) < limit:
                self._reread = False
            self._collect(entries, rows)
        if len(rows) < limit:
            entries = self._read(">", limit - len(rows))
            with self._lock:
                self.received += len(entries)
            self._collect(entries, rows)
        return rows

    def _collect(self, entries: list[tuple[Any, Any]], rows: list[OutboxRow]) -> None:
        gone = []
        for entry_id, fields in entries:
            if not fields:  # deleted while held (settled by another consumer meanwhile)
                gone.append(entry_id)
                continue
            position = _position(entry_id)
            rows.append(
                (
                    _text(_field(fields, "i")),
                    float(_field(fields, "t")),
                    _text(_field(fields, "b")),
                    position,
                )
            )
            self._held[position] = None
        if gone:
            self._client.xack(self.stream, self.group, *gone)

    def _read(self, start: str, count: int) -> list[tuple[Any, Any]]:
        try:
            reply = self._client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count
            )
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            self._ensure_group()  # the stream was deleted, or Redis lost it: start over
            reply = self._client.xreadgroup(
                self.group, self.consumer, {self.stream: start}, count=count
            )
        if not reply:
            return []
        entries: list[tuple[Any, Any]] = reply[0][1]
        return entries

    def delete(self, rows: Sequence[OutboxRow]) -> None:
        """Internal (sender): remove entries the API acknowledged (``XACK`` + ``XDEL``, one
        transaction). When Redis fails, they are remembered, never sent again by this
        consumer, and removed later."""
        if not rows:
            return
        positions = [row[3] for row in rows]
        for position in positions:
            self._held.pop(position, None)
        try:
            self._settle(positions, None)
        except redis.RedisError as error:
            logger.warning("Redis outbox: acknowledgement not stored yet (%s)", error)
            self._unsettled_acks.extend(positions)
            self._reread = True

    def bury(self, rows: Sequence[OutboxRow], reason: str, status_code: int | None) -> None:
        """Internal (sender): move entries to the dead-letter stream with the reason (kept in
        memory and moved later when Redis fails)."""
        if not rows:
            return
        burial = {
            "r": reason,
            "s": "" if status_code is None else str(status_code),
            "f": repr(time.time()),
            "c": self.consumer,
        }
        for row in rows:
            self._held.pop(row[3], None)
        try:
            self._settle([row[3] for row in rows], (list(rows), burial))
        except redis.RedisError as error:
            logger.warning("Redis outbox: dead letters not stored yet (%s)", error)
            self._unsettled_burials.append((list(rows), burial))
            self._unsettled_acks.extend(row[3] for row in rows)
            self._reread = True

    def _settle(
        self, positions: list[int], burial: tuple[list[OutboxRow], dict[str, str]] | None
    ) -> None:
        pipe = self._client.pipeline(transaction=True)
        if burial is not None:
            rows, fields = burial
            for event_id, timestamp, body, _ in rows:
                pipe.xadd(
                    self.dead_stream, {"i": event_id, "t": repr(timestamp), "b": body, **fields}
                )
        for start in range(0, len(positions), _CHUNK):
            ids = [_entry_id(position) for position in positions[start : start + _CHUNK]]
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
        pipe.execute()

    def _retry_settlements(self) -> None:
        """Store the acknowledgements and burials that failed earlier (raise while Redis is
        still failing)."""
        while self._unsettled_burials:
            rows, fields = self._unsettled_burials[0]
            self._settle([row[3] for row in rows], (rows, fields))
            self._unsettled_burials.pop(0)
            buried = {row[3] for row in rows}
            self._unsettled_acks = [p for p in self._unsettled_acks if p not in buried]
        if self._unsettled_acks:
            self._settle(self._unsettled_acks, None)
            self._unsettled_acks = []

    def reread(self) -> None:
        """Internal (sender): read the entries this consumer holds again on the next fetch
        (a delivery stopped on an unexpected error)."""
        self._held.clear()
        self._reread = True

    def settled_position(self) -> int:
        """Internal: a position up to which every entry of the stream is settled, by any
        consumer of the group (read from the group's delivered id and pending list)."""
        pipe = self._client.pipeline(transaction=False)
        pipe.xinfo_groups(self.stream)
        pipe.xpending(self.stream, self.group)
        try:
            groups, pending = pipe.execute()
        except redis.ResponseError:
            return 0  # no stream or no group yet
        delivered = 0
        for info in groups:
            if _text(info["name"]) == self.group:
                delivered = _position(info["last-delivered-id"])
        if pending and pending.get("pending"):
            return min(delivered, _position(pending["min"]) - 1)
        return delivered

    # --- inspection and repair ------------------------------------------------------------------

    def count_pending(self) -> int:
        """Unsettled entries in the stream (waiting, or held by a consumer)."""
        return int(self._client.xlen(self.stream))

    def count_dead_letters(self) -> int:
        """Events given up on, kept in ``<stream>:dead``."""
        return int(self._client.xlen(self.dead_stream))

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (at most ``limit``)."""
        entries = self._client.xrange(self.dead_stream, count=limit)
        letters = []
        for _, fields in entries or []:
            status = _text(_field(fields, "s"))
            letters.append(
                DeadLetter(
                    EventInput._restore(json.loads(_text(_field(fields, "b")))),
                    _text(_field(fields, "r")),
                    int(status) if status else None,
                    datetime.fromtimestamp(float(_field(fields, "f")), UTC),
                )
            )
        return letters

    def retry_dead_letters(self, event_ids: Iterable[str] | None = None) -> int:
        """Put dead letters (all, or those with the given event ids) back in the stream, each
        move one transaction; return how many."""
        wanted = None if event_ids is None else set(event_ids)
        moved = 0
        start: str = "-"
        while True:
            entries = self._client.xrange(self.dead_stream, min=start, count=_CHUNK)
            if not entries:
                return moved
            pipe = self._client.pipeline(transaction=True)
            chosen = 0
            for entry_id, fields in entries:
                if wanted is not None and _text(_field(fields, "i")) not in wanted:
                    continue
                pipe.xadd(
                    self.stream,
                    {name: _field(fields, name) for name in ("i", "t", "b")},
                )
                pipe.xdel(self.dead_stream, entry_id)
                chosen += 1
            if chosen:
                replies = pipe.execute()
                for reply in replies[::2]:
                    position = _position(reply)
                    if position > self._last_position:
                        self._last_position = position
                moved += chosen
            last = _position(entries[-1][0])
            start = "(" + _entry_id(last)
            if len(entries) < _CHUNK:
                return moved

    def status(self) -> StreamStatus:
        """The stream's state now: pending, in flight per consumer, lag, dead letters, age."""
        pipe = self._client.pipeline(transaction=False)
        pipe.xlen(self.stream)
        pipe.xlen(self.dead_stream)
        pipe.xinfo_groups(self.stream)
        pipe.xinfo_consumers(self.stream, self.group)
        pipe.xrange(self.stream, count=1)
        pipe.time()
        replies = pipe.execute(raise_on_error=False)
        length, dead, groups, consumers, first, now = replies
        if isinstance(length, Exception) or isinstance(dead, Exception):
            raise length if isinstance(length, Exception) else dead
        group = None
        if not isinstance(groups, Exception):
            group = next((g for g in groups if _text(g["name"]) == self.group), None)
        members: tuple[ConsumerStatus, ...] = ()
        if not isinstance(consumers, Exception):
            members = tuple(
                ConsumerStatus(_text(c["name"]), int(c["pending"]), int(c["idle"]) / 1000)
                for c in consumers
            )
        oldest = None
        if first and not isinstance(first, Exception) and not isinstance(now, Exception):
            now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
            oldest = max(0.0, (now_ms - (_position(first[0][0]) >> 64)) / 1000)
        lag = None
        if group is not None and group.get("lag") is not None:
            lag = int(group["lag"])
        return StreamStatus(
            stream=self.stream,
            group=self.group,
            pending=int(length),
            in_flight=int(group["pending"]) if group is not None else 0,
            lag=lag,
            dead_letters=int(dead),
            oldest_age=oldest,
            consumers=members,
        )

    def close(self) -> None:
        """Close the connections of a client built from a URL (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            try:
                self._client.close()
            except redis.RedisError:
                logger.debug("closing the Redis connections failed", exc_info=True)

    def __enter__(self) -> RedisOutbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RedisOutbox({self.where!r}, stream={self.stream!r}, group={self.group!r}, "
            f"consumer={self.consumer!r})"
        )


def _transient(error: redis.ResponseError) -> bool:
    """True for refusals that pass: out of memory, read-only replica, failover, loading."""
    if isinstance(error, redis.exceptions.ReadOnlyError):
        return True
    return str(error).split(" ", 1)[0] in {
        "OOM",
        "LOADING",
        "MASTERDOWN",
        "TRYAGAIN",
        "CLUSTERDOWN",
    }


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
    if value == float("inf"):
        raise ConfigurationError(f"{name} must be finite, got {value!r}")


def _int_setting(name: str, given: int | None, in_url: str | None, default: int) -> int:
    value: object = given
    if value is None and in_url is not None:
        try:
            value = int(in_url)
        except ValueError:
            raise ConfigurationError(f"{name} in the URL must be an int, got {in_url!r}") from None
    if value is None:
        return default
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _float_setting(name: str, given: float | None, in_url: str | None, default: float) -> float:
    value: object = given
    if value is None and in_url is not None:
        try:
            value = float(in_url)
        except ValueError:
            raise ConfigurationError(
                f"{name} in the URL must be a number, got {in_url!r}"
            ) from None
    if value is None:
        return default
    _check_positive(name, value)
    return float(value)  # type: ignore[arg-type]
