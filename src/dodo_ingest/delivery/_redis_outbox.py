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

import contextlib
import itertools
import json
import logging
import math
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

from .._redis import client_from_url, redacted
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
_PRUNE_INTERVAL = 600.0
"""Least seconds between two looks for consumers that are gone."""
_GONE_AFTER = 3600.0
"""Seconds of silence after which a consumer that holds nothing is removed from the group."""
_RELEASED_IDLE_MS = 10**12
"""Idle time given to entries a consumer releases, so that any consumer may claim them at once."""

_APPEND = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', 'i', ARGV[2], 't', ARGV[3], 'b', ARGV[4])
"""
"""Append one event unless the stream holds ``maxlen`` entries (never trims: an entry leaves the
stream only once it is acknowledged or dead-lettered)."""


_BURY = """
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'none' and kind ~= 'stream' then
  return redis.error_reply('WRONGTYPE the dead-letter key ' .. KEYS[2] .. ' holds a ' .. kind)
end
for n = 6, #ARGV, 4 do
  redis.call('XADD', KEYS[2], '*', 'i', ARGV[n + 1], 't', ARGV[n + 2], 'b', ARGV[n + 3],
             'r', ARGV[2], 's', ARGV[3], 'f', ARGV[4], 'c', ARGV[5])
  redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[n])
  redis.call('XDEL', KEYS[1], ARGV[n])
end
return 1
"""
"""Move entries to the dead-letter stream: each is written there before it leaves the stream,
and nothing leaves when the dead-letter key cannot take it."""


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
_INTERRUPTED = object()
"""The write of this event's batch was interrupted (an exception in the writing thread)."""


class _Append:
    """One event a ``track()`` waits to see written (by itself or by the leading thread)."""

    __slots__ = ("done", "lead", "reply", "row", "thread")

    def __init__(self, row: OutboxRow) -> None:
        self.row = row
        self.thread = threading.get_ident()
        self.done = threading.Event()
        self.lead = False
        """This thread writes the next batch (set under the group lock)."""
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


def _row(fields: dict[Any, Any], position: int, *, body_checked: bool) -> tuple[OutboxRow, str]:
    """The entry as a row, and what is wrong with it ("" when nothing): a relay sends only
    entries whose body is one JSON object carrying the entry's event id, so that a foreign
    or broken writer can neither stop a relay nor change a batch around its entry. With
    ``body_checked`` the body was checked already (with the rest of its batch)."""
    raw_id, raw_time, raw_body = _field(fields, "i"), _field(fields, "t"), _field(fields, "b")
    event_id = "" if raw_id is None else _text(raw_id)
    body = "" if raw_body is None else _text(raw_body)
    try:
        timestamp = float(_text(raw_time))
    except (TypeError, ValueError):
        timestamp = float("nan")
    row = (event_id, timestamp if math.isfinite(timestamp) else 0.0, body, position)
    if not event_id:
        return row, "no event id"
    if not math.isfinite(timestamp):
        return row, f"no valid timestamp ({raw_time!r})"
    if body_checked:
        return row, ""
    try:
        event = json.loads(body)
    except ValueError:
        return row, "the body is not JSON"
    if not isinstance(event, dict) or event.get("event_id") != event_id:
        return row, "the body is not an event object with the entry's event id"
    return row, ""


def _bodies_match(entries: list[tuple[Any, Any]]) -> bool:
    """True when the bodies of ``entries``, joined as a request joins them, are exactly one
    JSON object per entry carrying its event id (one parse for the whole batch; the request
    the API reads is that same text)."""
    bodies, ids = [], []
    for _, fields in entries:
        raw_id, raw_body = _field(fields, "i"), _field(fields, "b")
        if raw_id is None or raw_body is None:
            return False
        ids.append(_text(raw_id))
        bodies.append(_text(raw_body))
    try:
        events = json.loads("[" + ",".join(bodies) + "]")
    except ValueError:
        return False
    return len(events) == len(ids) and all(
        type(event) is dict and event.get("event_id") == event_id
        for event, event_id in zip(events, ids, strict=True)
    )


