"""meter_upload of async sources: an asyncio stream from a socket, Starlette's UploadFile."""

from __future__ import annotations

import asyncio
import os
from tempfile import SpooledTemporaryFile
from typing import Any

import pytest
from starlette.datastructures import UploadFile

from dodo_ingest.blueprints.object_storage import meter_upload, remaining_size

from .conftest import RecordingSink

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("error")]


async def _upload(file: Any) -> bytes:
    """What an async uploader does: read the source in parts until it ends."""
    received = bytearray()
    while part := await file.read(16_384):
        received += part
    return bytes(received)


async def test_socket_stream_is_counted_as_the_uploader_reads_it(sink: RecordingSink) -> None:
    payload = os.urandom(200_000)

    async def send(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(send, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        assert remaining_size(reader) is None
        async with meter_upload(sink, "cus_1", reader, bucket="media", key="k1") as meter:
            assert meter.size is None
            assert await _upload(meter.file) == payload
            assert meter.bytes == len(payload)
    finally:
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert sink.metadata == [
        {"bytes": 200_000, "operation": "upload", "bucket": "media", "key": "k1"}
    ]


async def test_starlette_upload_file(sink: RecordingSink) -> None:
    payload = os.urandom(70_000)
    spooled = SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - closed by UploadFile.close
    spooled.write(payload)
    spooled.seek(0)
    upload = UploadFile(spooled, size=len(payload), filename="a.bin")
    assert remaining_size(upload) is None  # async: not probed with coroutines
    async with meter_upload(sink, "cus_1", upload, key="a.bin", event_id="up-7") as meter:
        assert await _upload(meter.file) == payload
    await upload.close()
    assert sink.events[0].event_id == "up-7"
    assert sink.metadata[0]["bytes"] == 70_000
    assert meter.tracking_errors == 0


async def test_async_source_that_fails_mid_upload_bills_nothing(sink: RecordingSink) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"partial")
    reader.set_exception(ConnectionResetError("peer gone"))
    with pytest.raises(ConnectionResetError):
        async with meter_upload(sink, "cus_1", reader) as meter:
            await _upload(meter.file)
    assert sink.events == []
