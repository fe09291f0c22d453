"""Stream blueprint through the real delivery pipeline to the dev server: the exact events
stored, for plain generators, httpx2 streaming responses and Starlette StreamingResponse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dodo_ingest.blueprints.stream import meter_stream, track_stream_bytes

from .conftest import delivered, serve_asgi, stored_events


def test_track_stream_bytes_is_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    event_id = track_stream_bytes(ingestion, customer, 123_456, {"codec": "aac"}, "stream.bytes")
    [event] = delivered(ingestion, dev_server, customer)
    assert (event.event_id, event.event_name) == (event_id, "stream.bytes")
    assert event.metadata == {"bytes": 123_456, "codec": "aac"}


def test_generator_with_partials_is_stored_exactly(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    def audio() -> Iterator[bytes]:
        for _ in range(25):
            yield b"\x00" * 1000

    with meter_stream(
        ingestion,
        customer,
        "audio.bytes",
        {"voice": "alto"},
        stream_id="tts-1",
        partial_every_bytes=10_000,
    ) as meter:
        for _ in meter.wrap(audio()):
            pass
    events = {e.event_id: e for e in delivered(ingestion, dev_server, customer)}
    assert sorted(events) == ["tts-1:1", "tts-1:2", "tts-1:3"]
    common = {"streamId": "tts-1", "voice": "alto"}
    assert events["tts-1:1"].metadata == {
        "bytes": 10_000,
        "sequence": 1,
        "final": False,
        "totalBytes": 10_000,
        "status": "running",
        **common,
    }
    assert events["tts-1:2"].metadata == {
        "bytes": 10_000,
        "sequence": 2,
        "final": False,
        "totalBytes": 20_000,
        "status": "running",
        **common,
    }
    assert events["tts-1:3"].metadata == {
        "bytes": 5_000,
        "sequence": 3,
        "final": True,
        "totalBytes": 25_000,
        "status": "ok",
        **common,
    }
    assert {e.event_name for e in events.values()} == {"audio.bytes"}
    assert sum(e.metadata["bytes"] for e in events.values()) == meter.total == 25_000


def test_replaying_a_stream_id_does_not_bill_twice(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    for _ in range(2):
        with meter_stream(ingestion, customer, "s", stream_id="upload-7") as meter:
            meter.add(512)
    events = delivered(ingestion, dev_server, customer)
    assert [(e.event_id, e.metadata["bytes"]) for e in events] == [("upload-7:1", 512)]


PAYLOAD = [bytes([i]) * 4096 for i in range(16)]


def streaming_app(ingestion: Any, customer: str) -> Starlette:
    """An app whose ``/audio`` body is metered on the server side with ``finish=True``."""

    async def chunks(delay: float) -> AsyncIterator[bytes]:
        for chunk in PAYLOAD:
            await asyncio.sleep(delay)
            yield chunk

    async def audio(request: Request) -> Response:
        meter = meter_stream(
            ingestion, customer, "server.bytes", stream_id=request.query_params["id"]
        )
        delay = float(request.query_params.get("delay", "0"))
        return StreamingResponse(meter.wrap(chunks(delay), finish=True))

    def sync_chunks() -> Iterator[bytes]:
        yield from PAYLOAD

    async def sync_audio(request: Request) -> Response:
        meter = meter_stream(ingestion, customer, "server.bytes", stream_id="sync-1")
        return StreamingResponse(meter.wrap(sync_chunks(), finish=True))

    return Starlette(routes=[Route("/audio", audio), Route("/sync", sync_audio)])


def test_httpx2_stream_and_starlette_streaming_response(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    with (
        serve_asgi(streaming_app(ingestion, customer)) as url,
        httpx2.Client() as client,
        client.stream("GET", f"{url}/audio", params={"id": "srv-1"}) as response,
        meter_stream(ingestion, customer, "client.bytes", stream_id="cli-1") as meter,
    ):
        received = b"".join(meter.wrap(response.iter_bytes()))
    assert received == b"".join(PAYLOAD)
    events = {e.event_id: e for e in delivered(ingestion, dev_server, customer)}
    assert sorted(events) == ["cli-1:1", "srv-1:1"]
    assert events["cli-1:1"].event_name == "client.bytes"
    assert events["cli-1:1"].metadata == {"bytes": 65_536, "streamId": "cli-1", "status": "ok"}
    assert events["srv-1:1"].event_name == "server.bytes"
    assert events["srv-1:1"].metadata == {"bytes": 65_536, "streamId": "srv-1", "status": "ok"}


@pytest.mark.anyio
async def test_async_httpx2_stream(ingestion: Any, dev_server: Any, customer: str) -> None:
    with serve_asgi(streaming_app(ingestion, customer)) as url:
        async with (
            httpx2.AsyncClient() as client,
            client.stream("GET", f"{url}/audio", params={"id": "srv-2"}) as response,
            meter_stream(ingestion, customer, "client.bytes", stream_id="cli-2") as meter,
        ):
            size = 0
            async for chunk in meter.wrap(response.aiter_raw()):
                size += len(chunk)
    assert size == meter.total == 65_536
    events = {e.event_id: e.metadata for e in delivered(ingestion, dev_server, customer)}
    assert events == {
        "cli-2:1": {"bytes": 65_536, "streamId": "cli-2", "status": "ok"},
        "srv-2:1": {"bytes": 65_536, "streamId": "srv-2", "status": "ok"},
    }


def test_client_disconnect_bills_what_was_sent(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    with serve_asgi(streaming_app(ingestion, customer)) as url:
        with (
            httpx2.Client() as client,
            client.stream(
                "GET", f"{url}/audio", params={"id": "cut-1", "delay": "0.05"}
            ) as response,
        ):
            got = 0
            for chunk in response.iter_bytes(4096):
                got += len(chunk)
                if got >= 3 * 4096:
                    break
        deadline = time.monotonic() + 10
        events: list[Any] = []
        while not events and time.monotonic() < deadline:
            ingestion.flush(5)
            events = stored_events(dev_server.base_url, customer)
            time.sleep(0.05)
    [event] = events
    assert event.event_id == "cut-1:1"
    billed = event.metadata["bytes"]
    assert billed % 4096 == 0
    assert 3 * 4096 <= billed < 16 * 4096


def test_sync_generator_body_of_a_streaming_response(
    ingestion: Any, dev_server: Any, customer: str
) -> None:
    with serve_asgi(streaming_app(ingestion, customer)) as url:
        assert httpx2.get(f"{url}/sync").content == b"".join(PAYLOAD)
    [event] = delivered(ingestion, dev_server, customer)
    assert (event.event_id, event.event_name) == ("sync-1:1", "server.bytes")
    assert event.metadata == {"bytes": 65_536, "streamId": "sync-1", "status": "ok"}


def test_file_objects_are_stored(
    ingestion: Any, dev_server: Any, customer: str, tmp_path: Any
) -> None:
    source = tmp_path / "in.wav"
    source.write_bytes(bytes(range(256)) * 100)
    with (
        meter_stream(ingestion, customer, "copy.bytes", stream_id="copy-1") as meter,
        source.open("rb") as raw_in,
        (tmp_path / "out.wav").open("wb") as raw_out,
    ):
        reader, writer = meter.wrap(raw_in), meter.wrap(raw_out)
        while block := reader.read(4096):
            writer.write(block)
    assert (tmp_path / "out.wav").read_bytes() == source.read_bytes()
    [event] = delivered(ingestion, dev_server, customer)
    assert event.event_id == "copy-1:1"
    assert event.metadata == {"bytes": 2 * 25_600, "streamId": "copy-1", "status": "ok"}
