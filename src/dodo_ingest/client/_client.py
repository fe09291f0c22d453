"""``DodoClient`` and ``AsyncDodoClient``: typed access to the billing API over httpx2."""

from __future__ import annotations

import asyncio
import platform
import ssl
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

import httpcore2
import httpx2
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt

from .._version import __version__
from . import _requests as rq
from ._config import ClientConfig, mask_key, resolve_config
from ._errors import APIConnectionError, APITimeoutError
from ._models import (
    CreditBalance,
    CreditEntitlement,
    CreditGrant,
    CreditLedgerEntry,
    Event,
    EventInput,
    GrantStatus,
    IngestResult,
    LedgerTransactionType,
    Meter,
    MeterAggregation,
    MeterFilter,
    OverageBehavior,
    TimeInterval,
    UsagePeriod,
    WebhookEndpoint,
)
from ._retry import is_retryable, is_safe_to_resend, retry_wait

__all__ = ["DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AsyncDodoClient", "DodoClient"]

DEFAULT_TIMEOUT = httpx2.Timeout(60.0, connect=5.0)
"""60 s for each attempt of a request (its total deadline), 5 s to connect."""
DEFAULT_MAX_RETRIES = 2
"""Retries after the first attempt (3 attempts in all)."""

USER_AGENT = (
    f"dodo-ingest/{__version__} python/{platform.python_version()} httpx2/{httpx2.__version__}"
)

T = TypeVar("T")
EventLike = EventInput | Mapping[str, Any]
Decoder = Callable[[httpx2.Response, str], T]
"""Turns an answer (and the API key, to redact from errors) into a result, or raises."""


