"""``Ingestion``: track usage events from any thread; they are delivered in the background."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from ..client import ConfigurationError, EventInput, EventValidationError
from ..client._config import ClientConfig, mask_key, resolve_config
from ..client._models import MetadataValue, validate_metadata
from ._dead_letter import DeadLetter
from ._encoding import encode_fields
from ._ids import new_event_id
from ._outbox_protocol import OutboxBackend, SharedOutboxBackend
from ._pipeline import ErrorCallback, Pipeline
from ._settings import API_MAX_FUTURE_SKEW, Settings, request_timeout, wait_timeout
from ._stats import DeliveryStats
from ._transport import ClientTransport, Transport

__all__ = ["DEFAULT_DELIVERY_TIMEOUT", "Ingestion"]

if TYPE_CHECKING:
    import httpx2

    from ..client import DodoClient

    DEFAULT_DELIVERY_TIMEOUT: httpx2.Timeout
    """The delivery's default per-request timeout (`Ingestion(timeout=None)`): 10 s per
    attempt, at most 3 s of it to connect; built on first use, with the HTTP stack."""


def __getattr__(name: str) -> Any:
    if name != "DEFAULT_DELIVERY_TIMEOUT":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return default_timeout()


def default_timeout() -> httpx2.Timeout:
    """``DEFAULT_DELIVERY_TIMEOUT``: 10 s per request attempt, at most 3 s of it to connect
    (built on first use, with the HTTP stack)."""
    import httpx2

    return httpx2.Timeout(10.0, connect=3.0)


"""10 s per request, 3 s to connect."""

_time = time.time
REVIVE_INTERVAL = 1.0
"""How often a waiting flush checks that a sender runs (one killed is replaced)."""
_BATCH_FRAME = len('{"events":[]}')
"""Bytes a request adds around its events."""


class Ingestion:
    """Track usage events; a background thread delivers them batched, retried and deduplicated.

    ``track()`` validates the event, fixes its id and timestamp, queues it and returns the id
    in microseconds, without I/O (with an ``outbox``, after it stored the event). A daemon
    thread, started on the first ``track()``, sends batches of up to ``batch_size`` events
    at least every ``flush_interval`` seconds over one reused connection, retries transient
    failures with the same ids until the events are ``max_event_age`` old, isolates events
    the API refuses and keeps them as dead letters. ``flush()`` waits for what was tracked
    before it; ``close()`` (or leaving a ``with`` block, or interpreter exit) flushes for at
    most ``shutdown_timeout`` seconds and stops the thread.

    ``outbox`` makes delivery durable: a path opens a SQLite :class:`Outbox` (one machine,
    crash-safe); a ``redis://`` URL (or a :class:`RedisOutbox`) shares a Redis stream with
    a fleet, where ``track()`` returns once the event is in the stream and this process is one
    consumer of the group; with ``deliver=False`` it only produces, and relays
    (``dodo-ingest relay``) deliver. See ``docs/fleet.md``.

    Settings fall back to ``DODO_PAYMENTS_API_KEY``, ``DODO_PAYMENTS_ENVIRONMENT`` and
    ``DODO_PAYMENTS_BASE_URL``; pass ``client=`` to reuse a :class:`DodoClient`'s settings.
    Bad settings raise :class:`~dodo_ingest.ConfigurationError` here. See ``docs/delivery.md``
    for the guarantees, the queue-full policy and every setting.
    """

    def __init__(
        self,
        api_key: str | None = None,
        environment: Literal["test_mode", "live_mode"] | None = None,
        base_url: str | None = None,
        event_name: str | None = None,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_queue_size: int = 100_000,
        outbox: str | os.PathLike[str] | OutboxBackend | None = None,
        timeout: float | httpx2.Timeout | None = None,
        on_error: ErrorCallback | None = None,
        shutdown_timeout: float = 5.0,
        *,
        client: DodoClient | None = None,
        flush_timeout: float = 30.0,
        queue_full_timeout: float = 0.1,
        max_event_age: float = 3300.0,
        max_request_bytes: int = 4 * 1024 * 1024,
        max_queue_bytes: int = 64 * 1024 * 1024,
        transport: Transport | None = None,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 60.0,
        auth_retry_interval: float = 60.0,
        deliver: bool = True,
    ) -> None:
        self._settings = Settings(
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue_size=max_queue_size,
            shutdown_timeout=shutdown_timeout,
            flush_timeout=flush_timeout,
            queue_full_timeout=queue_full_timeout,
            max_event_age=max_event_age,
            max_request_bytes=max_request_bytes,
            max_queue_bytes=max_queue_bytes,
            retry_initial_delay=retry_initial_delay,
            retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
            auth_retry_interval=auth_retry_interval,
        )
        if event_name is not None and (type(event_name) is not str or not event_name):
            raise ConfigurationError(f"event_name must be a non-empty string, got {event_name!r}")
        if on_error is not None and not callable(on_error):
            raise ConfigurationError(f"on_error must be callable, got {on_error!r}")
        if transport is not None and not (
            callable(getattr(transport, "send", None))
            and callable(getattr(transport, "close", None))
        ):
            raise ConfigurationError(
                f"transport must have send(body) and close() methods, got {transport!r}"
            )
        if type(deliver) is not bool:
            raise ConfigurationError(f"deliver must be True or False, got {deliver!r}")
        if deliver:
            self._config = _resolve(client, api_key, environment, base_url, transport)
        else:  # a producer only: the key, if given, is only redacted from messages
            self._config = resolve_config(api_key, None, None) if api_key is not None else None
        self._timeout = request_timeout(timeout)
        self._event_name = event_name
        self._max_event_age = self._settings.max_event_age
        self._max_event_bytes = self._settings.max_request_bytes - _BATCH_FRAME
        self._owns_outbox = isinstance(outbox, (str, os.PathLike))
        self._outbox = _outbox(outbox)
        if not deliver and not isinstance(self._outbox, SharedOutboxBackend):
            if self._owns_outbox and self._outbox is not None:
                self._outbox.close()
            raise ConfigurationError(
                "deliver=False needs a shared outbox (a redis:// URL or a RedisOutbox) that "
                "relays deliver from"
            )
        self._transport = transport
        self._given_client = client
        self._pipeline = Pipeline(
            self._settings,
            self._make_transport,
            on_error,
            self._outbox,
            self._config.api_key if self._config is not None else "",
            deliver=deliver,
        )
        self._put = self._pipeline.put_memory if self._outbox is None else self._pipeline.put_outbox

    def _make_transport(self) -> Transport:
        """The transport of the sender: the one given, else one on the given client (first
        use only: a forked child gets its own connections), else a new client."""
        if self._transport is not None:
            return self._transport
        client, self._given_client = self._given_client, None
        timeout = default_timeout() if self._timeout is None else self._timeout
        if client is not None:
            return ClientTransport(
                client.with_options(max_retries=0, timeout=timeout), owns_client=False
            )
        from ..client import DodoClient  # the HTTP stack loads here, in the sender thread

        config = self._config
        assert config is not None
        return ClientTransport(
            DodoClient(
                api_key=config.api_key,
                base_url=config.base_url,
                timeout=timeout,
                max_retries=0,
            ),
            owns_client=True,
        )

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str:
        """Queue one usage event and return its ``event_id``, without waiting for the network.

        ``event_name`` defaults to the ``Ingestion``'s; ``event_id`` to a new time-ordered
        unique id (``evt_`` + 32 hex digits); ``timestamp`` (timezone-aware) to now. Pass your
        own ``event_id`` to make a retried ``track()`` idempotent. Raises
        :class:`~dodo_ingest.EventValidationError` for input the API would refuse: empty ids
        or names, metadata beyond 50 keys / 100-character keys / 500-character values or
        holding objects, a timestamp older than ``max_event_age`` or more than 5 minutes ahead.
        """
        if event_name is None:
            event_name = self._event_name
            if event_name is None:
                raise EventValidationError(
                    "event_name", "required: pass event_name= here or to Ingestion(event_name=...)"
                )
        if event_id is None:
            event_id = new_event_id()
        if (
            timestamp is None
            and type(customer_id) is str
            and type(event_name) is str
            and type(event_id) is str
            and customer_id
            and event_name
            and event_id
            and customer_id.isascii()
            and event_name.isascii()
            and event_id.isascii()
        ):  # what EventInput would accept as it is: checked inline (the common case)
            checked = None if metadata is None else validate_metadata(metadata)
            ts = _time()
        else:
            event = EventInput(event_id, customer_id, event_name, timestamp, metadata)
            checked = event.metadata
            # The event's copy: the caller's datetime may answer differently when read again.
            ts = _time() if event.timestamp is None else self._check_timestamp(event.timestamp)
        try:
            body = encode_fields(event_id, customer_id, event_name, ts, checked)
        except (TypeError, ValueError) as error:
            raise EventValidationError("metadata", f"cannot be encoded as JSON: {error}") from None
        if len(body) * 4 > self._max_event_bytes:  # a UTF-8 character takes at most 4 bytes
            self._check_size(body)
        self._put(event_id, ts, body)
        return event_id

    def _track_prechecked(
        self,
        customer_id: str,
        event_name: str,
        metadata: dict[str, MetadataValue],
        event_id: str,
        timestamp: datetime | None = None,
    ) -> str:
        """:meth:`track` of an event, for callers that checked it already.

        The caller guarantees what `EventInput` would check: non-empty ``str`` ids and
        name, ``metadata`` a fresh ``dict`` (never touched again by the caller) within the
        API's limits holding only ``str``, ``bool``, int64 ``int`` and finite ``float``
        values, and ``timestamp`` (stamped now when ``None``) timezone-aware. The body, the
        queueing and what a closed or full queue does are :meth:`track`'s; only the
        encoded size and the timestamp's age are checked here.
        """
        ts = _time() if timestamp is None else self._check_timestamp(timestamp)
        body = encode_fields(event_id, customer_id, event_name, ts, metadata)
        if len(body) * 4 > self._max_event_bytes:
            self._check_size(body)
        self._put(event_id, ts, body)
        return event_id

    def _check_size(self, body: str) -> None:
        size = len(body.encode())
        if size > self._max_event_bytes:
            raise EventValidationError(
                "event",
                f"encoded size {size} bytes is over the {self._max_event_bytes} bytes one "
                f"request can carry (max_request_bytes={self._settings.max_request_bytes})",
            )

    def _check_timestamp(self, timestamp: datetime) -> float:
        ts = timestamp.timestamp()
        now = _time()
        if ts < now - self._max_event_age:
            raise EventValidationError(
                "timestamp",
                f"older than max_event_age ({self._max_event_age:g} s); the API refuses events "
                "more than 1 hour old",
            )
        if ts > now + API_MAX_FUTURE_SKEW:
            raise EventValidationError(
                "timestamp", "more than 5 minutes in the future; the API refuses it"
            )
        return ts

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event tracked before this call is settled (delivered or
        dead-lettered); True if so within ``timeout`` seconds (default ``flush_timeout``).

        Safe in serverless handlers (call it before returning). Does not block forever: on
        timeout it returns False and the events stay queued. After :meth:`close` it returns at
        once: True when nothing is left unsettled and ``close()`` dropped nothing (nor
        ``track()`` after it). In async code use :meth:`aflush`. A negative
        ``timeout`` means 0 and ``math.inf`` the longest wait the platform allows
        (``threading.TIMEOUT_MAX``); NaN raises ``ValueError``.
        """
        budget = wait_timeout(self._settings.flush_timeout if timeout is None else timeout)
        if self._pipeline.closed:
            return self._settled_after_close()
        if self._pipeline.in_sender():  # from on_error: the sender cannot wait for itself
            return False
        waiter = self._pipeline.flush_waiter()
        if waiter is None:
            return True
        deadline = time.monotonic() + budget
        while not waiter.wait(min(budget, REVIVE_INTERVAL)):
            budget = deadline - time.monotonic()
            if waiter.is_set() or budget <= 0:
                break
            self._pipeline.revive()  # a sender killed meanwhile: the events wait for another
        else:
            return True
        if waiter.is_set():  # fired as the last slice of the wait ran out
            return waiter.ok
        self._pipeline.cancel(waiter)
        return False

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for asyncio code: awaits without blocking the event loop."""
        budget = wait_timeout(self._settings.flush_timeout if timeout is None else timeout)
        if self._pipeline.closed:
            return self._settled_after_close()
        waiter = self._pipeline.flush_waiter()
        if waiter is None:
            return True
        settled = False
        deadline = time.monotonic() + budget
        try:
            while not (settled := await waiter.async_wait(min(budget, REVIVE_INTERVAL))):
                budget = deadline - time.monotonic()
                if waiter.is_set() or budget <= 0:
                    break
                self._pipeline.revive()
        finally:
            if not waiter.is_set():  # timed out or cancelled: give the waiter back
                self._pipeline.cancel(waiter)
        return settled or (waiter.is_set() and waiter.ok)

    def _settled_after_close(self) -> bool:
        """A flush after ``close()``: True when nothing waits and nothing was dropped by it."""
        pipeline = self._pipeline
        return (
            self.stats.queued == 0
            and pipeline.lost_at_close == 0
            and not pipeline.unsettled_at_close
        )

    def close(self, timeout: float | None = None) -> None:
        """Flush for at most ``timeout`` seconds (default ``shutdown_timeout``), then stop the
        sender thread. Idempotent. Without an outbox, events still unsent are dropped and
        counted; with one they stay on disk for the next process. ``track()`` after ``close()``
        drops (and counts) the event. ``timeout`` is read as in :meth:`flush`.
        """
        self._pipeline.close(
            wait_timeout(self._settings.shutdown_timeout if timeout is None else timeout),
            close_outbox=self._owns_outbox,
        )

    async def aclose(self, timeout: float | None = None) -> None:
        """:meth:`close` for asyncio code (an app's shutdown hook): flushes with
        :meth:`aflush`, then stops the sender in a worker thread, never blocking the loop."""
        budget = wait_timeout(self._settings.shutdown_timeout if timeout is None else timeout)
        import asyncio  # loaded already: the caller runs in an event loop

        loop = asyncio.get_running_loop()
        started = loop.time()
        await self.aflush(budget)
        remaining = max(0.0, budget - (loop.time() - started))
        await loop.run_in_executor(None, self.close, remaining)

    @property
    def event_name(self) -> str | None:
        """The default ``event_name`` of :meth:`track` (``None`` when every call must name one)."""
        return self._event_name

    @property
    def stats(self) -> DeliveryStats:
        """A snapshot of the counters (see :class:`DeliveryStats`)."""
        return self._pipeline.stats()

    @property
    def pending_since(self) -> float | None:
        """The timestamp (Unix seconds) of the oldest event tracked by this process and not
        settled yet (queued, in a request, or waiting for a Redis that is away); ``None``
        when everything is settled. A :class:`~dodo_ingest.CreditGate` given this
        ``Ingestion`` keeps counting usage the API cannot have deducted yet."""
        return self._pipeline.pending_since()

    @property
    def outbox(self) -> OutboxBackend | None:
        """The outbox events go through, if any."""
        return self._outbox

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Events given up on, oldest first: from the outbox, else the last 10,000 in memory."""
        if self._outbox is not None:
            return self._outbox.dead_letters(limit)
        letters = list(self._pipeline.memory.dead_letters)  # type: ignore[union-attr]
        return letters if limit is None else letters[:limit]

    def __enter__(self) -> Ingestion:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        outbox = getattr(self._outbox, "path", self._outbox)
        if self._config is None:
            return f"Ingestion(transport={self._transport!r}, outbox={outbox!r})"
        return (
            f"Ingestion(base_url={self._config.base_url!r}, outbox={outbox!r}, "
            f"api_key={mask_key(self._config.api_key)!r})"
        )


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _outbox(outbox: object) -> OutboxBackend | None:
    """The outbox to use: ``None``, an outbox object, a ``RedisOutbox`` on a ``redis://`` URL,
    or a SQLite ``Outbox`` opened on a path."""
    if outbox is None or isinstance(outbox, OutboxBackend):
        return outbox
    if isinstance(outbox, str) and outbox.startswith(_REDIS_SCHEMES):
        try:
            from ._redis_outbox import RedisOutbox
        except ImportError:
            raise ConfigurationError(
                "a Redis outbox needs the redis package: pip install 'dodo-ingest[redis]'"
            ) from None
        return RedisOutbox(outbox)
    if not isinstance(outbox, (str, os.PathLike)):
        raise ConfigurationError(
            f"outbox must be a path or an outbox object (an Outbox), got {type(outbox).__name__}"
        )
    path = os.fspath(outbox)
    if not isinstance(path, str):
        raise ConfigurationError(f"outbox must be a text path, got {path!r}")
    import sqlite3  # loaded with the outbox only: the memory queue does without it

    from ._outbox import Outbox

    try:
        return Outbox(path)
    except sqlite3.Error as error:
        raise ConfigurationError(f"outbox {os.fspath(path)!r} cannot be opened: {error}") from None


def _resolve(
    client: DodoClient | None,
    api_key: str | None,
    environment: str | None,
    base_url: str | None,
    transport: Transport | None,
) -> ClientConfig | None:
    if transport is not None:
        if client is not None or base_url is not None or environment is not None:
            raise ConfigurationError(
                "pass either transport= or client=/environment/base_url, not both"
            )
        # A key is only needed to redact it from what the transport's errors say.
        return resolve_config(api_key, None, None) if api_key is not None else None
    if client is None:
        return resolve_config(api_key, environment, base_url)
    from ..client import DodoClient  # given a client, the caller has loaded it already

    if not isinstance(client, DodoClient):
        raise ConfigurationError(f"client must be a DodoClient, got {type(client).__name__}")
    if api_key is not None or environment is not None or base_url is not None:
        raise ConfigurationError("pass either client= or api_key/environment/base_url, not both")
    return client._config
