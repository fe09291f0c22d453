"""track_object_storage / meter_upload against a recording sink."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest.blueprints.object_storage import (
    meter_upload,
    remaining_size,
    track_object_storage,
)
from dodo_ingest.client import EventValidationError

from .conftest import RecordingSink


class ReadCounter(io.BytesIO):
    """A BytesIO that records every read call (to prove the size is found without reading)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


def upload(file: Any, chunk: int = 1000) -> int:
    """A stand-in uploader: reads the file to the end in chunks, as S3/GCS clients do."""
    sent = 0
    while data := file.read(chunk):
        sent += len(data)
    return sent


def test_track_object_storage(sink: RecordingSink) -> None:
    track_object_storage(sink, "cus_1", 2048, {"bucket": "b", "key": "k"}, "storage.bytes")
    assert sink.metadata == [{"bytes": 2048, "bucket": "b", "key": "k"}]
    assert sink.events[0].event_name == "storage.bytes"
    with pytest.raises(EventValidationError, match="bytes"):
        track_object_storage(sink, "cus_1", -5)


def test_upload_from_path_uses_stat(sink: RecordingSink, tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    path.write_bytes(os.urandom(12_345))
    with meter_upload(sink, "cus_1", path, bucket="media", key="u/1/video.mp4") as meter:
        assert meter.size == 12_345
        assert upload(meter.file) == 12_345
    assert meter.file.closed
    assert meter.event_id == sink.events[0].event_id
    assert sink.metadata == [
        {"bytes": 12_345, "operation": "upload", "bucket": "media", "key": "u/1/video.mp4"}
    ]


def test_seekable_file_is_sized_without_reading(sink: RecordingSink) -> None:
    source = ReadCounter(b"h" * 100 + b"d" * 900)
    source.seek(100)
    with meter_upload(sink, "cus_1", source, metadata={"tenant": "t1"}) as meter:
        assert (meter.size, source.reads) == (900, 0)
        assert meter.file is source
        assert upload(meter.file) == 900
    assert sink.metadata == [{"bytes": 900, "operation": "upload", "tenant": "t1"}]
    assert not source.closed  # a file we did not open is left open


def test_open_file_object_is_sized_without_reading(sink: RecordingSink, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x" * 5000)
    with path.open("rb") as f, meter_upload(sink, "cus_1", f, operation="put") as meter:
        assert meter.size == 5000
        upload(meter.file)
    assert sink.metadata[0] == {"bytes": 5000, "operation": "put"}


def test_pipe_is_counted_while_the_uploader_reads_it(sink: RecordingSink) -> None:
    read_fd, write_fd = os.pipe()
    payload = os.urandom(70_000)

    def produce() -> None:
        with os.fdopen(write_fd, "wb") as w:
            w.write(payload)

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_fd, "rb") as pipe, meter_upload(sink, "cus_1", pipe, key="k") as meter:
        assert meter.size is None
        assert remaining_size(pipe) is None
        received = bytearray()
        while data := meter.file.read(8192):
            received += data
        assert meter.bytes == len(payload)
    producer.join()
    assert bytes(received) == payload
    assert sink.metadata == [{"bytes": 70_000, "operation": "upload", "key": "k"}]


def test_failed_upload_bills_nothing(sink: RecordingSink, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    boom = TimeoutError("s3 timeout")
    with pytest.raises(TimeoutError) as info, meter_upload(sink, "cus_1", path) as meter:
        raise boom
    assert info.value is boom
    assert meter.file.closed
    assert sink.events == []


@pytest.mark.anyio
async def test_async_with(sink: RecordingSink) -> None:
    async with meter_upload(sink, "cus_1", io.BytesIO(b"12345"), event_id="up-1") as meter:
        upload(meter.file)
    assert sink.events[0].event_id == "up-1"
    assert sink.metadata[0]["bytes"] == 5


def test_bad_settings_raise_at_construction(sink: RecordingSink) -> None:
    with pytest.raises(EventValidationError, match=r"metadata\.key"):
        meter_upload(sink, "cus_1", io.BytesIO(), key="k" * 501)
    with pytest.raises(EventValidationError, match=r"metadata\.bucket"):
        meter_upload(sink, "cus_1", io.BytesIO(), metadata={"bucket": "x"})


def test_tracking_failure_is_counted(sink: RecordingSink) -> None:
    sink.fail = RuntimeError("closed")
    with meter_upload(sink, "cus_1", io.BytesIO(b"1")) as meter:
        upload(meter.file)
    assert meter.tracking_errors == 1
    assert meter.event_id is None


def test_spooled_upload_file_is_sized_without_rolling_to_disk(sink: RecordingSink) -> None:
    with tempfile.SpooledTemporaryFile(max_size=1_000_000) as spooled:  # UploadFile.file
        spooled.write(b"z" * 5000)
        spooled.seek(0)
        with meter_upload(sink, "cus_1", spooled) as meter:
            assert meter.size == 5000
            assert upload(meter.file) == 5000
        assert not spooled._rolled  # type: ignore[attr-defined]
    assert sink.metadata[0]["bytes"] == 5000
