"""Pieces shared by the stream, time-range, API-gateway and object-storage blueprints.

The blueprints depend on the delivery pipeline only through :class:`EventSink` (the
``track`` method of :class:`dodo_ingest.delivery.Ingestion`), check their settings when they are
built, and turn every failure that happens while measuring into a log line on the
``dodo_ingest`` logger plus a counter, never into an exception in the user's code.
"""

from __future__ import annotations

import codecs
import inspect
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from ..client._errors import ConfigurationError, EventValidationError
from ..client._models import MAX_METADATA_KEYS, MetadataValue, validate_metadata
from ..delivery._ids import random_bits

__all__ = [
    "AsyncCountingFile",
    "AsyncReadable",
    "CountingFile",
    "EventSink",
    "byte_length",
    "check_base_id",
    "check_customer_id",
    "check_encoding",
    "check_event_name",
    "check_metadata",
    "check_positive",
    "derive_event_id",
    "error_metadata",
    "is_async_file",
    "logger",
    "new_base_id",
]

logger = logging.getLogger("dodo_ingest")

MAX_BASE_ID_LENGTH = 200
"""Longest stream/job id accepted; event ids add ``:<sequence>`` to it."""

_ASCII_COMPATIBLE = frozenset(("utf-8", "ascii", "latin-1", "iso8859-1", "cp1252"))


class EventSink(Protocol):
    """What the blueprints need from the delivery pipeline: ``Ingestion.track``.

    ``track`` validates the event synchronously (raising ``EventValidationError``), queues it
    without doing I/O and returns its ``event_id``.
    """

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        *,
        event_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> str: ...


class AsyncReadable(Protocol):
    """An async binary source: ``await source.read(n)`` returns bytes (``asyncio.StreamReader``,
    Starlette's ``UploadFile``, aiofiles)."""

    async def read(self, n: int = -1, /) -> bytes: ...


class FailureCounter:
    """Mixin: counts and logs tracking failures instead of raising them into user code."""

    tracking_errors: int = 0

    def _tracking_failed(self, what: str, exc: BaseException) -> None:
        self.tracking_errors += 1
        logger.warning("%s: tracking failed (%s: %s)", what, type(exc).__name__, exc)


def check_customer_id(value: object, field: str = "customer_id") -> str:
    """Return ``value`` if it is a non-empty string, else raise ``EventValidationError``."""
    if type(value) is not str or not value:
        raise EventValidationError(field, f"must be a non-empty string, got {value!r}")
    return value


def check_event_name(value: object, ingestion: object = None) -> str | None:
    """``None`` (the pipeline's default event name) or a non-empty string.

    With ``ingestion`` given, ``None`` is refused when the pipeline says it has no default
    (an ``event_name`` attribute that is ``None``), so a blueprint that emits later fails now.
    """
    if value is None:
        if getattr(ingestion, "event_name", "") is None:
            raise EventValidationError(
                "event_name", "required: pass event_name= here or to Ingestion(event_name=...)"
            )
        return None
    return check_customer_id(value, "event_name")


def check_base_id(value: object, field: str) -> str:
    """A stream/job id: non-empty string of at most 200 characters."""
    text = check_customer_id(value, field)
    if len(text) > MAX_BASE_ID_LENGTH:
        raise EventValidationError(
            field, f"must be at most {MAX_BASE_ID_LENGTH} characters, got {len(text)}"
        )
    return text


