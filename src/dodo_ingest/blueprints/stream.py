"""Bill by bytes streamed: audio, video, downloads, proxied responses.

Two forms, both emitting the metadata key ``bytes`` like the TypeScript blueprint:

- :func:`track_stream_bytes` sends one event for a byte count you measured yourself.
- :func:`meter_stream` measures for you. It is a context manager (``with`` or ``async with``)
  yielding a :class:`StreamMeter` that counts what flows through ``meter.wrap(...)`` (an
  iterable, an async iterable, or a sync or async file-like object) or ``meter.add(n)``, and
  emits one event with the total when the block ends, also when it raised or the consumer
  stopped early.

Counting never copies data: ``bytes``/``bytearray`` are counted with ``len``, ``memoryview`` and
other buffers with ``nbytes``, ``str`` by its encoded length (UTF-8 unless ``encoding`` says
otherwise; ASCII text is counted without encoding it).

For long streams, ``partial_every_bytes`` / ``partial_every_seconds`` emit partial events as the
stream goes, so a crash loses at most one interval. Every event of a stream has the id
``<stream_id>:<sequence>`` (1, 2, ...) and the events' ``bytes`` add up exactly to the total, so
replaying a stream id cannot bill twice.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from ..client._errors import EventValidationError
from ..client._models import MetadataValue
from ._common import (
    AsyncCountingFile,
    CountingFile,
    EventSink,
    FailureCounter,
    byte_length,
    check_base_id,
    check_customer_id,
    check_encoding,
    check_event_name,
    check_metadata,
    check_positive,
    derive_event_id,
    error_metadata,
    is_async_file,
    new_base_id,
)

__all__ = ["StreamMeter", "meter_stream", "track_stream_bytes"]

T = TypeVar("T")

_RESERVED = ("bytes", "streamId", "sequence", "final", "totalBytes", "status", "errorType")


def _check_bytes(value: object, field: str = "bytes") -> int:
    if type(value) is not int or value < 0:
        raise EventValidationError(field, f"must be an integer >= 0, got {value!r}")
    return value


def track_stream_bytes(
    ingestion: EventSink,
    customer_id: str,
    bytes: int,
    metadata: Mapping[str, MetadataValue] | None = None,
    event_name: str | None = None,
    *,
    event_id: str | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Track one event with ``metadata["bytes"] = bytes``; returns its ``event_id``.

    ``bytes`` is an integer >= 0; ``metadata`` may not use the key ``bytes``. ``event_name``
    defaults to the pipeline's. Bad input raises ``EventValidationError`` (nothing is queued).
    """
    count = _check_bytes(bytes)
    extra = check_metadata(metadata, ("bytes",))
    return ingestion.track(
        check_customer_id(customer_id),
        check_event_name(event_name),
        {"bytes": count, **extra},
        event_id=event_id,
        timestamp=timestamp,
    )


