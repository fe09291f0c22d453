"""Delivery against real HTTP servers: batching, dedupe, byte budget, bisection, 401, expiry."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import pytest

from dodo_ingest.client import AuthenticationError, BadRequestError, EventInput
from dodo_ingest.client._errors import UnexpectedResponseError
from dodo_ingest.delivery import EventExpiredError, _batch_sender
from tests.delivery._sink import Answer, RefuseIds, Sink, accept_all
from tests.delivery.conftest import API_KEY, FAST_RETRIES


def test_events_are_batched_by_count_and_all_delivered(server, make_ingestion):
    ingestion = make_ingestion(
        base_url=server.base_url, event_name="api.call", batch_size=250, flush_interval=30
    )
    ids = [ingestion.track(f"cus_{i % 7}", metadata={"n": i}) for i in range(1000)]
    assert ingestion.flush(10)
    assert server.event_ids() == ids
    assert server.stats["requests"] == {"200": 4}
    assert ingestion.stats.delivered == 1000
    assert ingestion.stats.queued == 0


def test_a_partial_batch_goes_out_after_flush_interval_without_flush(server, make_ingestion):
    ingestion = make_ingestion(base_url=server.base_url, event_name="e", flush_interval=0.1)
    event_id = ingestion.track("cus_1")
    deadline = time.monotonic() + 5
    while event_id not in server.event_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.event_ids() == [event_id]


def test_duplicate_ids_in_one_batch_are_sent_once(make_ingestion):
    with Sink() as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", flush_interval=30)
        for _ in range(3):
            ingestion.track("cus_1", event_id="same-id")
        ingestion.track("cus_1", event_id="other-id")
        assert ingestion.flush(5)
        assert sink.event_ids() == ["same-id", "other-id"]
        assert ingestion.stats.delivered == 4
        assert ingestion.stats.queued == 0


def test_requests_stay_under_the_byte_budget(make_ingestion):
    with Sink() as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url, event_name="e", flush_interval=30, max_request_bytes=20_000
        )
        ids = [ingestion.track("cus_1", metadata={"text": "x" * 400}) for _ in range(300)]
        assert ingestion.flush(5)
        sizes = [size for size, _, _ in sink.requests]
        assert max(sizes) <= 20_000
        assert len(sizes) > 1
        assert sink.event_ids() == ids


def test_413_splits_the_batch_and_resends(make_ingestion):
    def at_most_100(events: list[dict[str, Any]]) -> Answer:
        if len(events) > 100:
            return 413, {}, b'{"message": "payload too large"}'
        return accept_all(events)

    with Sink(at_most_100) as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", flush_interval=30)
        ids = [ingestion.track("cus_1") for _ in range(1000)]
        assert ingestion.flush(5)
        delivered = [
            e["event_id"] for _, events, _ in sink.requests if len(events) <= 100 for e in events
        ]
        assert sorted(delivered) == sorted(ids)
        assert ingestion.stats.dead_lettered == 0


def test_a_poison_event_among_1000_is_isolated_in_few_requests(make_ingestion):
    errors: list[tuple[BaseException, list[EventInput]]] = []
    refuse = RefuseIds({"poison-500"}, "timestamp is older than 1 hour")
    with Sink(refuse) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            on_error=lambda error, events: errors.append((error, events)),
        )
        ids = [
            ingestion.track("cus_1", event_id="poison-500" if i == 500 else None)
            for i in range(1000)
        ]
        assert ingestion.flush(10)
    assert sorted(refuse.accepted) == sorted(i for i in ids if i != "poison-500")
    assert len(sink.requests) <= 1 + 2 * 10  # one refused batch, then two requests per halving
    (letter,) = ingestion.dead_letters()
    assert letter.event.event_id == "poison-500"
    assert letter.status_code == 400
    assert "1 hour" in letter.reason
    assert ingestion.stats.dead_lettered == 1
    assert ingestion.stats.delivered == 999
    ((error, events),) = errors
    assert isinstance(error, BadRequestError)
    assert [event.event_id for event in events] == ["poison-500"]


def test_401_pauses_keeps_the_events_reports_and_retries_on_flush(make_ingestion, caplog):
    answers = {"status": 401}

    def auth(events: list[dict[str, Any]]) -> Answer:
        if answers["status"] == 401:
            return 401, {}, b'{"message": "invalid API key"}'
        return accept_all(events)

    errors: list[tuple[BaseException, list[EventInput]]] = []
    caplog.set_level(logging.DEBUG, logger="dodo_ingest")
    with Sink(auth) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            auth_retry_interval=60,
            on_error=lambda error, events: errors.append((error, events)),
        )
        ids = [ingestion.track("cus_1") for _ in range(10)]
        assert not ingestion.flush(0.5)
        assert ingestion.stats.queued == 10
        assert ingestion.stats.dead_lettered == 0
        ((error, events),) = errors
        assert isinstance(error, AuthenticationError)
        assert [event.event_id for event in events] == ids
        assert "401" in caplog.text
        refused = len(sink.requests)
        answers["status"] = 200  # the key was fixed on the server side
        assert ingestion.flush(5)  # flush() retries at once instead of waiting 60 s
        assert len(sink.requests) > refused
        assert sink.requests[-1][1] == [json.loads(json.dumps(e)) for e in sink.requests[0][1]]
        assert ingestion.stats.delivered == 10
        assert len(errors) == 1
    assert API_KEY not in caplog.text


def test_events_that_outlive_max_event_age_are_dead_lettered(make_ingestion):
    errors: list[BaseException] = []

    def always_503(events: list[dict[str, Any]]) -> Answer:
        return 503, {}, b'{"message": "down"}'

    with Sink(always_503) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            max_event_age=0.5,
            on_error=lambda error, events: errors.append(error),
            **FAST_RETRIES,
        )
        ingestion.track("cus_1")
        assert ingestion.flush(5)
        assert len(sink.requests) >= 2  # retried with the same id until it expired
        assert {e["event_id"] for _, events, _ in sink.requests for e in events} == {
            ingestion.dead_letters()[0].event.event_id
        }
    (letter,) = ingestion.dead_letters()
    assert letter.reason.startswith("expired")
    assert "503" in letter.reason
    assert isinstance(errors[0], EventExpiredError)
    assert ingestion.stats.retried >= 1


def test_an_on_error_that_raises_is_logged_and_delivery_goes_on(make_ingestion, caplog):
    def poison_first(events: list[dict[str, Any]]) -> Answer:
        if any(e["customer_id"] == "bad" for e in events):
            return 400, {}, b'{"message": "bad customer"}'
        return accept_all(events)

    def broken(error: BaseException, events: list[EventInput]) -> None:
        raise RuntimeError("callback bug")

    with Sink(poison_first) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url, event_name="e", flush_interval=30, on_error=broken
        )
        ingestion.track("bad")
        good = ingestion.track("good")
        assert ingestion.flush(5)
        assert good in sink.event_ids()
    assert "on_error callback raised" in caplog.text
    assert ingestion.stats.dead_lettered == 1


def test_the_api_key_never_reaches_logs_reprs_or_reasons(server, make_ingestion, caplog):
    caplog.set_level(logging.DEBUG)
    reported: list[str] = []

    def echo_key(events: list[dict[str, Any]]) -> Answer:
        return 400, {}, json.dumps({"message": f"bad request from Bearer {API_KEY}"}).encode()

    with Sink(echo_key) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            on_error=lambda error, events: reported.append(repr(error) + str(error)),
        )
        ingestion.track("cus_1")
        assert ingestion.flush(5)
        (letter,) = ingestion.dead_letters()
        assert API_KEY not in letter.reason
        assert "***" in letter.reason
    server.set_faults("5xx=0.5,reset=0.5", seed=1)
    other = make_ingestion(base_url=server.base_url, event_name="e", **FAST_RETRIES)
    other.track("cus_1")
    other.flush(1)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(ingestion) + repr(other) + str(ingestion.stats)
    assert "sending 1 event(s) failed" in caplog.text


@pytest.mark.anyio
async def test_aflush_waits_without_blocking_the_event_loop(make_ingestion):
    release = threading.Event()

    def slow(events: list[dict[str, Any]]) -> Answer:
        release.wait(5)
        return accept_all(events)

    with Sink(slow) as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", flush_interval=30)
        event_id = ingestion.track("cus_1")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            for _ in range(20):
                await asyncio.sleep(0.01)
                ticks += 1
            release.set()

        flushed, _ = await asyncio.gather(ingestion.aflush(5), tick())
        assert flushed
        assert ticks == 20  # the loop kept running while aflush waited on the server
        assert sink.event_ids() == [event_id]
        assert await ingestion.aflush(0.01)  # nothing left: returns at once


def test_retry_after_is_honoured_and_the_same_ids_are_resent(make_ingestion):
    answers = iter([(429, {"Retry-After": "0.3"}), (503, {}), (200, {})])
    moments: list[float] = []

    def throttled(events: list[dict[str, Any]]) -> Answer:
        moments.append(time.monotonic())
        status, headers = next(answers)
        if status == 200:
            return accept_all(events)
        return status, headers, b'{"message": "slow down"}'

    with Sink(throttled) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            retry_initial_delay=0.01,
            retry_max_delay=0.02,
        )
        ids = [ingestion.track("cus_1") for _ in range(5)]
        assert ingestion.flush(5)
    assert moments[1] - moments[0] >= 0.3  # waited as asked
    assert moments[2] - moments[1] < 0.3  # then the short backoff
    assert [[e["event_id"] for e in events] for _, events, _ in sink.requests] == [ids] * 3
    assert ingestion.stats.retried == 10


def test_an_unexpected_sender_error_loses_nothing(make_ingestion, caplog, monkeypatch):
    with Sink() as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", flush_interval=30)
        encode = _batch_sender.encode_batch
        calls = {"n": 0}

        def broken_once(items: Any) -> bytes:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug")
            return encode(items)

        monkeypatch.setattr(_batch_sender, "encode_batch", broken_once)
        ids = [ingestion.track("cus_1") for _ in range(10)]
        assert ingestion.flush(5)
        assert sink.event_ids() == ids
        assert "delivery loop failed" in caplog.text


@pytest.mark.anyio
async def test_aclose_flushes_and_stops_without_blocking_the_loop(make_ingestion, tmp_path):
    release = threading.Event()

    def slow(events: list[dict[str, Any]]) -> Answer:
        release.wait(5)
        return accept_all(events)

    with Sink(slow) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url, event_name="e", outbox=tmp_path / "outbox.db"
        )
        ids = [ingestion.track("cus_1") for _ in range(3)]
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            for _ in range(20):
                await asyncio.sleep(0.01)
                ticks += 1
            release.set()

        await asyncio.gather(ingestion.aclose(5), tick())
        assert ticks == 20
        assert sink.event_ids() == ids
        assert ingestion.stats.queued == 0
        assert "dodo-ingest-sender" not in {t.name for t in threading.enumerate()}
        ingestion.track("cus_1")
        assert ingestion.stats.dropped == 1  # closed: later events are refused and counted


@pytest.mark.parametrize(
    ("status", "payload"),
    [
        (202, b""),
        (204, b""),
        (200, b""),
        (200, b"{}"),
        (200, b'{"status": "queued"}'),
        (200, b'{"ingested_count": "3"}'),
        (200, b'{"ingested_count": true}'),
        (200, b'{"ingested_count": 3'),
        (200, b"<html><body>Sign in to the Wi-Fi</body></html>"),
    ],
    ids=[
        "202-empty",
        "204",
        "200-empty",
        "200-no-count",
        "200-other-json",
        "200-count-as-text",
        "200-count-as-bool",
        "200-truncated-json",
        "200-html-portal",
    ],
)
def test_a_2xx_that_is_no_acknowledgement_is_resent_with_the_same_ids_and_reported(
    make_ingestion, status, payload
):
    answers = [(status, {}, payload), (status, {}, payload)]

    def respond(events: list[dict[str, Any]]) -> Answer:
        return answers.pop(0) if answers else accept_all(events)

    reports: list[tuple[BaseException, list[EventInput]]] = []
    with Sink(respond) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            on_error=lambda error, events: reports.append((error, events)),
            **FAST_RETRIES,
        )
        tracked = [ingestion.track("cus_1") for _ in range(3)]
        assert ingestion.flush(5)
        stats = ingestion.stats
        assert (stats.delivered, stats.ingested, stats.retried, stats.dead_lettered) == (3, 3, 6, 0)
        assert sink.event_ids() == tracked * 3  # resent twice, with the same ids
        assert ingestion.dead_letters() == []
    ((error, events),) = reports  # reported once, not once per attempt
    assert isinstance(error, UnexpectedResponseError)
    assert [event.event_id for event in events] == tracked
