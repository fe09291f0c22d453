"""meter_stream / track_stream_bytes against a recording sink: counting, events, failures."""

from __future__ import annotations

import array
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC

import pytest

from dodo_ingest.blueprints.stream import StreamMeter, meter_stream, track_stream_bytes
from dodo_ingest.client import ConfigurationError, EventValidationError

from .conftest import RecordingSink


def test_track_stream_bytes_sends_bytes_key(sink: RecordingSink) -> None:
    event_id = track_stream_bytes(sink, "cus_1", 4096, {"codec": "opus"}, "audio.bytes")
    event = sink.events[0]
    assert event_id == event.event_id
    assert (event.customer_id, event.event_name) == ("cus_1", "audio.bytes")
    assert event.metadata == {"bytes": 4096, "codec": "opus"}


def test_track_stream_bytes_passes_event_id_and_timestamp(sink: RecordingSink) -> None:
    from datetime import datetime

    when = datetime(2026, 1, 2, tzinfo=UTC)
    assert track_stream_bytes(sink, "cus_1", 0, event_id="fixed", timestamp=when) == "fixed"
    assert sink.events[0].timestamp == when


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10", None])
def test_track_stream_bytes_rejects_bad_counts(sink: RecordingSink, bad: object) -> None:
    with pytest.raises(EventValidationError) as info:
        track_stream_bytes(sink, "cus_1", bad)  # type: ignore[arg-type]
    assert info.value.field == "bytes"
    assert sink.events == []


def test_metadata_checked_at_construction(sink: RecordingSink) -> None:
    with pytest.raises(EventValidationError, match=r"metadata\.bytes"):
        meter_stream(sink, "cus_1", metadata={"bytes": 1})
    with pytest.raises(EventValidationError, match=r"metadata\.x.*500"):
        meter_stream(sink, "cus_1", metadata={"x": "y" * 501})
    with pytest.raises(EventValidationError, match="customer_id"):
        meter_stream(sink, "")
    with pytest.raises(EventValidationError, match="at most 43 keys"):
        meter_stream(sink, "cus_1", metadata={f"k{i}": i for i in range(44)})
    with pytest.raises(ConfigurationError, match="encoding"):
        meter_stream(sink, "cus_1", encoding="no-such-codec")
    with pytest.raises(ConfigurationError, match="partial_every_bytes"):
        meter_stream(sink, "cus_1", partial_every_bytes=0)


def test_wrap_counts_every_chunk_type_without_changing_them(sink: RecordingSink) -> None:
    ints = array.array("i", [1, 2, 3])  # a buffer whose len() is not its size in bytes
    chunks = [b"abc", bytearray(b"de"), memoryview(ints), "hello", "héllo €", memoryview(b"xy")]
    with meter_stream(sink, "cus_1", "stream.bytes", {"feature": "tts"}) as meter:
        seen = list(meter.wrap(chunks))
    assert seen == chunks
    assert all(a is b for a, b in zip(seen, chunks, strict=True))
    expected = 3 + 2 + 3 * ints.itemsize + 5 + len("héllo €".encode()) + 2
    assert meter.total == expected
    [event] = sink.events
    assert event.event_id == f"{meter.stream_id}:1"
    assert event.event_name == "stream.bytes"
    assert event.metadata == {
        "bytes": expected,
        "streamId": meter.stream_id,
        "status": "ok",
        "feature": "tts",
    }


def test_str_encoding_is_configurable(sink: RecordingSink) -> None:
    with meter_stream(sink, "cus_1", encoding="utf-16-le") as meter:
        list(meter.wrap(["ab", "é"]))
    assert meter.total == 6


def test_body_error_is_billed_and_propagates(sink: RecordingSink) -> None:
    boom = ConnectionResetError("peer gone")

    def source() -> Iterator[bytes]:
        yield b"x" * 10
        raise boom

    with pytest.raises(ConnectionResetError) as info, meter_stream(sink, "cus_1") as meter:
        for _ in meter.wrap(source()):
            pass
    assert info.value is boom
    assert sink.metadata[0]["bytes"] == 10
    assert sink.metadata[0]["status"] == "error"
    assert sink.metadata[0]["errorType"] == "ConnectionResetError"