def _letter_event(fields: dict[Any, Any]) -> EventInput:
    """The event of a dead letter, whatever state its body is in."""
    raw_body = _field(fields, "b")
    body = "" if raw_body is None else _text(raw_body)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raw_id = _field(fields, "i")
        data = {
            "event_id": "" if raw_id is None else _text(raw_id),
            "metadata": {"raw_body": body[:500]},
        }
    return EventInput._restore(data)


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
            self.where = redacted(url)
            _check_positive("timeout", timeout)
            self._timeout = float(timeout)
            try:
                self._client: Any = self._connect()  # Any: redis-py's replies are untyped unions
            except ValueError as error:
                raise ConfigurationError(f"invalid Redis URL {self.where!r}: {error}") from None
            self._owns_client = True
            self._wait_bound = 4 * self._timeout + 1.0
        elif isinstance(url_or_client, redis.Redis):
            self._url = None
            self._timeout = float(timeout)
            self._client = url_or_client
            kwargs = url_or_client.connection_pool.connection_kwargs
            self.where = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
            self._owns_client = False
            socket_timeout = kwargs.get("socket_timeout")
            if socket_timeout is None:
                logger.warning(
                    "RedisOutbox: the given Redis client has no socket_timeout, so a Redis "
                    "that stops answering holds track() as long as the client waits; set one"
                )
            self._wait_bound = 4 * float(socket_timeout or 5.0) + 1.0
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
        self._bury_script = self._client.register_script(_BURY)
        self._user: object | None = None
        self._closed = False
        self._reset()

    def _connect(self) -> Any:
        assert self._url is not None
        return client_from_url(self._url, self._timeout)  # a failed call is spilled

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
        self._consumed = False
        """This process read from the stream as a consumer (a producer never does)."""
        self._unreachable = False
        self._next_prune = 0.0
        self.received = 0
        """Entries this consumer read from the stream for the first time, or claimed."""
        self.claimed = 0
        """Entries claimed from consumers that went silent."""
        self.spilled_total = 0
        """Events kept in memory because Redis could not be reached."""
        self.malformed = 0
        """Entries moved to the dead letters unsent because they were not events."""

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
        if not self._claim_more and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_INTERVAL
            self._prune_consumers()
        if claimed:
            self._reread = True
            with self._lock:
                self.claimed += claimed
                self.received += claimed
        return claimed

    def _prune_consumers(self) -> None:
        """Remove consumers that hold nothing and were silent for ``_GONE_AFTER`` seconds
        (processes that died without closing), so the group's list stays readable."""
        for consumer in self._client.xinfo_consumers(self.stream, self.group):
            name = _text(consumer["name"])
            if (
                name != self.consumer
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > _GONE_AFTER * 1000
            ):
                self._client.xgroup_delconsumer(self.stream, self.group, name)

    @property
    def reclaim_interval(self) -> float:
        """Internal: seconds until the sender should call :meth:`reclaim` again."""
        return 0.0 if self._claim_more else min(30.0, self.claim_idle / 2)

    def release(self) -> None:
        """Internal: let other consumers claim what this one still holds at once, and leave
        the group when it holds nothing. Skipped by a producer that never read, and when
        Redis was found unreachable (the entries are claimed after ``claim_idle`` then)."""
        if not self._consumed or self._unreachable:
            self._held.clear()
            with self._lock:
                self._user = None
            return
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
            self._unreachable = True
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
            self._bury_script = self._client.register_script(_BURY)
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
                leading = self._leader is None
                self._waiting.append(me)
                if leading:
                    self._leader = me.thread
                    me.lead = True
            if not leading:
                try:
                    # A leader writes ours, or makes us the next leader.
                    waited = me.done.wait(self._wait_bound)
                except BaseException:  # the caller's own signal handler raised
                    self._leave(me)
                    raise
                if not waited:  # the leader is stuck: the sender writes ours later
                    self._leave(me)
                    self._spill_one(row, None)
                    return seq
            if me.lead:
                try:
                    self._lead()
                except BaseException:
                    if me.reply is _INTERRUPTED or me.reply is _UNSENT:
                        with contextlib.suppress(Exception):
                            self._spill_one(row, None)
                    raise
            return self._outcome(me)
        finally:
            local.busy = False

    def _leave(self, me: _Append) -> None:
        """``me`` stops waiting: take it out of line, and pass the lead on if it had it."""
        following = None
        with self._group_lock:
            if me in self._waiting:
                self._waiting.remove(me)
            if me.lead and me.reply is _UNSENT:
                following = self._promote()
        if following is not None:
            following.done.set()

    def _promote(self) -> _Append | None:
        """Give the lead to the first waiting event's thread (under the group lock)."""
        following = self._waiting[0] if self._waiting else None
        if following is None:
            self._leader = None
        else:
            following.lead = True
            self._leader = following.thread
        return following

    def _lead(self) -> None:
        """Write every event waiting now in one round trip; hand over to the next waiter."""
        with self._group_lock:
            batch, self._waiting = self._waiting, []
        try:
            self._write(batch)
        finally:
            with self._group_lock:
                following = self._promote()
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
                replies = self._append_many([waiting.row for waiting in batch])
        except redis.RedisError as error:
            replies = [error] * len(batch)
        except BaseException:  # not about Redis: the other threads' events are spilled
            for waiting in batch:
                waiting.reply = _INTERRUPTED
            raise
        for waiting, reply in zip(batch, replies, strict=True):
            waiting.reply = reply

    def _append_many(self, rows: Sequence[OutboxRow]) -> list[Any]:
        """Append ``rows`` in one pipelined round trip; a reply (entry id, ``None`` when the
        stream is full, or the error) per row. The script is loaded only when Redis does not
        know it (a pipeline of ``Script`` calls would ask first, every time)."""
        sha = self._append_script.sha
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            for event_id, timestamp, body, _ in rows:
                pipe.evalsha(sha, 1, self.stream, self.maxlen, event_id, repr(timestamp), body)
            replies: list[Any] = pipe.execute(raise_on_error=False)
            if not any(isinstance(reply, redis.exceptions.NoScriptError) for reply in replies):
                return replies
            self._client.script_load(_APPEND)  # Redis restarted, or SCRIPT FLUSH
        return replies

    def _outcome(self, me: _Append) -> int:
        reply = me.reply
        seq = me.row[3]
        if reply is _INTERRUPTED or reply is _UNSENT:
            self._spill_one(me.row, None)  # the writing thread was interrupted
            return seq
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

    def oldest_pending(self) -> float | None:
        """Internal: the timestamp of the oldest event of this process waiting for Redis (in
        the spill); what is in the stream is the relays' to deliver."""
        spill = self._spill
        try:
            return min(row[1] for row in spill) if spill else None
        except (RuntimeError, ValueError):  # changed while read: ask again next time
            return None

    def spilled(self) -> int:
        """Events waiting in memory for Redis."""
        return len(self._spill)

    def push_spill(self) -> bool:
        """Internal (sender): write the spilled events to the stream, oldest first; True when
        none is left. Producers keep spilling meanwhile, so the order of events holds."""
        while self._spill:
            chunk = list(itertools.islice(self._spill, _CHUNK))
            try:
                replies = self._append_many(chunk)
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is not None:
                    raise failed
            except redis.RedisError as error:
                self._unreachable = True
                logger.debug("Redis outbox: spill not written yet (%s)", error)
                return False
            self._unreachable = False
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
        self._consumed = True
        try:
            rows = self._fetch(limit)
        except redis.RedisError as error:
            # What a read may have taken before failing is read again from our pending list.
            self._reread = True
            self._unreachable = isinstance(error, (redis.ConnectionError, redis.TimeoutError))
            raise
        self._unreachable = False
        return rows

    def _fetch(self, limit: int) -> list[OutboxRow]:
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

    @property
    def reachable(self) -> bool:
        """False after this process's last read or write found Redis unreachable."""
        return not self._unreachable

    def _collect(self, entries: list[tuple[Any, Any]], rows: list[OutboxRow]) -> None:
        gone = []
        malformed: dict[str, list[OutboxRow]] = {}
        waiting = self._burials_waiting()
        checked = _bodies_match([entry for entry in entries if entry[1]])
        for entry_id, fields in entries:
            if not fields:  # deleted while held (settled by another consumer meanwhile)
                gone.append(entry_id)
                continue
            position = _position(entry_id)
            if position in waiting:
                continue  # refused already; its burial is retried
            row, problem = _row(fields, position, body_checked=checked)
            if problem:
                malformed.setdefault(problem, []).append(row)
                continue
            rows.append(row)
            self._held[position] = None
        if gone:
            self._client.xack(self.stream, self.group, *gone)
        for problem, bad in malformed.items():
            with self._lock:
                self.malformed += len(bad)
            logger.error(
                "Redis outbox %s: %d malformed entr%s moved to the dead letters (%s)",
                self.where,
                len(bad),
                "y" if len(bad) == 1 else "ies",
                problem,
            )
            self.bury(bad, f"malformed entry: {problem}", None)

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
            self._settle(positions)
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
            self._bury_now(list(rows), burial)
        except redis.RedisError as error:
            logger.error(
                "Redis outbox %s: %d dead letter(s) not stored yet, kept in the stream and "
                "tried again (%s)",
                self.where,
                len(rows),
                error,
            )
            self._unsettled_burials.append((list(rows), burial))

    def _bury_now(self, rows: list[OutboxRow], burial: dict[str, str]) -> None:
        for start in range(0, len(rows), _CHUNK):
            args: list[Any] = [self.group, burial["r"], burial["s"], burial["f"], burial["c"]]
            for event_id, timestamp, body, position in rows[start : start + _CHUNK]:
                args += [_entry_id(position), event_id, repr(timestamp), body]
            self._bury_script(keys=[self.stream, self.dead_stream], args=args)

    def _burials_waiting(self) -> set[int]:
        return {row[3] for rows, _ in self._unsettled_burials for row in rows}

    def _settle(self, positions: list[int]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for start in range(0, len(positions), _CHUNK):
            ids = [_entry_id(position) for position in positions[start : start + _CHUNK]]
            pipe.xack(self.stream, self.group, *ids)
            pipe.xdel(self.stream, *ids)
        pipe.execute()

    def _retry_settlements(self) -> None:
        """Store the acknowledgements that failed earlier (raise while Redis still fails:
        nothing is read before they are stored), then try the burials that failed (kept and
        logged while they still fail, without holding up delivery)."""
        if self._unsettled_acks:
            self._settle(self._unsettled_acks)
            self._unsettled_acks = []
        if not self._unsettled_burials:
            return
        failing = []
        for rows, burial in self._unsettled_burials:
            try:
                self._bury_now(rows, burial)
            except redis.ResponseError as error:
                failing.append((rows, burial))
                logger.debug("dead letters still not stored (%s)", error)
        self._unsettled_burials = failing

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
                    _letter_event(fields),
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
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError):
            self._unreachable = True
            raise
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
