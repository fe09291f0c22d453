"""Fault injection: each kind is observable, faults are reproducible with a seed, and a
retrying client still delivers every event exactly once."""

from __future__ import annotations

import time
from typing import Any

import httpx2
import pytest

from dodo_ingest import APIConnectionError, DodoClient, InternalServerError, RateLimitError
from dodo_ingest.devserver import FAULT_KINDS, DevServer, parse_faults
from tests.devserver._helpers import events

HEADERS = {"Authorization": "Bearer k"}


def post(server: DevServer, batch: list[dict[str, Any]], timeout: float = 10) -> httpx2.Response:
    return httpx2.post(
        f"{server.base_url}/events/ingest", json={"events": batch}, headers=HEADERS, timeout=timeout
    )


def test_5xx_answers_500_without_storing(server: DevServer) -> None:
    server.set_faults("5xx=1")
    batch = events(3)
    response = post(server, batch)
    assert response.status_code == 500
    assert response.json()["code"] == "injected_fault"
    assert server.event_ids() == []
    assert server.stats["faults_injected"]["5xx"] == 1
    assert server.stats["requests"] == {"500": 1}


def test_429_carries_retry_after_without_storing(server: DevServer) -> None:
    server.set_faults("429=1", retry_after=0.25)
    response = post(server, events(2))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "0.25"
    assert server.event_ids() == []
    with (
        DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client,
        pytest.raises(RateLimitError) as caught,
    ):
        client.events.ingest(events(1))
    assert caught.value.retry_after == 0.25
    assert server.stats["faults_injected"]["429"] == 2


def test_reset_drops_the_connection_without_storing(server: DevServer) -> None:
    server.set_faults("reset=1")
    with pytest.raises(httpx2.RemoteProtocolError):
        post(server, events(2))
    with (
        DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client,
        pytest.raises(APIConnectionError),
    ):
        client.events.ingest(events(1))
    assert server.event_ids() == []
    assert server.stats["faults_injected"]["reset"] == 2
    assert server.stats["requests"] == {}


def test_lost_ack_stores_the_batch_then_drops_the_connection(server: DevServer) -> None:
    server.set_faults("lost_ack=1")
    batch = events(4)
    with pytest.raises(httpx2.RemoteProtocolError):
        post(server, batch)
    assert server.event_ids() == [event["event_id"] for event in batch]
    server.set_faults(None)
    assert post(server, batch).json() == {"ingested_count": 0}  # the retry finds them stored
    assert server.stats["faults_injected"]["lost_ack"] == 1
    assert server.stats["duplicates_ignored"] == 4


def test_an_invalid_batch_under_lost_ack_is_dropped_unstored(server: DevServer) -> None:
    server.set_faults("lost_ack=1")
    batch = events(2)
    batch[1]["event_id"] = batch[0]["event_id"]
    with pytest.raises(httpx2.RemoteProtocolError):
        post(server, batch)
    assert server.event_ids() == []


def test_slow_stores_then_answers_after_the_delay() -> None:
    with DevServer(faults="slow=1", slow_delay=0.3) as server:
        batch = events(2)
        with pytest.raises(httpx2.ReadTimeout):
            post(server, batch, timeout=0.1)
        started = time.monotonic()
        response = post(server, events(1))
        waited = time.monotonic() - started
        assert response.json() == {"ingested_count": 1}
        assert waited >= 0.3
        assert set(server.event_ids()) >= {event["event_id"] for event in batch}
        assert server.stats["faults_injected"]["slow"] == 2


def test_only_ingestion_misbehaves(server: DevServer) -> None:
    server.set_faults("5xx=1")
    response = httpx2.get(f"{server.base_url}/events", headers=HEADERS)
    assert response.status_code == 200


def test_set_faults_none_turns_them_off(server: DevServer) -> None:
    server.set_faults("5xx=1")
    assert post(server, events(1)).status_code == 500
    server.set_faults(None)
    assert post(server, events(1)).status_code == 200


def outcomes(server: DevServer, count: int) -> list[str]:
    """What each of ``count`` ingest requests got: a status code or an exception name."""
    seen = []
    with httpx2.Client(base_url=server.base_url, headers=HEADERS) as http:
        for _ in range(count):
            try:
                seen.append(
                    str(http.post("/events/ingest", json={"events": events(1)}).status_code)
                )
            except httpx2.TransportError as error:
                seen.append(type(error).__name__)
    return seen


SPEC = "5xx=0.2,429=0.2,reset=0.1,lost_ack=0.1,slow=0.1"


def test_a_seed_makes_the_faults_reproducible() -> None:
    runs = []
    for seed in (7, 7, 8):
        with DevServer(faults=SPEC, seed=seed, retry_after=0, slow_delay=0) as server:
            runs.append((outcomes(server, 40), server.stats["faults_injected"]))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]
    sequence, counts = runs[0]
    assert {"500", "429", "200", "RemoteProtocolError"} <= set(sequence)
    assert all(counts[kind] > 0 for kind in FAULT_KINDS)


def test_set_faults_with_a_seed_restarts_the_sequence(server: DevServer) -> None:
    server.set_faults(SPEC, retry_after=0, seed=3, slow_delay=0)
    first = outcomes(server, 15)
    server.set_faults(SPEC, seed=3)
    assert outcomes(server, 15) == first


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("5xx=2", "'5xx=2'"),
        ("boom=0.1", "'boom=0.1'"),
        ("5xx", "'5xx'"),
        ("429=abc", "'429=abc'"),
        ("5xx=0.1,5xx=0.2", "given twice"),
        ("5xx=0.6,429=0.6", "more than 1"),
    ],
)
def test_a_bad_spec_raises_naming_the_part(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        DevServer(faults=spec)
    with pytest.raises(ValueError, match=needle):
        parse_faults(spec)


def test_a_spec_parses_every_kind() -> None:
    assert parse_faults(" 5xx=0.1, 429=0.05,reset=0.05,lost_ack=0.05,slow=0.02 ") == {
        "5xx": 0.1,
        "429": 0.05,
        "reset": 0.05,
        "lost_ack": 0.05,
        "slow": 0.02,
    }
    assert parse_faults(None) == parse_faults("") == {}


def test_a_retrying_client_delivers_every_event_exactly_once() -> None:
    faults = "5xx=0.15,429=0.1,reset=0.1,lost_ack=0.15,slow=0.1"
    with DevServer(faults=faults, seed=11, retry_after=0.01, slow_delay=0.05) as server:
        sent: list[str] = []
        with DodoClient(api_key="k", base_url=server.base_url, max_retries=12, timeout=5) as client:
            for _ in range(12):
                batch = events(25)
                client.events.ingest(batch)
                sent += [event["event_id"] for event in batch]
        stored = server.event_ids()
        stats = server.stats
    assert sorted(stored) == sorted(sent)
    assert stats["events_ingested"] == len(sent)
    assert sum(stats["faults_injected"].values()) > 0
    assert stats["faults_injected"]["lost_ack"] > 0


def test_our_client_raises_on_5xx_without_retries(server: DevServer) -> None:
    server.set_faults("5xx=1")
    with (
        DodoClient(api_key="k", base_url=server.base_url, max_retries=0) as client,
        pytest.raises(InternalServerError),
    ):
        client.events.ingest(events(1))
