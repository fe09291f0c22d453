"""The ``DevServer`` object: lifecycle, several servers at once, persistence across restarts."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx2
import pytest

from dodo_ingest import DodoClient, MeterAggregation
from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import events

HEADERS = {"Authorization": "Bearer k"}


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("dodo-devserver-")]


def test_start_answers_http_and_stop_joins_the_thread() -> None:
    before = len(server_threads())
    server = DevServer()
    assert not server.running
    server.start()
    try:
        assert server.running
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert httpx2.get(f"{server.base_url}/_dev/health").json() == {"status": "ok"}
        assert len(server_threads()) == before + 2  # serving, and delivering webhooks
    finally:
        server.stop()
    assert not server.running
    assert len(server_threads()) == before
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(f"{server.base_url}/_dev/health")
    server.stop()  # a second stop does nothing


def test_several_servers_run_at_once_with_their_own_data() -> None:
    with DevServer() as first, DevServer() as second:
        assert first.port != second.port
        httpx2.post(f"{first.base_url}/events/ingest", json={"events": events(2)}, headers=HEADERS)
        httpx2.post(f"{second.base_url}/events/ingest", json={"events": events(3)}, headers=HEADERS)
        assert (len(first.event_ids()), len(second.event_ids())) == (2, 3)


def test_a_running_server_cannot_start_again(server: DevServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        server.start()


def test_a_taken_port_raises(server: DevServer) -> None:
    with pytest.raises(OSError, match="in use"):
        DevServer(port=server.port).start()


def test_the_store_needs_a_running_server() -> None:
    server = DevServer()
    with pytest.raises(RuntimeError, match="not running"):
        server.event_ids()
    with pytest.raises(RuntimeError, match="not been started"):
        _ = server.base_url


def test_a_blank_api_key_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        DevServer(api_key=" ")


def test_stats_count_answers_by_status(server: DevServer) -> None:
    url = server.base_url
    httpx2.post(f"{url}/events/ingest", json={"events": events(2)}, headers=HEADERS)
    httpx2.post(f"{url}/events/ingest", json={"events": events(2)})
    httpx2.get(f"{url}/events/missing", headers=HEADERS)
    httpx2.get(f"{url}/_dev/usage")
    stats = server.stats
    assert stats["requests"] == {"200": 1, "401": 1, "404": 1}
    assert stats["events_ingested"] == 2
    stats["requests"]["200"] = 99  # a snapshot, not the live counters
    assert server.stats["requests"]["200"] == 1


def test_data_survives_a_restart_on_the_same_path(tmp_path: Path) -> None:
    db = tmp_path / "dev.db"
    batch = events(5, metadata={"tokens": 3})
    with DevServer(db=db) as server, DodoClient(api_key="k", base_url=server.base_url) as client:
        meter = client.meters.create(
            name="Tokens",
            event_name="api.call",
            measurement_unit="tokens",
            aggregation=MeterAggregation("sum", "tokens"),
        )
        credits = client.credits.create_entitlement(name="C", unit="credits", precision=0)
        server.link_meter_to_credits(meter.id, credits.id, 1)
        client.credits.create_ledger_entry(credits.id, "cus_1", amount=100)
        client.events.ingest(batch)
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    with (
        DevServer(db=str(db)) as server,
        DodoClient(api_key="k", base_url=server.base_url) as client,
    ):
        assert server.event_ids() == [event["event_id"] for event in batch]
        assert client.events.ingest(batch).ingested_count == 0
        assert client.meters.retrieve(meter.id) == meter
        assert client.credits.balance(credits.id, "cus_1").balance == 85


def test_memory_data_is_gone_after_a_restart() -> None:
    server = DevServer()
    with server:
        httpx2.post(f"{server.base_url}/events/ingest", json={"events": events(1)}, headers=HEADERS)
        assert len(server.event_ids()) == 1
    with server:
        assert server.event_ids() == []


def test_unknown_paths_and_methods_answer_json(server: DevServer) -> None:
    missing = httpx2.get(f"{server.base_url}/nowhere", headers=HEADERS)
    wrong_method = httpx2.put(f"{server.base_url}/events/ingest", headers=HEADERS)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")
