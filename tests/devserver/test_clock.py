"""The test clock: ``server.clock`` and ``/_dev/clock`` move the server's time forward, and
everything time-dependent follows it (the ingest window, the deduction lag, created times)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dodo_ingest import DodoClient, MeterAggregation
from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import events, iso, unique

API_KEY = "sk_test_clock_0123456789"


@pytest.fixture
def client(server: DevServer) -> Iterator[DodoClient]:
    with DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as made:
        yield made


@pytest.fixture
def dev(server: DevServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.base_url, timeout=10) as made:
        yield made


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_clock_runs_with_the_system_clock_until_moved(server: DevServer, dev: Any) -> None:
    before = datetime.now(UTC)
    body = dev.get("/_dev/clock").json()
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= parse(body["now"]) <= after
    assert body["offset_seconds"] == 0
    assert before - timedelta(milliseconds=1) <= server.clock.now() <= datetime.now(UTC)


def test_advance_over_http_and_in_python(server: DevServer, dev: Any) -> None:
    answer = dev.post("/_dev/clock", json={"advance": {"days": 30, "hours": 1}})
    assert answer.status_code == 200
    assert answer.json()["offset_seconds"] == pytest.approx(30 * 86400 + 3600)
    moved = server.clock.advance(minutes=30, seconds=15)
    assert server.clock.offset == timedelta(days=30, hours=1, minutes=30, seconds=15)
    assert moved - datetime.now(UTC) > timedelta(days=30, hours=1, minutes=30)
    assert dev.get("/_dev/clock").json()["offset_seconds"] == pytest.approx(30 * 86400 + 5415)


def test_set_moves_to_a_moment_and_never_back(server: DevServer, dev: Any) -> None:
    target = datetime.now(UTC) + timedelta(days=365)
    answer = dev.post("/_dev/clock", json={"now": iso(target)})
    assert answer.status_code == 200
    assert abs(parse(answer.json()["now"]) - target) < timedelta(seconds=1)
    back = dev.post("/_dev/clock", json={"now": iso(target - timedelta(days=1))})
    assert back.status_code == 422
    assert "only moves forward" in back.json()["message"]
    with pytest.raises(ValueError, match="only moves forward"):
        server.clock.set(datetime.now(UTC))
    with pytest.raises(ValueError, match="aware"):
        server.clock.set(datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, '"now"'),
        ({"now": "tomorrow"}, "RFC 3339"),
        ({"now": 5}, "RFC 3339"),
        ({"advance": {"days": -1}}, "days must be a finite number >= 0"),
        ({"advance": {"weeks": 1}}, "advance must be an object"),
        ({"advance": {"hours": "1"}}, "hours"),
        ({"advance": 5}, "advance must be an object"),
        ({"advance": {"days": 3661}}, "at most 3660 days"),
        ({"advance": {"days": 1e300}}, "at most 3660 days"),
        ({"now": "2999-01-01T00:00:00Z"}, "at most 3660 days"),
        ({"now": "2030-01-01T00:00:00Z", "advance": {"days": 1}}, '"now"'),
    ],
)
def test_bad_clock_requests_are_422(dev: Any, body: dict[str, Any], needle: str) -> None:
    answer = dev.post("/_dev/clock", json=body)
    assert answer.status_code == 422
    assert needle in answer.json()["message"]
    assert dev.get("/_dev/clock").json()["offset_seconds"] == 0


def test_the_ingest_window_moves_with_the_clock(server: DevServer, client: DodoClient) -> None:
    server.clock.advance(days=30)
    now = server.clock.now()
    fresh = events(1, timestamp=iso(now - timedelta(minutes=59)))
    assert client.events.ingest(fresh).ingested_count == 1
    wall = events(1, timestamp=iso(datetime.now(UTC)))  # a month old by the server's clock
    with httpx2.Client(base_url=server.base_url, timeout=10) as http:
        answer = http.post(
            "/events/ingest",
            json={"events": wall},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert answer.status_code == 400
    assert "older than 1 hour" in answer.text or "timestamp" in answer.json()["code"]
    untimed = events(1)  # a missing timestamp is the server's time
    client.events.ingest(untimed)
    stored = client.events.retrieve(untimed[0]["event_id"]).timestamp
    assert abs(stored - server.clock.now()) < timedelta(seconds=5)


def test_created_times_follow_the_clock(server: DevServer, client: DodoClient) -> None:
    server.clock.advance(days=400)
    meter = client.meters.create(
        name="Calls",
        event_name="api.call",
        measurement_unit="calls",
        aggregation=MeterAggregation("count"),
    )
    entitlement = client.credits.create_entitlement(name="Credits", unit="credits")
    entry = client.credits.create_ledger_entry(entitlement.id, "cus_1", amount="5")
    for moment in (meter.created_at, entry.created_at):
        assert abs(moment - server.clock.now()) < timedelta(seconds=5)
    balance = client.credits.balance(entitlement.id, "cus_1")
    assert abs(balance.created_at - server.clock.now()) < timedelta(seconds=5)


def test_the_deduction_lag_counts_by_the_clock() -> None:
    with (
        DevServer(deduction_lag=3600) as server,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        event_name = unique("work")
        meter = client.meters.create(
            name="Work",
            event_name=event_name,
            measurement_unit="credits",
            aggregation=MeterAggregation("sum", "credits"),
        )
        entitlement = client.credits.create_entitlement(name="Credits", unit="credits")
        server.link_meter_to_credits(meter.id, entitlement.id, "1")
        client.credits.create_ledger_entry(entitlement.id, "cus_1", amount="10")
        client.events.ingest(
            events(1, customer_id="cus_1", event_name=event_name, metadata={"credits": "4"})
        )
        assert client.credits.balance(entitlement.id, "cus_1").balance == Decimal("10.00")
        server.clock.advance(minutes=59)
        assert client.credits.balance(entitlement.id, "cus_1").balance == Decimal("10.00")
        server.clock.advance(minutes=1)
        assert client.credits.balance(entitlement.id, "cus_1").balance == Decimal("6.00")


def test_a_file_database_keeps_the_clock(tmp_path: Path) -> None:
    db = tmp_path / "dev.db"
    with DevServer(db=db) as server:
        server.clock.advance(days=10)
    with DevServer(db=db) as server:
        assert server.clock.offset >= timedelta(days=10)
        assert server.clock.offset < timedelta(days=10, seconds=5)
