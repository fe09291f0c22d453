"""Object-storage blueprint through the real delivery pipeline to the dev server."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dodo_ingest.blueprints.object_storage import meter_upload, track_object_storage

from .conftest import delivered


def test_track_object_storage_is_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    event_id = track_object_storage(
        ingestion, customer, 1_048_576, {"bucket": "b1", "operation": "put"}, "storage.bytes"
    )
    [event] = delivered(ingestion, dev_server, customer)
    assert (event.event_id, event.event_name) == (event_id, "storage.bytes")
    assert event.metadata == {"bytes": 1_048_576, "bucket": "b1", "operation": "put"}


def test_metered_uploads_are_stored(
    ingestion: Any, dev_server: Any, customer: str, tmp_path: Path
) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(b"%PDF" + bytes(20_000))
    sink = io.BytesIO()
    with meter_upload(
        ingestion, customer, path, bucket="docs", key="c/scan.pdf", event_name="storage.bytes"
    ) as upload:
        sink.write(upload.file.read())
    with meter_upload(
        ingestion,
        customer,
        io.BytesIO(b"x" * 777),
        key="c/small.txt",
        event_name="storage.bytes",
        event_id="upload-small",
    ) as small:
        small.file.read()
    events = {e.event_id: e for e in delivered(ingestion, dev_server, customer)}
    assert sorted(events) == sorted([upload.event_id, "upload-small"])
    assert events[upload.event_id].metadata == {
        "bytes": 20_004,
        "operation": "upload",
        "bucket": "docs",
        "key": "c/scan.pdf",
    }
    assert events["upload-small"].metadata == {
        "bytes": 777,
        "operation": "upload",
        "key": "c/small.txt",
    }
    assert len(sink.getvalue()) == 20_004