def test_consumer_stopping_early_bills_what_it_got_and_closes_the_source(
    sink: RecordingSink,
) -> None:
    closed = []

    def source() -> Iterator[bytes]:
        try:
            for _ in range(100):
                yield b"z" * 7
        finally:
            closed.append(True)

    with meter_stream(sink, "cus_1") as meter:
        wrapped = meter.wrap(source())
        for i, _ in enumerate(wrapped):
            if i == 2:
                break
        wrapped.close()
    assert closed == [True]
    assert sink.metadata[0]["bytes"] == 21
    assert sink.metadata[0]["status"] == "ok"


def test_partial_events_by_bytes_sum_exactly(sink: RecordingSink) -> None:
    sizes = [3000, 100, 5000, 1, 999, 4096, 7, 2500]
    with meter_stream(
        sink, "cus_1", stream_id="call-42", partial_every_bytes=4000, metadata={"room": "a"}
    ) as meter:
        for size in sizes:
            meter.add(size)
    events = sink.events
    assert [e.event_id for e in events] == [f"call-42:{i}" for i in range(1, len(events) + 1)]
    assert len(events) == 3  # partials at 8100 and 13196 bytes, then the final one
    assert sum(m["bytes"] for m in sink.metadata) == sum(sizes) == meter.total
    assert [m["final"] for m in sink.metadata] == [False, False, True]
    assert [m["status"] for m in sink.metadata] == ["running", "running", "ok"]
    assert [m["bytes"] for m in sink.metadata] == [8100, 5096, 2507]
    running = 0
    for m in sink.metadata:
        running += m["bytes"]
        assert m["totalBytes"] == running
        assert m["sequence"] == sink.metadata.index(m) + 1
        assert m["room"] == "a"


def test_partial_events_by_time(sink: RecordingSink) -> None:
    def slow() -> Iterator[bytes]:
        for _ in range(8):
            time.sleep(0.03)
            yield b"q" * 100

    with meter_stream(sink, "cus_1", partial_every_seconds=0.05) as meter:
        for _ in meter.wrap(slow()):
            pass
    partials = [m for m in sink.metadata if not m["final"]]
    assert 2 <= len(partials) <= 5
    assert sum(m["bytes"] for m in sink.metadata) == 800 == meter.total


def test_zero_byte_stream_still_reports(sink: RecordingSink) -> None:
    with meter_stream(sink, "cus_1"):
        pass
    assert sink.metadata == [{"bytes": 0, "streamId": sink.metadata[0]["streamId"], "status": "ok"}]


@pytest.mark.anyio
async def test_async_iterables_and_async_with(sink: RecordingSink) -> None:
    async def source() -> AsyncIterator[bytes]:
        for i in range(5):
            yield bytes(i * 10)

    async with meter_stream(sink, "cus_1") as meter:
        got = [chunk async for chunk in meter.wrap(source())]
    assert [len(c) for c in got] == [0, 10, 20, 30, 40]
    assert sink.metadata[0]["bytes"] == 100


@pytest.mark.anyio
async def test_async_early_stop_closes_the_source(sink: RecordingSink) -> None:
    closed = []

    async def source() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"1234"
        finally:
            closed.append(True)

    async with meter_stream(sink, "cus_1") as meter:
        wrapped = meter.wrap(source())
        async for _ in wrapped:
            if meter.total >= 12:
                break
        await wrapped.aclose()
    assert closed == [True]
    assert sink.metadata[0]["bytes"] == 12


def test_file_reads_are_counted(sink: RecordingSink) -> None:
    data = b"line one\nline two\nthree\n" + bytes(1000)
    with meter_stream(sink, "cus_1") as meter:
        f = meter.wrap(io.BytesIO(data))
        assert f.read(4) == b"line"
        buffer = bytearray(5)
        assert f.readinto(buffer) == 5
        assert buffer == b" one\n"
        assert f.readline() == b"line two\n"
        assert next(iter(f)) == b"three\n"
        rest = f.read()
        assert f.tell() == len(data)  # other attributes are the file's own
    assert len(rest) == 1000
    assert meter.total == len(data)
    assert sink.metadata[0]["bytes"] == len(data)


