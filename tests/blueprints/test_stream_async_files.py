"""meter_stream(...).wrap() of async file-like objects: asyncio streams, Starlette's UploadFile."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator
from tempfile import SpooledTemporaryFile
from typing import Any

import pytest
from starlette.datastructures import UploadFile

from dodo_ingest.blueprints.stream import meter_stream

from .conftest import RecordingSink

# An un-awaited coroutine (the defect these tests pin) warns at collection: make that fail.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("error")]


async def _served_reader(payload: bytes) -> tuple[asyncio.StreamReader, Any]:
    """A real TCP connection on 127.0.0.1: the server sends ``payload`` and closes."""

    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return reader, (server, writer)


async def _close(handles: Any) -> None:
    server, writer = handles
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


def _upload_file(payload: bytes) -> UploadFile:
    """A Starlette UploadFile rolled over to disk, so its methods really run in a thread."""
    spooled = SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - closed by UploadFile.close
    spooled.write(payload)
    spooled.seek(0)
    return UploadFile(spooled, size=len(payload), filename="voice.ogg")


async def test_async_for_over_a_socket_stream_reader(sink: RecordingSink) -> None:
    payload = b"".join(b"line %d\n" % i for i in range(2000)) + b"tail"
    reader, handles = await _served_reader(payload)
    try:
        async with meter_stream(sink, "cus_1", stream_id="sock-1") as meter:
            lines = [line async for line in meter.wrap(reader)]
            assert meter.total == len(payload)
    finally:
        await _close(handles)
    assert b"".join(lines) == payload
    assert lines[0] == b"line 0\n" and lines[-1] == b"tail"
    assert sink.metadata == [{"bytes": len(payload), "streamId": "sock-1", "status": "ok"}]
    assert meter.tracking_errors == 0


async def test_awaited_reads_of_a_stream_reader(sink: RecordingSink) -> None:
    payload = os.urandom(50_000)
    reader, handles = await _served_reader(b"head\r\n" + b"x;" + payload)
    try:
        async with meter_stream(sink, "cus_1") as meter:
            stream = meter.wrap(reader)
            assert await stream.readline() == b"head\r\n"
            assert await stream.readuntil(b";") == b"x;"
            assert await stream.readexactly(10) == payload[:10]
            received = bytearray()
            while chunk := await stream.read(4096):
                received += chunk
            assert stream.at_eof()  # other attributes are the reader's own
    finally:
        await _close(handles)
    assert bytes(received) == payload[10:]
    assert sink.metadata[0]["bytes"] == 6 + 2 + len(payload)


async def test_starlette_upload_file_reads_and_writes(sink: RecordingSink) -> None:
    payload = os.urandom(100_000)
    upload = _upload_file(payload)
    assert not upload._in_memory
    async with meter_stream(sink, "cus_1", partial_every_bytes=30_000) as meter:
        body = meter.wrap(upload)
        received = bytearray()
        while chunk := await body.read(8192):
            received += chunk
        await body.write(b"trailer")  # UploadFile.write is async too
        assert body.filename == "voice.ogg"
        await body.seek(0)
    await upload.close()
    assert bytes(received) == payload
    metas = sink.metadata
    assert sum(m["bytes"] for m in metas) == metas[-1]["totalBytes"] == 100_007
    assert len(metas) == 4  # partials at 30 000, 60 000, 90 000 and the final event


async def test_finish_true_iterates_an_async_file(sink: RecordingSink) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"one\ntwo\n")
    reader.feed_eof()
    meter = meter_stream(sink, "cus_1")
    body = meter.wrap(reader, finish=True)
    assert [line async for line in body] == [b"one\n", b"two\n"]
    assert meter.closed
    assert sink.metadata[0]["bytes"] == 8


async def test_finish_true_refuses_an_async_file_without_async_for(sink: RecordingSink) -> None:
    upload = _upload_file(b"abc")
    with pytest.raises(TypeError, match="finish=True"):
        meter_stream(sink, "cus_1").wrap(upload, finish=True)
    await upload.close()


class _OddReader:
    """An async file-like object whose ``read`` returns something that is not data."""

    async def read(self, n: int = -1) -> Any:
        return [b"not", b"bytes"]

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[Any]:
        yield b"ab"
        yield 42


async def test_uncountable_data_is_passed_on_and_reported(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        async with meter_stream(sink, "cus_1") as meter:
            odd = meter.wrap(_OddReader())
            assert await odd.read() == [b"not", b"bytes"]
            assert [chunk async for chunk in odd] == [b"ab", 42]
    assert meter.total == 2
    assert meter.tracking_errors == 2
    assert "TypeError" in caplog.text
    assert sink.metadata[0]["bytes"] == 2


class _AwaitableReads(io.RawIOBase):
    """A sync-looking file whose ``read`` hands back an awaitable instead of data."""

    def read(self, size: int = -1) -> Any:
        return self._later()

    async def _later(self) -> bytes:
        return b"late"


async def test_sync_proxy_passes_an_awaitable_on_instead_of_raising(sink: RecordingSink) -> None:
    async with meter_stream(sink, "cus_1") as meter:
        pending = meter.wrap(_AwaitableReads()).read()
        assert await pending == b"late"  # the caller still gets, and awaits, its coroutine
    assert meter.tracking_errors == 1
