"""``dodo-ingest send`` streams a big file: bounded rows in hand, bounded read-ahead."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest import Ingestion
from dodo_ingest._cli import _backfill
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import Cli, write_jsonl

MAX_QUEUED = 50
PROGRESS_EVERY = 10


@pytest.fixture
def streaming(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Small bounds, and what the command does observed through its seams:

    - ``in_hand``: at each ``track()``, rows the reader yielded in the second pass that were
      not handed on yet (the row being handed on counts: 1 when it streams);
    - ``queued``: the pipeline's ``queued`` count at each ``track()``;
    - ``kept``: whether the first pass kept the records;
    - ``collecting``: whether the cyclic garbage collector ran, as seen at each row the
      first pass read;
    - ``waited``: whether the reader waited for room; delivery is held until it did, or
      until the test sets ``room``.
    """
    room = threading.Event()
    seen: dict[str, Any] = {
        "in_hand": [],
        "queued": [],
        "kept": None,
        "collecting": set(),
        "waited": False,
        "room": room,
    }
    monkeypatch.setattr(_backfill, "KEEP_RECORDS_BYTES", 10_000)
    monkeypatch.setattr(_backfill, "MAX_QUEUED", MAX_QUEUED)
    monkeypatch.setattr(_backfill, "PROGRESS_EVERY", PROGRESS_EVERY)
    passes: list[int] = []
    read_records = _backfill.read_records

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        passes.append(0)
        for item in read_records(*args, **kwargs):
            passes[-1] += 1
            if len(passes) == 1:
                seen["collecting"].add(gc.isenabled())
            yield item

    monkeypatch.setattr(_backfill, "read_records", counted)

    scan = _backfill._scan

    def observed_scan(*args: Any) -> _backfill.Scan:
        result = scan(*args)
        seen["kept"] = result.kept is not None
        return result

    monkeypatch.setattr(_backfill, "_scan", observed_scan)

    make = _backfill._ingestion

    def observed_ingestion(*args: Any, **kwargs: Any) -> Ingestion:
        ingestion = make(*args, **kwargs)
        track = ingestion.track
        handed = 0

        def tracked(*args: Any, **kwargs: Any) -> str:
            nonlocal handed
            handed += 1
            seen["in_hand"].append(passes[-1] - handed + 1)
            seen["queued"].append(ingestion.stats.queued)
            return track(*args, **kwargs)

        ingestion.track = tracked  # type: ignore[method-assign]
        return ingestion

    monkeypatch.setattr(_backfill, "_ingestion", observed_ingestion)

    wait = _backfill._wait_for_room

    def observed_wait(ingestion: Ingestion, *args: Any) -> None:
        if ingestion.stats.queued > MAX_QUEUED:
            seen["waited"] = True
            room.set()
        wait(ingestion, *args)

    monkeypatch.setattr(_backfill, "_wait_for_room", observed_wait)

    send = _backfill._WatchedTransport.send

    def held_send(self: _backfill._WatchedTransport, body: bytes) -> int:
        assert room.wait(30), "the reader never waited for room"
        return send(self, body)

    monkeypatch.setattr(_backfill._WatchedTransport, "send", held_send)
    return seen


def test_a_file_too_big_to_keep_is_streamed_with_bounded_read_ahead(
    cli: Cli,
    server: DevServer,
    tmp_path: Path,
    make_events: Callable[..., list[dict[str, Any]]],
    streaming: dict[str, Any],
) -> None:
    events = make_events(2000)
    file = write_jsonl(tmp_path / "usage.jsonl", events)
    assert file.stat().st_size > _backfill.KEEP_RECORDS_BYTES

    summary = cli.json("send", str(file), "--batch-size", "10")

    assert (summary["ok"], summary["delivered"], summary["new"]) == (True, 2000, 2000)
    assert sorted(server.event_ids()) == sorted(e["event_id"] for e in events)
    assert streaming["kept"] is False  # the first pass kept no records
    assert streaming["collecting"] == {True}
    assert len(streaming["in_hand"]) == 2000
    assert max(streaming["in_hand"]) == 1  # one row at a time from the reader to track()
    assert streaming["waited"] is True  # delivery was held until the reader had to wait
    # Read-ahead stops at MAX_QUEUED, checked every PROGRESS_EVERY events.
    assert max(streaming["queued"]) <= MAX_QUEUED + PROGRESS_EVERY
    assert max(streaming["queued"]) > MAX_QUEUED


def test_a_small_file_is_parsed_once_and_kept(
    cli: Cli,
    tmp_path: Path,
    make_events: Callable[..., list[dict[str, Any]]],
    streaming: dict[str, Any],
) -> None:
    file = write_jsonl(tmp_path / "usage.jsonl", make_events(20))
    assert file.stat().st_size <= _backfill.KEEP_RECORDS_BYTES
    streaming["room"].set()

    summary = cli.json("send", str(file), "--batch-size", "10")

    assert (summary["ok"], summary["delivered"]) == (True, 20)
    assert streaming["kept"] is True
    # The collector pauses while the first pass keeps events, and runs again afterwards.
    assert streaming["collecting"] == {False}
    assert gc.isenabled()