def check_positive(value: float | None, field: str) -> float | None:
    """``None`` or a finite number > 0, else ``ConfigurationError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e18:
        raise ConfigurationError(f"{field}: must be a number > 0, got {value!r}")
    return value


def check_encoding(encoding: str) -> str:
    """The canonical name of a text encoding, or ``ConfigurationError`` if Python lacks it."""
    try:
        return codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise ConfigurationError(f"encoding: unknown text encoding {encoding!r}") from None


def check_metadata(
    metadata: Mapping[str, object] | None, reserved: Collection[str]
) -> dict[str, MetadataValue]:
    """Validate user metadata given at construction.

    Raises ``EventValidationError`` when it breaks the API's limits, uses a key the blueprint
    sets itself (``reserved``), or leaves no room for those keys within the 50-key limit.
    """
    if metadata is None:
        return {}
    checked = validate_metadata(metadata)
    clash = sorted(set(checked) & set(reserved))
    if clash:
        raise EventValidationError(
            f"metadata.{clash[0]}", f"is set by the blueprint; reserved keys: {', '.join(reserved)}"
        )
    room = MAX_METADATA_KEYS - len(reserved)
    if len(checked) > room:
        raise EventValidationError(
            "metadata",
            f"at most {room} keys allowed next to the blueprint's own, got {len(checked)}",
        )
    return checked


def new_base_id(prefix: str) -> str:
    """A fresh random stream/job id such as ``stream_3f2a...``: 128 random bits from the
    generator of event ids, which ``random.seed()`` does not touch and a forked child reseeds."""
    return f"{prefix}_{random_bits(128):032x}"


def derive_event_id(base_id: str, sequence: int) -> str:
    """The event id of the ``sequence``-th event of a stream/job: ``<base_id>:<sequence>``.

    Deterministic, so replaying the same stream/job id cannot bill twice.
    """
    return f"{base_id}:{sequence}"


def error_metadata(error: BaseException | None) -> dict[str, MetadataValue]:
    """``{"status": "ok"}``, or ``{"status": "error", "errorType": <exception class>}``."""
    if error is None:
        return {"status": "ok"}
    return {"status": "error", "errorType": type(error).__qualname__}


def byte_length(chunk: object, encoding: str = "utf-8") -> int:
    """Number of bytes in ``chunk`` without copying it.

    ``bytes``/``bytearray``: ``len``; ``memoryview`` and other buffer objects: ``nbytes``;
    ``str``: its length once encoded with ``encoding`` (ASCII text under an ASCII-compatible
    encoding is counted without encoding it). Raises ``TypeError`` for anything else.
    """
    kind = type(chunk)
    if kind is bytes or kind is bytearray:
        return len(chunk)  # type: ignore[arg-type]
    if kind is memoryview:
        return chunk.nbytes  # type: ignore[attr-defined, no-any-return]
    if isinstance(chunk, str):
        if encoding in _ASCII_COMPATIBLE and chunk.isascii():
            return len(chunk)
        return len(chunk.encode(encoding))
    with memoryview(chunk) as view:  # type: ignore[arg-type]
        return view.nbytes


def is_async_file(source: object) -> bool:
    """True for an async file-like object: one with ``__aiter__`` and ``read`` or ``write``
    (``asyncio.StreamReader``, aiofiles), or whose ``read`` or ``write`` is a coroutine
    function (Starlette's ``UploadFile``)."""
    if hasattr(source, "__aiter__") and (hasattr(source, "read") or hasattr(source, "write")):
        return True
    return inspect.iscoroutinefunction(
        getattr(source, "read", None)
    ) or inspect.iscoroutinefunction(getattr(source, "write", None))


class _CountingProxy:
    """What the sync and async counting proxies share: counting that never raises, delegation.

    ``on_bytes`` receives every byte count; data that cannot be counted is passed on unchanged
    and the error handed to ``on_error``.
    """

    def __init__(
        self,
        raw: Any,
        on_bytes: Callable[[int], None],
        on_error: Callable[[Exception], None],
        encoding: str = "utf-8",
    ) -> None:
        self._raw = raw
        self._on_bytes = on_bytes
        self._on_error = on_error
        self._encoding = encoding

    @property
    def raw_file(self) -> Any:
        """The wrapped file object."""
        return self._raw

    def _count(self, data: Any) -> Any:
        """Count ``data`` and return it unchanged."""
        try:
            if data:
                self._on_bytes(byte_length(data, self._encoding))
        except Exception as exc:
            self._on_error(exc)
        return data

    def _count_reported(self, n: Any, data: Any = b"") -> Any:
        """Count the ``n`` bytes a ``write`` or ``readinto`` reported (the length of ``data``
        for text or when ``n`` is not a number) and return ``n``."""
        try:
            size = n
            if isinstance(data, str) or not isinstance(n, int):
                size = byte_length(data, self._encoding) if data else 0
            if size:
                self._on_bytes(size)
        except Exception as exc:
            self._on_error(exc)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class CountingFile(_CountingProxy):
    """A proxy of a binary or text file-like object that reports every byte read or written.

    ``read``, ``read1``, ``readinto``, ``readinto1``, ``readline``, ``readlines``, iteration,
    ``write`` and ``writelines`` are counted; everything else is delegated unchanged.
    """

    def read(self, *args: Any) -> Any:
        """Read like the wrapped file, counting what was returned."""
        return self._count(self._raw.read(*args))

    def read1(self, *args: Any) -> Any:
        """``read1`` of the wrapped file, counted."""
        return self._count(self._raw.read1(*args))

    def readline(self, *args: Any) -> Any:
        """``readline`` of the wrapped file, counted."""
        return self._count(self._raw.readline(*args))

    def readlines(self, *args: Any) -> list[Any]:
        """``readlines`` of the wrapped file, counted."""
        lines: list[Any] = self._raw.readlines(*args)
        for line in lines:
            self._count(line)
        return lines

    def readinto(self, buffer: Any) -> Any:
        """``readinto`` of the wrapped file; counts the number of bytes it reports."""
        return self._count_reported(self._raw.readinto(buffer))

    def readinto1(self, buffer: Any) -> Any:
        """``readinto1`` of the wrapped file; counts the number of bytes it reports."""
        return self._count_reported(self._raw.readinto1(buffer))

    def write(self, data: Any) -> Any:
        """Write through; counts the bytes written (text: the encoded length)."""
        return self._count_reported(self._raw.write(data), data)

    def writelines(self, lines: Iterable[Any]) -> None:
        """Write every line through ``write``, counted."""
        for line in lines:
            self.write(line)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self._count(next(self._raw))

    def __enter__(self) -> CountingFile:
        self._raw.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> Any:
        return self._raw.__exit__(*exc_info)


class AsyncCountingFile(_CountingProxy):
    """A proxy of an async file-like object (``asyncio.StreamReader``, aiofiles, Starlette's
    ``UploadFile``) that reports every byte read or written.

    The awaitable ``read``, ``read1``, ``readline``, ``readexactly``, ``readuntil``,
    ``readlines``, ``write`` and ``writelines``, and ``async for`` are counted; everything else
    is delegated unchanged.
    """

    _iterator: Any = None

    async def read(self, *args: Any) -> Any:
        """Read like the wrapped file, counting what was returned."""
        return self._count(await self._raw.read(*args))

    async def read1(self, *args: Any) -> Any:
        """``read1`` of the wrapped file, counted."""
        return self._count(await self._raw.read1(*args))

    async def readline(self, *args: Any) -> Any:
        """``readline`` of the wrapped file, counted."""
        return self._count(await self._raw.readline(*args))

    async def readexactly(self, n: int) -> Any:
        """``readexactly`` of the wrapped stream, counted."""
        return self._count(await self._raw.readexactly(n))

    async def readuntil(self, *args: Any) -> Any:
        """``readuntil`` of the wrapped stream, counted."""
        return self._count(await self._raw.readuntil(*args))

    async def readlines(self, *args: Any) -> list[Any]:
        """``readlines`` of the wrapped file, counted."""
        lines: list[Any] = await self._raw.readlines(*args)
        for line in lines:
            self._count(line)
        return lines

    async def write(self, data: Any) -> Any:
        """Write through; counts the bytes written (text: the encoded length)."""
        return self._count_reported(await self._raw.write(data), data)

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write every line through ``write``, counted."""
        for line in lines:
            await self.write(line)

    def __aiter__(self) -> AsyncCountingFile:
        self._iterator = aiter(self._raw)
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = aiter(self._raw)
        return self._count(await anext(self._iterator))

    async def __aenter__(self) -> AsyncCountingFile:
        await self._raw.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> Any:
        return await self._raw.__aexit__(*exc_info)