class _BaseClient:
    """Settings shared by the sync and async clients."""

    _config: ClientConfig
    _owns_http: bool

    def __init__(
        self,
        *,
        api_key: str | None,
        environment: str | None,
        base_url: str | None,
        timeout: float | httpx2.Timeout,
        max_retries: int,
    ) -> None:
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        self._config = resolve_config(api_key, environment, base_url)
        self.timeout = timeout if isinstance(timeout, httpx2.Timeout) else httpx2.Timeout(timeout)
        self.max_retries = max_retries
        self._headers = {
            "Authorization": f"Bearer {self._config.api_key}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._config.base_url

    @property
    def environment(self) -> str | None:
        """``test_mode`` or ``live_mode``, or ``None`` when a custom base URL was given."""
        return self._config.environment

    def _copy(self, max_retries: int | None, timeout: float | httpx2.Timeout | None) -> Self:
        """A shallow copy sharing the HTTP pool (not owning it), with other settings."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy._owns_http = False
        if max_retries is not None:
            if not isinstance(max_retries, int) or max_retries < 0:
                raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
            copy.max_retries = max_retries
        if timeout is not None:
            copy.timeout = (
                timeout if isinstance(timeout, httpx2.Timeout) else httpx2.Timeout(timeout)
            )
        return copy

    def _url(self, request: rq.APIRequest) -> str:
        return self._config.base_url + request.path

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"api_key={mask_key(self._config.api_key)!r})"
        )


# --- the total deadline of an attempt ------------------------------------------------------
#
# httpx2's timeouts bound each network operation, so a server sending one byte now and then
# can hold a request open indefinitely. An attempt's deadline bounds the whole of it: the async
# client wraps the request in ``asyncio.timeout``; the sync client, which has no way to
# interrupt a blocking read from outside, gives the connection pools it makes a network backend
# that shortens each operation's timeout to what is left before the deadline of the attempt
# running in this context.

_DEADLINE: ContextVar[float | None] = ContextVar("dodo_ingest_deadline", default=None)
"""``time.monotonic()`` value by which the attempt running in this context must end."""


def _remaining(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before the deadline; ``expired`` once it passed."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the attempt's total deadline passed")
    return left if timeout is None else min(timeout, left)


_WRITE_CHUNK = 65536
"""A long write is cut into pieces of this size, each given the time then left."""


class _DeadlineStream(httpcore2.NetworkStream):
    """A network stream whose reads, writes and TLS handshake get at most the time left."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), _WRITE_CHUNK):
            chunk = view[start : start + _WRITE_CHUNK]
            self._stream.write(bytes(chunk), _remaining(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _remaining(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """Opens :class:`_DeadlineStream` connections over another network backend."""

    def __init__(self, backend: httpcore2.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _remaining(timeout, httpcore2.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _remaining(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _sync_http_client(timeout: httpx2.Timeout) -> httpx2.Client:
    """The ``httpx2.Client`` a :class:`DodoClient` makes, its pools bounded by the deadline.

    httpx2 has no public way to give its transports a network backend, so the backend of
    each connection pool it made (direct, and one per proxy from the environment) is wrapped
    before any connection exists. Should a later httpx2 move these private attributes, nothing
    is wrapped and only the per-operation timeouts apply (``tests/client/test_deadline.py``
    then fails).
    """
    client = httpx2.Client(timeout=timeout)
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore2.NetworkBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    return client


def _attempt_timeout(timeout: httpx2.Timeout) -> httpx2.Timeout:
    """``timeout`` with the wait for a pooled connection cut to the attempt's deadline."""
    total, pool = timeout.read, timeout.pool
    if total is None or (pool is not None and pool <= total):
        return timeout
    return httpx2.Timeout(connect=timeout.connect, read=total, write=timeout.write, pool=total)


_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def _transport_error(
    error: httpx2.TransportError, secret: str, total: float | None = None
) -> APIConnectionError:
    """The error for a failed attempt; ``total`` is given when its deadline passed."""
    detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    detail = rq.redact(detail, secret)
    sent = not isinstance(error, _NOT_SENT)
    if isinstance(error, httpx2.TimeoutException):
        if total is not None:
            message = f"request timed out: no complete answer within {total:g} s ({detail})"
            return APITimeoutError(message, request_sent=sent)
        return APITimeoutError(f"request timed out ({detail})", request_sent=sent)
    return APIConnectionError(f"connection error ({detail})", request_sent=sent)


def _retry_condition(request: rq.APIRequest) -> retry_if_exception:
    return retry_if_exception(is_retryable if request.idempotent else is_safe_to_resend)


def _pages(
    send: Callable[[rq.APIRequest], Any],
    build: Callable[[int], rq.APIRequest],
    parse: Callable[[Mapping[str, Any]], T],
    page_size: int,
    limit: int | None,
) -> Iterator[T]:
    """Walk 0-based pages until a short page (or ``limit`` items)."""
    count = 0
    page_number = 0
    while True:
        items = (send(build(page_number)) or {}).get("items") or []
        for item in items:
            yield parse(item)
            count += 1
            if limit is not None and count >= limit:
                return
        if len(items) < page_size:
            return
        page_number += 1


async def _apages(
    send: Callable[[rq.APIRequest], Awaitable[Any]],
    build: Callable[[int], rq.APIRequest],
    parse: Callable[[Mapping[str, Any]], T],
    page_size: int,
    limit: int | None,
) -> AsyncIterator[T]:
    """Async twin of :func:`_pages`."""
    count = 0
    page_number = 0
    while True:
        items = ((await send(build(page_number))) or {}).get("items") or []
        for item in items:
            yield parse(item)
            count += 1
            if limit is not None and count >= limit:
                return
        if len(items) < page_size:
            return
        page_number += 1


def _cursor_pages(
    send: Callable[[rq.APIRequest], Any],
    page_size: int,
    limit: int | None,
) -> Iterator[WebhookEndpoint]:
    """Walk ``GET /webhooks`` pages by their ``iterator`` until ``done`` (or ``limit``, or
    a page pointing back at itself)."""
    count = 0
    iterator: str | None = None
    while True:
        page = send(rq.list_webhooks_request(limit=page_size, iterator=iterator)) or {}
        for item in page.get("data") or []:
            yield WebhookEndpoint.from_dict(item)
            count += 1
            if limit is not None and count >= limit:
                return
        previous, iterator = iterator, page.get("iterator")
        if page.get("done", True) or not iterator or iterator == previous:
            return


async def _acursor_pages(
    send: Callable[[rq.APIRequest], Awaitable[Any]],
    page_size: int,
    limit: int | None,
) -> AsyncIterator[WebhookEndpoint]:
    """Async twin of :func:`_cursor_pages`."""
    count = 0
    iterator: str | None = None
    while True:
        page = (await send(rq.list_webhooks_request(limit=page_size, iterator=iterator))) or {}
        for item in page.get("data") or []:
            yield WebhookEndpoint.from_dict(item)
            count += 1
            if limit is not None and count >= limit:
                return
        previous, iterator = iterator, page.get("iterator")
        if page.get("done", True) or not iterator or iterator == previous:
            return


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be None or an int >= 1, got {limit!r}")
    return limit


class DodoClient(_BaseClient):
    """Synchronous client of the billing API.

    One pooled ``httpx2.Client`` per instance (or the one you pass as ``http_client``, which
    you then own and close). Transient failures (connection errors, timeouts, 408, 409, 429,
    5xx) are retried up to ``max_retries`` times with exponential backoff and full jitter,
    honouring ``Retry-After``; other errors raise at once.

    ``timeout`` bounds each network operation, and its ``read`` value also bounds each
    attempt as a whole (a server trickling its answer raises
    :class:`~dodo_ingest.APITimeoutError` when it is up). The whole-attempt deadline is
    enforced in the connection pool the client makes, not in an ``http_client`` you pass.

    Settings fall back to ``DODO_PAYMENTS_API_KEY``, ``DODO_PAYMENTS_ENVIRONMENT`` and
    ``DODO_PAYMENTS_BASE_URL``; a missing key raises :class:`~dodo_ingest.ConfigurationError`.

    Use it as a context manager, or call :meth:`close`::

        with DodoClient(base_url="http://127.0.0.1:8787") as client:
            client.events.ingest([EventInput("evt_1", "cus_1", "api.call")])
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        environment: Literal["test_mode", "live_mode"] | None = None,
        base_url: str | None = None,
        timeout: float | httpx2.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx2.Client | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            environment=environment,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else _sync_http_client(self.timeout)
        self._sleep: Callable[[float], None] = time.sleep
        self.events = Events(self)
        self.meters = Meters(self)
        self.credits = Credits(self)
        self.webhooks = Webhooks(self)
        self.subscriptions = Subscriptions(self)

    def with_options(
        self, *, max_retries: int | None = None, timeout: float | httpx2.Timeout | None = None
    ) -> DodoClient:
        """A copy with other retry/timeout settings that shares this client's connection pool.

        Closing the copy does not close the pool; closing the original does.
        """
        copy = self._copy(max_retries, timeout)
        copy.events = Events(copy)
        copy.meters = Meters(copy)
        copy.credits = Credits(copy)
        copy.webhooks = Webhooks(copy)
        copy.subscriptions = Subscriptions(copy)
        return copy

    def _send_once(self, request: rq.APIRequest, decode: Decoder[T]) -> T:
        total = self.timeout.read
        deadline = None if total is None else time.monotonic() + total
        token = _DEADLINE.set(deadline)
        try:
            response = self._http.request(
                request.method,
                self._url(request),
                params=request.params,
                content=request.body,
                headers=self._headers,
                timeout=_attempt_timeout(self.timeout),
            )
        except httpx2.TransportError as error:
            late = deadline is not None and time.monotonic() >= deadline
            failure = _transport_error(error, self._config.api_key, total if late else None)
        else:
            return decode(response, self._config.api_key)
        finally:
            _DEADLINE.reset(token)
        raise failure  # out of the handler: the httpx2 error, which may quote the key, is not chained

    def send(self, request: rq.APIRequest) -> Any:
        """Internal: send one prepared request with the retry policy; return its decoded JSON."""
        return self._send(request, rq.decode_response)

    def _send(self, request: rq.APIRequest, decode: Decoder[T]) -> T:
        """Send with the retry policy; ``decode`` turns each answer into the result or raises."""
        if self.max_retries == 0:
            return self._send_once(request, decode)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=retry_wait,
            retry=_retry_condition(request),
            sleep=self._sleep,
            reraise=True,
        )
        result: T = retrying(self._send_once, request, decode)
        return result

    def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> DodoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncDodoClient(_BaseClient):
    """Asynchronous twin of :class:`DodoClient`, on ``httpx2.AsyncClient``.

    Every method of :class:`DodoClient`'s resources exists here as a coroutine (``list``
    methods return async iterators). Use ``async with AsyncDodoClient() as client:`` or
    ``await client.aclose()``. Each attempt ends within the ``timeout``'s ``read`` value
    (``asyncio.timeout``), whatever ``http_client`` sends it.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        environment: Literal["test_mode", "live_mode"] | None = None,
        base_url: str | None = None,
        timeout: float | httpx2.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            environment=environment,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._owns_http = http_client is None
        self._http = (
            http_client if http_client is not None else httpx2.AsyncClient(timeout=self.timeout)
        )
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self.events = AsyncEvents(self)
        self.meters = AsyncMeters(self)
        self.credits = AsyncCredits(self)
        self.webhooks = AsyncWebhooks(self)
        self.subscriptions = AsyncSubscriptions(self)

    def with_options(
        self, *, max_retries: int | None = None, timeout: float | httpx2.Timeout | None = None
    ) -> AsyncDodoClient:
        """A copy with other retry/timeout settings that shares this client's connection pool.

        Closing the copy does not close the pool; closing the original does.
        """
        copy = self._copy(max_retries, timeout)
        copy.events = AsyncEvents(copy)
        copy.meters = AsyncMeters(copy)
        copy.credits = AsyncCredits(copy)
        copy.webhooks = AsyncWebhooks(copy)
        copy.subscriptions = AsyncSubscriptions(copy)
        return copy

    async def _send_once(self, request: rq.APIRequest, decode: Decoder[T]) -> T:
        total = self.timeout.read
        failure: APIConnectionError
        deadline = asyncio.timeout(total)
        try:
            async with deadline:
                response = await self._http.request(
                    request.method,
                    self._url(request),
                    params=request.params,
                    content=request.body,
                    headers=self._headers,
                    timeout=self.timeout,
                )
        except httpx2.TransportError as error:
            failure = _transport_error(error, self._config.api_key)
        except TimeoutError:
            if not deadline.expired():
                raise
            message = f"request timed out: no complete answer within {total:g} s"
            failure = APITimeoutError(message, request_sent=None)
        else:
            return decode(response, self._config.api_key)
        raise failure  # out of the handler: the httpx2 error, which may quote the key, is not chained

    async def send(self, request: rq.APIRequest) -> Any:
        """Internal: send one prepared request with the retry policy; return its decoded JSON."""
        return await self._send(request, rq.decode_response)

    async def _send(self, request: rq.APIRequest, decode: Decoder[T]) -> T:
        """Async :meth:`DodoClient._send`."""
        if self.max_retries == 0:
            return await self._send_once(request, decode)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=retry_wait,
            retry=_retry_condition(request),
            sleep=self._sleep,
            reraise=True,
        )
        return await retrying(self._send_once, request, decode)

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncDodoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --- resources ---------------------------------------------------------------------------


class Events:
    """``client.events``: ingest, list and retrieve usage events."""

    def __init__(self, client: DodoClient) -> None:
        self._client = client

    def ingest(self, events: Iterable[EventLike]) -> IngestResult:
        """Send 1 to 1000 events in one request; ``ingested_count`` excludes known ids.

        Mappings are validated as :class:`EventInput` before anything is sent. Only a 2xx
        JSON object with an integer ``ingested_count`` acknowledges the events; any other 2xx
        raises :class:`~dodo_ingest.UnexpectedResponseError` (after the retries).
        """
        return self._client._send(rq.ingest_request(events), rq.decode_ingest_response)

    def ingest_json(self, body: bytes) -> IngestResult:
        """Send a body already encoded as ``{"events": [...]}`` (no validation here).

        Acknowledged as :meth:`ingest` is.
        """
        return self._client._send(rq.ingest_body_request(body), rq.decode_ingest_response)

    def list(
        self,
        *,
        customer_id: str | None = None,
        event_name: str | None = None,
        meter_id: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[Event]:
        """Iterate over every matching event, page by page (0-based pages, ``page_size`` each),
        stopping after a short page or ``limit`` events."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        filters = {
            "customer_id": customer_id,
            "event_name": event_name,
            "meter_id": meter_id,
            "start": start,
            "end": end,
        }
        return _pages(
            self._client.send,
            lambda n: rq.list_events_request(page_number=n, page_size=page_size, **filters),  # type: ignore[arg-type]
            Event.from_dict,
            page_size,
            limit,
        )

    def retrieve(self, event_id: str) -> Event:
        """One event by id (``NotFoundError`` if there is none)."""
        return Event.from_dict(self._client.send(rq.retrieve_event_request(event_id)))


class AsyncEvents:
    """``client.events`` of :class:`AsyncDodoClient`."""

    def __init__(self, client: AsyncDodoClient) -> None:
        self._client = client

    async def ingest(self, events: Iterable[EventLike]) -> IngestResult:
        """Async :meth:`Events.ingest`."""
        return await self._client._send(rq.ingest_request(events), rq.decode_ingest_response)

    async def ingest_json(self, body: bytes) -> IngestResult:
        """Async :meth:`Events.ingest_json`."""
        return await self._client._send(rq.ingest_body_request(body), rq.decode_ingest_response)

    def list(
        self,
        *,
        customer_id: str | None = None,
        event_name: str | None = None,
        meter_id: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[Event]:
        """Async :meth:`Events.list`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        filters = {
            "customer_id": customer_id,
            "event_name": event_name,
            "meter_id": meter_id,
            "start": start,
            "end": end,
        }
        return _apages(
            self._client.send,
            lambda n: rq.list_events_request(page_number=n, page_size=page_size, **filters),  # type: ignore[arg-type]
            Event.from_dict,
            page_size,
            limit,
        )

    async def retrieve(self, event_id: str) -> Event:
        """Async :meth:`Events.retrieve`."""
        return Event.from_dict(await self._client.send(rq.retrieve_event_request(event_id)))


class Meters:
    """``client.meters``: create, list, retrieve, archive and unarchive meters."""

    def __init__(self, client: DodoClient) -> None:
        self._client = client

    def create(
        self,
        *,
        name: str,
        event_name: str,
        measurement_unit: str,
        aggregation: MeterAggregation,
        filter: MeterFilter | None = None,
        description: str | None = None,
    ) -> Meter:
        """Create a meter over events named ``event_name``, optionally filtered."""
        request = rq.create_meter_request(
            name=name,
            event_name=event_name,
            measurement_unit=measurement_unit,
            aggregation=aggregation,
            filter=filter,
            description=description,
        )
        return Meter.from_dict(self._client.send(request))

    def list(
        self,
        *,
        archived: bool | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[Meter]:
        """Iterate over every meter (``archived=True`` for archived ones only)."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _pages(
            self._client.send,
            lambda n: rq.list_meters_request(page_number=n, page_size=page_size, archived=archived),
            Meter.from_dict,
            page_size,
            limit,
        )

    def retrieve(self, meter_id: str) -> Meter:
        """One meter by id."""
        return Meter.from_dict(self._client.send(rq.meter_request("GET", meter_id)))

    def archive(self, meter_id: str) -> None:
        """Archive a meter (``DELETE /meters/{id}``)."""
        self._client.send(rq.meter_request("DELETE", meter_id))

    def unarchive(self, meter_id: str) -> None:
        """Bring an archived meter back."""
        self._client.send(rq.meter_request("POST", meter_id, "/unarchive"))


class AsyncMeters:
    """``client.meters`` of :class:`AsyncDodoClient`."""

    def __init__(self, client: AsyncDodoClient) -> None:
        self._client = client

    async def create(
        self,
        *,
        name: str,
        event_name: str,
        measurement_unit: str,
        aggregation: MeterAggregation,
        filter: MeterFilter | None = None,
        description: str | None = None,
    ) -> Meter:
        """Async :meth:`Meters.create`."""
        request = rq.create_meter_request(
            name=name,
            event_name=event_name,
            measurement_unit=measurement_unit,
            aggregation=aggregation,
            filter=filter,
            description=description,
        )
        return Meter.from_dict(await self._client.send(request))

    def list(
        self,
        *,
        archived: bool | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[Meter]:
        """Async :meth:`Meters.list`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _apages(
            self._client.send,
            lambda n: rq.list_meters_request(page_number=n, page_size=page_size, archived=archived),
            Meter.from_dict,
            page_size,
            limit,
        )

    async def retrieve(self, meter_id: str) -> Meter:
        """Async :meth:`Meters.retrieve`."""
        return Meter.from_dict(await self._client.send(rq.meter_request("GET", meter_id)))

    async def archive(self, meter_id: str) -> None:
        """Async :meth:`Meters.archive`."""
        await self._client.send(rq.meter_request("DELETE", meter_id))

    async def unarchive(self, meter_id: str) -> None:
        """Async :meth:`Meters.unarchive`."""
        await self._client.send(rq.meter_request("POST", meter_id, "/unarchive"))


class Credits:
    """``client.credits``: credit entitlements and customers' credit balances."""

    def __init__(self, client: DodoClient) -> None:
        self._client = client

    def create_entitlement(
        self,
        *,
        name: str,
        unit: str,
        precision: int = 2,
        currency: str | None = None,
        price_per_unit: Decimal | str | None = None,
        overage_enabled: bool = False,
        overage_limit: Decimal | str | None = None,
        rollover_enabled: bool = False,
        description: str | None = None,
        expires_after_days: int | None = None,
        rollover_percentage: int | None = None,
        max_rollover_count: int | None = None,
        rollover_timeframe_count: int | None = None,
        rollover_timeframe_interval: TimeInterval | None = None,
        overage_behavior: OverageBehavior | None = None,
    ) -> CreditEntitlement:
        """Create a credit entitlement (a fiat currency or a custom unit of credits).

        Grants expire ``expires_after_days`` after they are made (never when ``None``). With
        ``rollover_enabled``, ``rollover_percentage`` % (0 to 100) of what is left at a
        billing cycle's end rolls over, at most ``max_rollover_count`` times, lasting
        ``rollover_timeframe_count`` times ``rollover_timeframe_interval`` (``Day``, ``Week``,
        ``Month``, ``Year``). ``overage_behavior`` says what happens to the overage at the
        cycle's end: ``forgive_at_reset``, ``invoice_at_billing``, ``carry_deficit`` or
        ``carry_deficit_auto_repay``. Bad values raise ``ValueError`` naming the setting.
        """
        request = rq.create_entitlement_request(
            name=name,
            unit=unit,
            precision=precision,
            currency=currency,
            price_per_unit=price_per_unit,
            overage_enabled=overage_enabled,
            overage_limit=overage_limit,
            rollover_enabled=rollover_enabled,
            description=description,
            settings={
                "expires_after_days": expires_after_days,
                "rollover_percentage": rollover_percentage,
                "max_rollover_count": max_rollover_count,
                "rollover_timeframe_count": rollover_timeframe_count,
                "rollover_timeframe_interval": rollover_timeframe_interval,
                "overage_behavior": overage_behavior,
            },
        )
        return CreditEntitlement.from_dict(self._client.send(request))

    def create_ledger_entry(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        amount: Decimal | str | int,
        entry_type: Literal["credit", "debit"] = "credit",
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreditLedgerEntry:
        """Grant (``credit``) or take away (``debit``) credits on a customer's balance."""
        request = rq.ledger_entry_request(
            credit_entitlement_id,
            customer_id,
            amount=amount,
            entry_type=entry_type,
            reason=reason,
            idempotency_key=idempotency_key,
        )
        return CreditLedgerEntry.from_dict(self._client.send(request))

    def entitlement(self, credit_entitlement_id: str) -> CreditEntitlement:
        """One credit entitlement, with its overage and rollover settings."""
        request = rq.entitlement_request(credit_entitlement_id)
        return CreditEntitlement.from_dict(self._client.send(request))

    def balance(self, credit_entitlement_id: str, customer_id: str) -> CreditBalance:
        """A customer's balance of one entitlement (``NotFoundError`` if it has none)."""
        request = rq.balance_request(credit_entitlement_id, customer_id)
        return CreditBalance.from_dict(self._client.send(request))

    def balances(
        self,
        credit_entitlement_id: str,
        *,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[CreditBalance]:
        """Iterate over every customer's balance of one entitlement."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _pages(
            self._client.send,
            lambda n: rq.list_balances_request(
                credit_entitlement_id, page_number=n, page_size=page_size
            ),
            CreditBalance.from_dict,
            page_size,
            limit,
        )

    def grants(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        status: GrantStatus | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[CreditGrant]:
        """Iterate over a customer's grants of one entitlement, oldest first (``status``:
        only ``active``, ``expired`` or ``depleted`` ones)."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        rq.check_grant_status(status)
        return _pages(
            self._client.send,
            lambda n: rq.list_grants_request(
                credit_entitlement_id,
                customer_id,
                page_number=n,
                page_size=page_size,
                status=status,
            ),
            CreditGrant.from_dict,
            page_size,
            limit,
        )

    def ledger(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        transaction_type: LedgerTransactionType | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[CreditLedgerEntry]:
        """Iterate over a customer's ledger of one entitlement, newest first, optionally
        of one ``transaction_type`` and created between ``start`` and ``end`` (inclusive)."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        rq.check_transaction_type(transaction_type)
        return _pages(
            self._client.send,
            lambda n: rq.list_ledger_request(
                credit_entitlement_id,
                customer_id,
                page_number=n,
                page_size=page_size,
                transaction_type=transaction_type,
                start=start,
                end=end,
            ),
            CreditLedgerEntry.from_dict,
            page_size,
            limit,
        )


class AsyncCredits:
    """``client.credits`` of :class:`AsyncDodoClient`."""

    def __init__(self, client: AsyncDodoClient) -> None:
        self._client = client

    async def create_entitlement(
        self,
        *,
        name: str,
        unit: str,
        precision: int = 2,
        currency: str | None = None,
        price_per_unit: Decimal | str | None = None,
        overage_enabled: bool = False,
        overage_limit: Decimal | str | None = None,
        rollover_enabled: bool = False,
        description: str | None = None,
        expires_after_days: int | None = None,
        rollover_percentage: int | None = None,
        max_rollover_count: int | None = None,
        rollover_timeframe_count: int | None = None,
        rollover_timeframe_interval: TimeInterval | None = None,
        overage_behavior: OverageBehavior | None = None,
    ) -> CreditEntitlement:
        """Async :meth:`Credits.create_entitlement`."""
        request = rq.create_entitlement_request(
            name=name,
            unit=unit,
            precision=precision,
            currency=currency,
            price_per_unit=price_per_unit,
            overage_enabled=overage_enabled,
            overage_limit=overage_limit,
            rollover_enabled=rollover_enabled,
            description=description,
            settings={
                "expires_after_days": expires_after_days,
                "rollover_percentage": rollover_percentage,
                "max_rollover_count": max_rollover_count,
                "rollover_timeframe_count": rollover_timeframe_count,
                "rollover_timeframe_interval": rollover_timeframe_interval,
                "overage_behavior": overage_behavior,
            },
        )
        return CreditEntitlement.from_dict(await self._client.send(request))

    async def create_ledger_entry(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        amount: Decimal | str | int,
        entry_type: Literal["credit", "debit"] = "credit",
        reason: str | None = None,
        idempotency_key: str | None = None,
    ) -> CreditLedgerEntry:
        """Async :meth:`Credits.create_ledger_entry`."""
        request = rq.ledger_entry_request(
            credit_entitlement_id,
            customer_id,
            amount=amount,
            entry_type=entry_type,
            reason=reason,
            idempotency_key=idempotency_key,
        )
        return CreditLedgerEntry.from_dict(await self._client.send(request))

    async def entitlement(self, credit_entitlement_id: str) -> CreditEntitlement:
        """Async :meth:`Credits.entitlement`."""
        request = rq.entitlement_request(credit_entitlement_id)
        return CreditEntitlement.from_dict(await self._client.send(request))

    async def balance(self, credit_entitlement_id: str, customer_id: str) -> CreditBalance:
        """Async :meth:`Credits.balance`."""
        request = rq.balance_request(credit_entitlement_id, customer_id)
        return CreditBalance.from_dict(await self._client.send(request))

    def balances(
        self,
        credit_entitlement_id: str,
        *,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[CreditBalance]:
        """Async :meth:`Credits.balances`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _apages(
            self._client.send,
            lambda n: rq.list_balances_request(
                credit_entitlement_id, page_number=n, page_size=page_size
            ),
            CreditBalance.from_dict,
            page_size,
            limit,
        )

    def grants(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        status: GrantStatus | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[CreditGrant]:
        """Async :meth:`Credits.grants`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        rq.check_grant_status(status)
        return _apages(
            self._client.send,
            lambda n: rq.list_grants_request(
                credit_entitlement_id,
                customer_id,
                page_number=n,
                page_size=page_size,
                status=status,
            ),
            CreditGrant.from_dict,
            page_size,
            limit,
        )

    def ledger(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        *,
        transaction_type: LedgerTransactionType | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[CreditLedgerEntry]:
        """Async :meth:`Credits.ledger`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        rq.check_transaction_type(transaction_type)
        return _apages(
            self._client.send,
            lambda n: rq.list_ledger_request(
                credit_entitlement_id,
                customer_id,
                page_number=n,
                page_size=page_size,
                transaction_type=transaction_type,
                start=start,
                end=end,
            ),
            CreditLedgerEntry.from_dict,
            page_size,
            limit,
        )


class Webhooks:
    """``client.webhooks``: register, list, change and remove webhook endpoints, and read
    their signing secrets."""

    def __init__(self, client: DodoClient) -> None:
        self._client = client

    def create(
        self,
        url: str,
        *,
        description: str | None = None,
        disabled: bool | None = None,
        filter_types: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Register an endpoint (``url``: http or https) that receives the event types in
        ``filter_types`` (every type when empty or ``None``), sent with ``headers``."""
        request = rq.create_webhook_request(
            url=url,
            description=description,
            disabled=disabled,
            filter_types=filter_types,
            headers=headers,
            metadata=metadata,
            rate_limit=rate_limit,
            idempotency_key=idempotency_key,
        )
        return WebhookEndpoint.from_dict(self._client.send(request))

    def list(
        self, *, page_size: int = rq.MAX_WEBHOOK_PAGE, limit: int | None = None
    ) -> Iterator[WebhookEndpoint]:
        """Iterate over every endpoint, page by page (the API's ``iterator`` cursor)."""
        rq.check_webhook_page(page_size)
        _check_limit(limit)
        return _cursor_pages(self._client.send, page_size, limit)

    def retrieve(self, webhook_id: str) -> WebhookEndpoint:
        """One endpoint by id (``NotFoundError`` if there is none)."""
        return WebhookEndpoint.from_dict(self._client.send(rq.webhook_request("GET", webhook_id)))

    def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        disabled: bool | None = None,
        filter_types: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
    ) -> WebhookEndpoint:
        """Change the fields given (the others keep their values); return the endpoint."""
        request = rq.update_webhook_request(
            webhook_id,
            url=url,
            description=description,
            disabled=disabled,
            filter_types=filter_types,
            metadata=metadata,
            rate_limit=rate_limit,
        )
        return WebhookEndpoint.from_dict(self._client.send(request))

    def delete(self, webhook_id: str) -> None:
        """Remove an endpoint: nothing more is delivered to it."""
        self._client.send(rq.webhook_request("DELETE", webhook_id))

    def secret(self, webhook_id: str) -> str:
        """The endpoint's signing secret (``whsec_...``), to verify its deliveries with
        [`Webhook`][dodo_ingest.client.webhooks.Webhook]."""
        return rq.decode_secret(self._client.send(rq.webhook_request("GET", webhook_id, "/secret")))


class AsyncWebhooks:
    """``client.webhooks`` of :class:`AsyncDodoClient`."""

    def __init__(self, client: AsyncDodoClient) -> None:
        self._client = client

    async def create(
        self,
        url: str,
        *,
        description: str | None = None,
        disabled: bool | None = None,
        filter_types: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
        idempotency_key: str | None = None,
    ) -> WebhookEndpoint:
        """Async :meth:`Webhooks.create`."""
        request = rq.create_webhook_request(
            url=url,
            description=description,
            disabled=disabled,
            filter_types=filter_types,
            headers=headers,
            metadata=metadata,
            rate_limit=rate_limit,
            idempotency_key=idempotency_key,
        )
        return WebhookEndpoint.from_dict(await self._client.send(request))

    def list(
        self, *, page_size: int = rq.MAX_WEBHOOK_PAGE, limit: int | None = None
    ) -> AsyncIterator[WebhookEndpoint]:
        """Async :meth:`Webhooks.list`: use with ``async for``."""
        rq.check_webhook_page(page_size)
        _check_limit(limit)
        return _acursor_pages(self._client.send, page_size, limit)

    async def retrieve(self, webhook_id: str) -> WebhookEndpoint:
        """Async :meth:`Webhooks.retrieve`."""
        data = await self._client.send(rq.webhook_request("GET", webhook_id))
        return WebhookEndpoint.from_dict(data)

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        disabled: bool | None = None,
        filter_types: Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        rate_limit: int | None = None,
    ) -> WebhookEndpoint:
        """Async :meth:`Webhooks.update`."""
        request = rq.update_webhook_request(
            webhook_id,
            url=url,
            description=description,
            disabled=disabled,
            filter_types=filter_types,
            metadata=metadata,
            rate_limit=rate_limit,
        )
        return WebhookEndpoint.from_dict(await self._client.send(request))

    async def delete(self, webhook_id: str) -> None:
        """Async :meth:`Webhooks.delete`."""
        await self._client.send(rq.webhook_request("DELETE", webhook_id))

    async def secret(self, webhook_id: str) -> str:
        """Async :meth:`Webhooks.secret`."""
        data = await self._client.send(rq.webhook_request("GET", webhook_id, "/secret"))
        return rq.decode_secret(data)


class Subscriptions:
    """``client.subscriptions``: the usage a subscription's meters recorded, per period."""

    def __init__(self, client: DodoClient) -> None:
        self._client = client

    def usage_history(
        self,
        subscription_id: str,
        *,
        meter_id: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[UsagePeriod]:
        """Iterate over the subscription's billing periods (optionally between ``start``
        and ``end``, inclusive), each with its meters' usage (only ``meter_id``'s)."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _pages(
            self._client.send,
            lambda n: rq.usage_history_request(
                subscription_id,
                page_number=n,
                page_size=page_size,
                meter_id=meter_id,
                start=start,
                end=end,
            ),
            UsagePeriod.from_dict,
            page_size,
            limit,
        )


class AsyncSubscriptions:
    """``client.subscriptions`` of :class:`AsyncDodoClient`."""

    def __init__(self, client: AsyncDodoClient) -> None:
        self._client = client

    def usage_history(
        self,
        subscription_id: str,
        *,
        meter_id: str | None = None,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        page_size: int = rq.DEFAULT_PAGE_SIZE,
        limit: int | None = None,
    ) -> AsyncIterator[UsagePeriod]:
        """Async :meth:`Subscriptions.usage_history`: use with ``async for``."""
        rq.check_page_size(page_size)
        _check_limit(limit)
        return _apages(
            self._client.send,
            lambda n: rq.usage_history_request(
                subscription_id,
                page_number=n,
                page_size=page_size,
                meter_id=meter_id,
                start=start,
                end=end,
            ),
            UsagePeriod.from_dict,
            page_size,
            limit,
        )
