"""Bill object storage: bytes uploaded to S3, GCS, Azure Blob or your own store.

- :func:`track_object_storage` sends one event with the metadata key ``bytes`` (as the
  TypeScript blueprint does) for a size you know.
- :func:`meter_upload` is a context manager around an upload from a file path or a file-like
  object. It finds the size without reading the data (the buffer size of a ``BytesIO``, or
  ``seek``/``tell``, a metadata lookup for a file); for a source that cannot tell its size (a
  pipe, a socket, a generator-backed stream, an async source such as ``asyncio.StreamReader``
  or Starlette's ``UploadFile``) it hands the uploader a proxy (sync or async, like the source)
  that counts the bytes as they are read, so the data is still read only once. When the block ends without an
  exception it tracks ``bytes``, ``operation`` and, when given, ``bucket`` and ``key``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from datetime import datetime
from types import TracebackType
from typing import IO, Any

from ..client._errors import EventValidationError
from ..client._models import MetadataValue
from ._common import (
    AsyncCountingFile,
    AsyncReadable,
    CountingFile,
    EventSink,
    FailureCounter,
    check_customer_id,
    check_event_name,
    check_metadata,
    is_async_file,
)

__all__ = ["UploadMeter", "meter_upload", "remaining_size", "track_object_storage"]

_RESERVED = ("bytes", "operation", "bucket", "key")


def track_object_storage(
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

    ``bytes`` is an integer >= 0; ``metadata`` (e.g. ``bucket``, ``key``, ``operation``) may
    not use the key ``bytes``. Bad input raises ``EventValidationError`` (nothing is queued).
    """
    if type(bytes) is not int or bytes < 0:
        raise EventValidationError("bytes", f"must be an integer >= 0, got {bytes!r}")
    extra = check_metadata(metadata, ("bytes",))
    return ingestion.track(
        check_customer_id(customer_id),
        check_event_name(event_name),
        {"bytes": bytes, **extra},
        event_id=event_id,
        timestamp=timestamp,
    )


def remaining_size(file: Any) -> int | None:
    """Bytes left to read in ``file`` from its current position, found without reading it.

    Uses the buffer of a ``BytesIO``, else ``seek``/``tell`` on seekable files (regular files,
    ``SpooledTemporaryFile`` such as FastAPI's ``UploadFile.file``, without rolling it over to
    disk); ``None`` when the size cannot be known (pipes, sockets, generators, async file-like
    objects).
    """
    if is_async_file(file):
        return None
    try:
        if isinstance(file, io.BytesIO):
            return file.getbuffer().nbytes - file.tell()
        if file.seekable():
            position = file.tell()
            end = file.seek(0, io.SEEK_END)
            file.seek(position)
            return int(max(0, end - position))
    except (AttributeError, OSError, ValueError):
        pass
    return None


class UploadMeter(FailureCounter):
    """One metered upload; see :func:`meter_upload`.

    ``file`` is what to hand the uploader, ``size`` the size known up front (``None`` when the
    source cannot tell it), ``bytes`` the bytes billed (known size, or bytes read so far),
    ``event_id`` the id of the tracked event once the block ended.
    """

    def __init__(
        self,
        ingestion: EventSink,
        customer_id: str,
        source: str | os.PathLike[str] | IO[bytes] | AsyncReadable,
        *,
        bucket: str | None,
        key: str | None,
        operation: str,
        metadata: Mapping[str, MetadataValue] | None,
        event_name: str | None,
        event_id: str | None,
    ) -> None:
        self._ingestion = ingestion
        self._customer_id = check_customer_id(customer_id)
        self._event_name = check_event_name(event_name, ingestion)
        own: dict[str, Any] = {"operation": operation, "bucket": bucket, "key": key}
        self._own = check_metadata({k: v for k, v in own.items() if v is not None}, ())
        self._metadata = check_metadata(metadata, _RESERVED)
        self._event_id = event_id
        self._source = source
        self._opened: IO[bytes] | None = None
        self._read = 0
        self.file: Any = None
        self.size: int | None = None
        self.event_id: str | None = None

    @property
    def bytes(self) -> int:
        """Bytes billed: the size known up front, else the bytes the uploader read so far."""
        return self.size if self.size is not None else self._read

    def _add(self, n: int) -> None:
        self._read += n

    def __enter__(self) -> UploadMeter:
        source = self._source
        source_file: IO[bytes] | AsyncReadable
        if isinstance(source, (str, os.PathLike)):
            source_file = self._opened = open(source, "rb")
        else:
            source_file = source
        self.size = remaining_size(source_file)
        if self.size is not None:
            self.file = source_file
        elif is_async_file(source_file):
            self.file = AsyncCountingFile(source_file, self._add, self._counting_failed)
        else:
            self.file = CountingFile(source_file, self._add, self._counting_failed)
        return self

    def _counting_failed(self, exc: Exception) -> None:
        self._tracking_failed(f"upload {self._own.get('key', '')}", exc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            self._opened.close()
        if exc is not None:
            return
        try:
            self.event_id = self._ingestion.track(
                self._customer_id,
                self._event_name,
                {"bytes": self.bytes, **self._own, **self._metadata},
                event_id=self._event_id,
            )
        except Exception as error:
            self._counting_failed(error)

    async def __aenter__(self) -> UploadMeter:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def meter_upload(
    ingestion: EventSink,
    customer_id: str,
    source: str | os.PathLike[str] | IO[bytes] | AsyncReadable,
    *,
    bucket: str | None = None,
    key: str | None = None,
    operation: str = "upload",
    metadata: Mapping[str, MetadataValue] | None = None,
    event_name: str | None = None,
    event_id: str | None = None,
) -> UploadMeter:
    """Meter an upload from a file path or a binary file-like object (``with``/``async with``).

    Inside the block, upload ``meter.file`` (the opened path, the object itself, or a counting
    proxy of it when its size cannot be known without reading; for an async source such as
    ``asyncio.StreamReader`` or Starlette's ``UploadFile``, an async proxy: ``await
    meter.file.read(n)``, ``async for``). When the block ends without an
    exception, one event is tracked with ``bytes`` (from the current position to the end),
    ``operation`` (default ``"upload"``), ``bucket`` and ``key`` (when given) and your
    ``metadata``; when it raises, nothing is tracked (nothing was stored) and the exception
    propagates. A path is opened on entry and closed on exit. Pass ``event_id`` (e.g. derived
    from bucket and key) to make a retried upload idempotent. Bad settings raise
    ``EventValidationError`` here; a failure to track is logged and counted, never raised.
    """
    return UploadMeter(
        ingestion,
        customer_id,
        source,
        bucket=bucket,
        key=key,
        operation=operation,
        metadata=metadata,
        event_name=event_name,
        event_id=event_id,
    )