def test_file_writes_are_counted(sink: RecordingSink) -> None:
    binary, text = io.BytesIO(), io.StringIO()
    with meter_stream(sink, "cus_1") as meter:
        meter.wrap(binary).write(b"12345")
        out = meter.wrap(text)
        out.write("é")
        out.writelines(["ab", "c"])
    assert binary.getvalue() == b"12345"
    assert text.getvalue() == "éabc"
    assert meter.total == 5 + 2 + 3


def test_finish_true_emits_when_the_iterator_ends(sink: RecordingSink) -> None:
    meter = meter_stream(sink, "cus_1")
    body = meter.wrap(iter([b"ab", b"cd"]), finish=True)
    assert sink.events == []
    assert list(body) == [b"ab", b"cd"]
    assert meter.closed
    assert sink.metadata[0]["bytes"] == 4


def test_bytes_after_close_are_reported_not_lost_silently(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    with meter_stream(sink, "cus_1") as meter:
        body = meter.wrap(iter([b"late"]))
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        assert list(body) == [b"late"]
    assert meter.tracking_errors == 1
    assert "after the meter closed" in caplog.text
    assert sink.metadata[0]["bytes"] == 0


def test_tracking_failure_never_reaches_the_stream(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    sink.fail = RuntimeError("queue closed")
    with (
        caplog.at_level(logging.WARNING, logger="dodo_ingest"),
        meter_stream(sink, "cus_1", partial_every_bytes=2) as meter,
    ):
        assert list(meter.wrap([b"abc", b"def"])) == [b"abc", b"def"]
    assert meter.tracking_errors == 3  # two partials and the final event
    assert caplog.text.count("queue closed") == 3


def test_failed_partial_rolls_into_the_next_event(sink: RecordingSink) -> None:
    with meter_stream(sink, "cus_1", partial_every_bytes=5) as meter:
        sink.fail = RuntimeError("full")
        meter.add(6)
        sink.fail = None
        meter.add(6)
    assert [m["bytes"] for m in sink.metadata] == [12, 0]
    assert meter.tracking_errors == 1


def test_uncountable_chunks_pass_through_and_are_reported(sink: RecordingSink) -> None:
    with meter_stream(sink, "cus_1") as meter:
        assert list(meter.wrap([b"ab", 42, b"c"])) == [b"ab", 42, b"c"]
    assert meter.total == 3
    assert meter.tracking_errors == 1


def test_add_and_count(sink: RecordingSink) -> None:
    with meter_stream(sink, "cus_1") as meter:
        meter.add(10)
        assert meter.count("żółw") == "żółw"
        with pytest.raises(EventValidationError):
            meter.add(-1)
    assert meter.total == 10 + len("żółw".encode())


def test_wrap_refuses_single_chunks(sink: RecordingSink) -> None:
    meter = StreamMeter(sink, "cus_1")
    with pytest.raises(TypeError, match="add"):
        meter.wrap(b"abc")
    with pytest.raises(TypeError):
        meter.wrap(42)


def test_missing_event_name_fails_at_construction(sink: RecordingSink) -> None:
    sink.event_name = None  # type: ignore[attr-defined]  # a pipeline without a default name
    with pytest.raises(EventValidationError, match="event_name"):
        meter_stream(sink, "cus_1")
    sink.event_name = "stream.bytes"  # type: ignore[attr-defined]
    with meter_stream(sink, "cus_1"):
        pass
    assert len(sink.events) == 1


def test_wrap_points_http_responses_to_their_chunks(sink: RecordingSink) -> None:
    import httpx2

    response = httpx2.Response(200, content=b"abc")
    with pytest.raises(TypeError, match=r"iter_bytes\(\)"):
        meter_stream(sink, "cus_1").wrap(response)
