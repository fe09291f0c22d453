"""``dodo-ingest send`` hands events it checked to ``Ingestion``'s prechecked entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest import Ingestion
from dodo_ingest._cli import _backfill
from tests.cli.conftest import Cli, recent, write_jsonl


def test_checked_events_skip_the_second_check_with_the_same_bodies(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prechecked = getattr(Ingestion, "_track_prechecked", None)
    if prechecked is None:
        pytest.skip("this Ingestion has no _track_prechecked")
    records: list[dict[str, Any]] = [
        {"event_id": f"p-{i}", "customer_id": f"cus_{i % 3}", "event_name": "api.call",
         "metadata": {"tokens": i, "ratio": i / 4, "model": "m-é", "ok": i % 2 == 0}}
        for i in range(30)
    ]  # fmt: skip
    records.append({"customer_id": "cus_0", "event_name": "api.call", "region": "eu"})
    records.append({"event_id": "no-metadata", "customer_id": "cus_1", "event_name": "api.call"})
    records.append(
        {
            "event_id": "stamped",
            "customer_id": "cus_1",
            "event_name": "e",
            "timestamp": recent(),
            "metadata": {"n": 1},
        }
    )
    file = write_jsonl(tmp_path / "usage.jsonl", records)
    sent: list[list[dict[str, Any]]] = []
    send = _backfill._WatchedTransport.send

    def captured(self: _backfill._WatchedTransport, body: bytes) -> int:
        sent[-1].extend(json.loads(body)["events"])
        return send(self, body)

    monkeypatch.setattr(_backfill._WatchedTransport, "send", captured)
    calls: list[str] = []

    def counted(self: Ingestion, *args: Any) -> str:
        calls.append(args[3])  # customer, name, metadata, event_id, timestamp
        return prechecked(self, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(Ingestion, "_track_prechecked", counted)

    sent.append([])
    first = cli.json("send", str(file))
    monkeypatch.delattr(Ingestion, "_track_prechecked")  # as before it existed: track()
    sent.append([])
    second = cli.json("send", str(file))

    # Every event with metadata went through the prechecked entry, stamped or not.
    by_id = [{event["event_id"]: event for event in events} for events in sent]
    assert len(by_id[0]) == 33
    assert sorted(calls) == sorted(set(by_id[0]) - {"no-metadata"})
    assert len(calls) == 32
    assert by_id[0]["stamped"]["timestamp"] == by_id[1]["stamped"]["timestamp"]
    assert by_id[0].keys() == by_id[1].keys()
    for event_id, event in by_id[0].items():  # the same events either way
        other = by_id[1][event_id]
        assert list(event) == list(other)
        assert {**event, "timestamp": None} == {**other, "timestamp": None}
    assert (first["delivered"], first["new"], first["ok"]) == (33, 33, True)
    assert (second["delivered"], second["duplicates_ignored"], second["ok"]) == (33, 33, True)