class StreamMeter(FailureCounter):
    """Counts the bytes of one stream and emits its usage events (see :func:`meter_stream`).

    ``total`` is the number of bytes counted so far, ``stream_id`` the base of the event ids,
    ``tracking_errors`` how many events could not be tracked (each is logged on the
    ``dodo_ingest`` logger). One meter counts one stream: feed it from one thread or task at a
    time.
    """

    def __init__(
        self,
        ingestion: EventSink,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        stream_id: str | None = None,
        partial_every_bytes: int | None = None,
        partial_every_seconds: float | None = None,
        encoding: str = "utf-8",
    ) -> None:
        self._ingestion = ingestion
        self._customer_id = check_customer_id(customer_id)
        self._event_name = check_event_name(event_name, ingestion)
        self._metadata = check_metadata(metadata, _RESERVED)
        self.stream_id = (
            new_base_id("stream") if stream_id is None else check_base_id(stream_id, "stream_id")
        )
        if partial_every_bytes is not None:
            check_positive(partial_every_bytes, "partial_every_bytes")
        self._every_seconds = check_positive(partial_every_seconds, "partial_every_seconds")
        self._encoding = check_encoding(encoding)
        self._partials = partial_every_bytes is not None or partial_every_seconds is not None
        self._every_bytes = partial_every_bytes if partial_every_bytes is not None else 1 << 62
        # Counting looks further only when the total reaches ``_threshold`` (the next partial
        # by size; 0 once closed) or when partials are timed.
        self._threshold = self._every_bytes
        self._timed = partial_every_seconds is not None
        self._next_due = float("inf")
        self._total = 0
        self._emitted = 0
        self._attempted = 0
        self._sequence = 0
        self._closed = False

    @property
    def total(self) -> int:
        """Bytes counted so far."""
        return self._total

    @property
    def closed(self) -> bool:
        """True once the final event was emitted."""
        return self._closed

    def add(self, n: int) -> None:
        """Count ``n`` bytes (an integer >= 0, else ``EventValidationError``)."""
        self._count(_check_bytes(n, "n"))

    def count(self, chunk: T) -> T:
        """Count ``chunk`` (bytes-like or ``str``) and return it unchanged: ``yield meter.count(c)``."""
        self._count(self._length(chunk))
        return chunk

    def wrap(self, source: Any, *, finish: bool = False) -> Any:
        """Return ``source`` metered: the same chunks, counted as they pass.

        ``source`` may be an iterable or async iterable of chunks (``bytes``, ``bytearray``,
        ``memoryview``, ``str``) — the result is an iterator / async iterator of the same chunks
        — or a file-like object (anything with ``read`` or ``write``), returned as a proxy that
        counts what is read from or written to it. An async file-like object (one with
        ``__aiter__``, or whose ``read``/``write`` is a coroutine function: ``asyncio.StreamReader``,
        aiofiles, Starlette's ``UploadFile``) gets an async proxy: ``await proxy.read()``,
        ``async for``. A wrapped iterator closes the source when it is closed early. For an httpx2 response wrap ``response.iter_bytes()`` (decoded body)
        or ``response.iter_raw()`` (bytes on the wire), or their ``aiter_`` forms.

        ``finish=True`` emits the final event when the wrapped iterator ends (exhausted, closed
        or failed) instead of at the end of a ``with`` block: use it for bodies consumed after
        your code returns, such as Starlette's ``StreamingResponse``; an async file-like object
        that supports ``async for`` is then wrapped as an async iterator of its chunks.
        Data that cannot be counted is passed on and counted in ``tracking_errors``.
        """
        if isinstance(source, (str, bytes, bytearray, memoryview)):
            raise TypeError("wrap() takes an iterable of chunks or a file; use add() or count()")
        if hasattr(source, "iter_bytes") or hasattr(source, "aiter_bytes"):
            raise TypeError("wrap an HTTP response's chunks: meter.wrap(response.iter_bytes())")
        if is_async_file(source):
            if not finish:
                return AsyncCountingFile(source, self._count, self._counting_failed, self._encoding)
            if hasattr(source, "__aiter__"):
                return self._aiterate(source, finish)
        if hasattr(source, "read") or hasattr(source, "write"):
            if finish:
                raise TypeError("finish=True applies to iterables, not file objects")
            return CountingFile(source, self._count, self._counting_failed, self._encoding)
        if hasattr(source, "__aiter__"):
            return self._aiterate(source, finish)
        if hasattr(source, "__iter__"):
            return self._iterate(source, finish)
        raise TypeError(f"wrap() cannot meter {type(source).__name__!r}")

    def close(self, error: BaseException | None = None) -> None:
        """Emit the final event (status ``ok``, or ``error`` with ``errorType``); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._emit(final=True, error=error)
        self._threshold = 0

    def __enter__(self) -> StreamMeter:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exc)

    async def __aenter__(self) -> StreamMeter:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(exc)

    def _start(self) -> None:
        if self._every_seconds is not None and self._next_due == float("inf"):
            self._next_due = time.monotonic() + self._every_seconds

    def _length(self, chunk: object) -> int:
        try:
            return byte_length(chunk, self._encoding)
        except TypeError as exc:
            self._counting_failed(exc)
            return 0

    def _counting_failed(self, exc: Exception) -> None:
        self._tracking_failed(f"stream {self.stream_id}", exc)

    def _count(self, n: int) -> None:
        self._total += n
        if self._total >= self._threshold or self._timed:
            self._after_count()

    def _after_count(self) -> None:
        if (
            self._closed
            or self._total >= self._threshold
            or (self._timed and time.monotonic() >= self._next_due)
        ):
            self._emit(final=False, error=None)

    def _iterate(self, source: Iterable[Any], finish: bool) -> Iterator[Any]:
        self._start()
        iterator = iter(source)
        error: BaseException | None = None
        try:
            partials, timed, threshold = self._partials, self._timed, self._threshold
            for chunk in iterator:  # the hot loop: count without copying, pass on
                kind = type(chunk)
                if kind is bytes or kind is bytearray:
                    self._total += len(chunk)
                elif kind is memoryview:
                    self._total += chunk.nbytes
                else:
                    self._total += self._length(chunk)
                if partials and (timed or self._total >= threshold):
                    self._after_count()
                    threshold = self._threshold
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                if self._closed:
                    self._after_count()  # reports bytes counted after the meter closed
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            finally:
                if finish:
                    self.close(error)

    async def _aiterate(self, source: AsyncIterable[Any], finish: bool) -> AsyncIterator[Any]:
        self._start()
        iterator = source.__aiter__()
        error: BaseException | None = None
        try:
            partials, timed, threshold = self._partials, self._timed, self._threshold
            async for chunk in iterator:  # the hot loop: count without copying, pass on
                kind = type(chunk)
                if kind is bytes or kind is bytearray:
                    self._total += len(chunk)
                elif kind is memoryview:
                    self._total += chunk.nbytes
                else:
                    self._total += self._length(chunk)
                if partials and (timed or self._total >= threshold):
                    self._after_count()
                    threshold = self._threshold
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                if self._closed:
                    self._after_count()  # reports bytes counted after the meter closed
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            finally:
                if finish:
                    self.close(error)

    def _emit(self, *, final: bool, error: BaseException | None) -> None:
        total = self._total
        if self._closed and not final:
            if total > self._attempted:
                self._attempted = total
                self._tracking_failed(
                    f"stream {self.stream_id}", RuntimeError("bytes counted after the meter closed")
                )
            return
        self._attempted = total
        self._threshold = total + self._every_bytes
        sequence = self._sequence + 1
        metadata: dict[str, MetadataValue] = {"bytes": total - self._emitted}
        metadata["streamId"] = self.stream_id
        if self._partials:
            metadata.update(sequence=sequence, final=final, totalBytes=total)
        metadata.update(error_metadata(error) if final else {"status": "running"})
        metadata.update(self._metadata)
        try:
            self._ingestion.track(
                self._customer_id,
                self._event_name,
                metadata,
                event_id=derive_event_id(self.stream_id, sequence),
            )
        except Exception as exc:
            self._tracking_failed(f"stream {self.stream_id}", exc)
        else:
            self._sequence = sequence
            self._emitted = total
        if self._every_seconds is not None:
            self._next_due = time.monotonic() + self._every_seconds


def meter_stream(
    ingestion: EventSink,
    customer_id: str,
    event_name: str | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
    *,
    stream_id: str | None = None,
    partial_every_bytes: int | None = None,
    partial_every_seconds: float | None = None,
    encoding: str = "utf-8",
) -> StreamMeter:
    """Meter the bytes of one stream; use as ``with``/``async with`` (or ``wrap(finish=True)``).

    On exit one final event is tracked with ``bytes`` (the bytes not yet billed), ``streamId``,
    ``status`` (``ok``, or ``error`` plus ``errorType`` when the block raised; the exception
    propagates unchanged) and your ``metadata``.

    ``partial_every_bytes`` / ``partial_every_seconds``: also emit a partial event (``status``
    ``running``) whenever that many bytes were counted / seconds passed since the last event
    (checked as bytes arrive). With partials, events also carry ``sequence``, ``final`` and
    ``totalBytes`` (cumulative); their ``bytes`` sum to the total exactly.

    ``stream_id`` (default: random) is the base of the event ids ``<stream_id>:<n>``; pass a
    stable one (e.g. your session id) to make a re-run of the same stream idempotent.
    ``encoding`` is how ``str`` chunks are counted (default UTF-8).

    Invalid settings raise ``EventValidationError``/``ConfigurationError`` here; a failure to
    track an event later is logged and counted in ``tracking_errors``, never raised.
    """
    return StreamMeter(
        ingestion,
        customer_id,
        event_name,
        metadata,
        stream_id=stream_id,
        partial_every_bytes=partial_every_bytes,
        partial_every_seconds=partial_every_seconds,
        encoding=encoding,
    )
