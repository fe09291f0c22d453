"""The pipeline attacked the way a hostile user or a broken network would: poison events,
flush floods, oversized events, an event loop flooding ``track()``, ``close()`` races. After
each, the stats balance exactly: ``enqueued == delivered + dead_lettered + dropped + queued``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import pytest

from dodo_ingest.client import EventInput, EventValidationError
from dodo_ingest.delivery import EventsDroppedError, Ingestion
from tests.delivery._sink import Answer, Gate, Sink, accept_all
from tests.delivery.conftest import FAST_RETRIES


def _balanced(ingestion: Ingestion) -> bool:
    stats = ingestion.stats
    return stats.enqueued == stats.delivered + stats.dead_lettered + stats.dropped + stats.queued


def test_an_event_the_api_answers_with_5xx_does_not_hold_back_the_others(make_ingestion):
    poison = "evt_poison"

    def respond(events: list[dict[str, Any]]) -> Answer:
        if any(event["event_id"] == poison for event in events):
            return 500, {}, b'{"message": "internal error"}'
        return accept_all(events)

    reports: list[tuple[BaseException, list[EventInput]]] = []
    with Sink(respond) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            flush_interval=30,
            on_error=lambda error, events: reports.append((error, events)),
            **FAST_RETRIES,
        )
        ids = [ingestion.track("cus_1") for _ in range(7)]
        ingestion.track("cus_1", event_id=poison)
        ids += [ingestion.track("cus_1") for _ in range(8)]
        assert ingestion.flush(30)
        received = {event_id for event_id in sink.event_ids() if event_id != poison}
        assert received == set(ids)
        stats = ingestion.stats
        assert (stats.delivered, stats.dead_lettered, stats.queued) == (15, 1, 0)
        (letter,) = ingestion.dead_letters()
        assert (letter.event.event_id, letter.status_code) == (poison, 500)
        assert [events[0].event_id for _, events in reports] == [poison]
        assert _balanced(ingestion)


def test_timed_out_flushes_take_no_queue_room_and_are_forgotten(make_ingestion):
    gate = Gate()
    with Sink(gate) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            batch_size=10,
            max_queue_size=20,
            queue_full_timeout=0,
        )
        ids = [ingestion.track("cus_1") for _ in range(10)]
        assert gate.arrived.wait(5)  # the sender is stuck on the first batch
        ids += [ingestion.track("cus_1") for _ in range(10)]
        for _ in range(2000):
            assert not ingestion.flush(timeout=0)
        queue = ingestion._pipeline.queue
        assert queue.waiting_flushes() == 0  # every timed-out flush gave its share back
        assert ingestion.stats.dropped == 0
        assert len(ingestion._pipeline.memory) == 10  # nothing but events in the queue
        gate.open()
        assert ingestion.flush(10)
        assert sorted(sink.event_ids()) == sorted(ids)
        assert _balanced(ingestion)


async def _aflush_many(ingestion: Ingestion, count: int) -> list[bool]:
    return [await ingestion.aflush(timeout=0) for _ in range(count)]


def test_timed_out_aflushes_are_forgotten_too(make_ingestion):
    gate = Gate()
    with Sink(gate) as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", batch_size=10)
        for _ in range(10):
            ingestion.track("cus_1")
        assert gate.arrived.wait(5)
        ingestion.track("cus_1")
        assert asyncio.run(_aflush_many(ingestion, 500)) == [False] * 500
        assert ingestion._pipeline.queue.waiting_flushes() == 0
        gate.open()
        assert ingestion.flush(10)


def test_the_memory_queue_is_bounded_in_bytes(make_ingestion):
    gate = Gate()
    reports: list[BaseException] = []
    with Sink(gate) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            batch_size=1,
            max_request_bytes=64 * 1024,
            max_queue_bytes=100 * 1024,
            queue_full_timeout=0,
            on_error=lambda error, events: reports.append(error),
        )
        big = {f"k{n}": "x" * 400 for n in range(25)}  # about 10 kB encoded
        ingestion.track("cus_1", metadata=big)
        assert gate.arrived.wait(5)  # one in flight, the rest waits in memory
        for _ in range(30):
            ingestion.track("cus_1", metadata=big)
        stats = ingestion.stats
        assert 8 <= stats.queued <= 11  # about 100 kB of events, whatever their count
        assert stats.dropped == 31 - stats.queued
        assert ingestion._pipeline.memory.bytes <= 100 * 1024
        gate.open()
        assert ingestion.flush(10)
        assert _balanced(ingestion)
        (error,) = reports
        assert isinstance(error, EventsDroppedError)
        assert (error.reason, error.count) == ("queue_full", stats.dropped)


def test_an_event_larger_than_a_request_is_refused_by_track(make_ingestion):
    ingestion = make_ingestion(base_url="http://127.0.0.1:9", event_name="e")
    with pytest.raises(EventValidationError) as raised:
        ingestion.track("c" * (5 * 1024 * 1024))
    assert raised.value.field == "event"
    assert "max_request_bytes" in str(raised.value)
    # Multi-byte text is measured in UTF-8 bytes, not characters.
    small = make_ingestion(base_url="http://127.0.0.1:9", event_name="e", max_request_bytes=1024)
    with pytest.raises(EventValidationError):
        small.track("cus_1", metadata={"text": "\u4e2d" * 400})  # 400 chars, 1200 bytes
    small.track("cus_1", metadata={"text": "x" * 400})
    assert ingestion.stats.enqueued == 0 and small.stats.enqueued == 1


def test_track_never_waits_for_room_in_an_event_loop(make_ingestion):
    gate = Gate()
    with Sink(gate) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url,
            event_name="e",
            batch_size=10,
            max_queue_size=10,
            queue_full_timeout=30,  # a caller outside the loop would wait this long
        )

        async def flood() -> float:
            for _ in range(10):
                ingestion.track("cus_1")
            while not gate.arrived.is_set():
                await asyncio.sleep(0.001)
            worst = 0.0
            for _ in range(100):
                start = time.monotonic()
                ingestion.track("cus_1")
                worst = max(worst, time.monotonic() - start)
            return worst

        worst = asyncio.run(flood())
        assert worst < 5  # a bound on a hang: waiting would take 30 s
        stats = ingestion.stats
        assert (stats.enqueued, stats.dropped) == (110, 90)
        gate.open()
        assert ingestion.flush(10)
        assert _balanced(ingestion)


@pytest.mark.parametrize("round_", range(5))
def test_track_racing_close_leaves_every_event_counted(make_ingestion, round_):
    with Sink() as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", batch_size=50)
        started = threading.Barrier(5)
        tracked = [0] * 4

        def produce(slot: int) -> None:
            started.wait()
            for _ in range(2000):
                ingestion.track("cus_1")
                tracked[slot] += 1

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        started.wait()
        ingestion.close(timeout=5)
        for thread in threads:
            thread.join(10)
        stats = ingestion.stats
        assert stats.enqueued == sum(tracked) == 8000
        assert stats.queued == 0  # nothing stranded in the queue after close()
        assert stats.delivered + stats.dropped == 8000
        assert len(set(sink.event_ids())) == stats.delivered


def test_a_late_track_after_the_final_sweep_is_counted_not_stranded(make_ingestion):
    with Sink() as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e")
        ingestion.track("cus_1")
        pipeline = ingestion._pipeline
        ingestion.close(timeout=5)
        pipeline.closed = False  # a producer that passed the closed check before close()
        ingestion.track("cus_1")
        pipeline.closed = True
        stats = ingestion.stats
        assert (stats.enqueued, stats.delivered, stats.dropped, stats.queued) == (2, 1, 1, 0)
        assert json.loads(json.dumps(sink.event_ids()))  # the first one was delivered


def test_a_timestamp_whose_zone_answers_differently_when_read_again_is_typed(make_ingestion):
    from datetime import UTC, datetime, timedelta, tzinfo

    class Fickle(tzinfo):
        def __init__(self) -> None:
            self.reads = 0

        def utcoffset(self, dt: datetime | None) -> timedelta:
            self.reads += 1
            if self.reads > 1:
                raise RuntimeError("asked twice")
            return timedelta(0)

        def dst(self, dt: datetime | None) -> timedelta:
            return timedelta(0)

    ingestion = make_ingestion(transport=_Accept(), event_name="e")
    moment = datetime.now(UTC).replace(tzinfo=Fickle())
    ingestion.track("cus_1", timestamp=moment)  # read once, when the event is built
    assert ingestion.flush(5)
    stats = ingestion.stats
    assert stats.enqueued == stats.delivered


class _Accept:
    def send(self, body: bytes) -> int:
        return body.count(b'"event_id"')

    def close(self) -> None:
        pass


def test_an_outbox_flush_waits_for_events_appended_while_a_short_batch_was_sent(
    make_ingestion, tmp_path
):
    gate = Gate()
    with Sink(gate) as sink:
        ingestion = make_ingestion(
            base_url=sink.base_url, event_name="e", outbox=tmp_path / "outbox.db"
        )
        first = ingestion.track("cus_1")
        assert gate.arrived.wait(5)  # a short batch of one is in flight
        later = [ingestion.track("cus_1") for _ in range(20)]
        results: list[bool] = []
        flusher = threading.Thread(target=lambda: results.append(ingestion.flush(10)))
        flusher.start()
        gate.open()
        flusher.join(15)
        assert results == [True]
        outbox = ingestion.outbox
        assert outbox is not None and outbox.count_pending() == 0
        assert sorted(sink.event_ids()) == sorted([first, *later])


class _Hanging:
    """A transport whose requests never come back before ``release``."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()

    def send(self, body: bytes) -> int:
        self.arrived.set()
        self.release.wait(10)
        return body.count(b'"event_id"')

    def close(self) -> None:
        pass


def test_a_flush_waiting_on_events_that_close_drops_answers_false(make_ingestion):
    transport = _Hanging()
    ingestion = make_ingestion(transport=transport, event_name="e")
    ingestion.track("cus_1")
    assert transport.arrived.wait(5)
    ingestion.track("cus_1")  # queued behind the hanging request
    results: list[bool] = []
    flusher = threading.Thread(target=lambda: results.append(ingestion.flush(10)))
    flusher.start()
    ingestion.close(timeout=0.2)
    flusher.join(10)
    transport.release.set()
    assert results == [False]  # never told "delivered" for events that were dropped
    assert ingestion.stats.dropped == 2
    assert not ingestion.flush(1)  # and a flush after close says the same


def test_a_second_close_waits_for_the_first(make_ingestion):
    transport = _Hanging()
    ingestion = make_ingestion(transport=transport, event_name="e")
    ingestion.track("cus_1")
    assert transport.arrived.wait(5)
    first = threading.Thread(target=ingestion.close, args=(10,))
    first.start()
    while not ingestion._pipeline.closed:  # the first close() is under way
        time.sleep(0.001)
    transport.release.set()
    ingestion.close(10)  # returns once the first one is done, not at once
    assert ingestion.stats.delivered == 1
    first.join(10)


def test_a_cancelled_aflush_gives_its_waiter_back(make_ingestion):
    transport = _Hanging()
    ingestion = make_ingestion(transport=transport, event_name="e")

    async def cancelled_flushes() -> None:
        for _ in range(200):
            ingestion.track("cus_1")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.0005):
                    await ingestion.aflush(10)

    asyncio.run(cancelled_flushes())
    assert ingestion._pipeline.queue.waiting_flushes() == 0
    transport.release.set()
    assert ingestion.flush(10)


def test_an_outbox_backend_error_never_reaches_the_caller(make_ingestion):
    from dodo_ingest.delivery import Outbox

    class Broken(Outbox):
        def append(self, event_id: str, timestamp: float, body: str) -> int:
            raise ConnectionError("store unreachable")

        def last_seq(self) -> int:
            raise ConnectionError("store unreachable")

        def has_other_pending(self) -> bool:
            if self.armed:
                raise ConnectionError("store unreachable")
            return False

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        backend = Broken(f"{tmp}/outbox.db")
        backend.armed = False
        ingestion = make_ingestion(transport=_Hanging(), event_name="e", outbox=backend)
        backend.armed = True
        assert ingestion.track("cus_1").startswith("evt_")  # no ConnectionError
        assert not ingestion.flush(1)  # no ConnectionError either: the store cannot be read
        stats = ingestion.stats
        assert (stats.enqueued, stats.dropped, stats.queued) == (1, 1, 0)
        ingestion.close(1)
        backend.close()


def test_an_on_error_raising_system_exit_in_the_sender_counts_once(make_ingestion):
    from dodo_ingest.client import BadRequestError

    class Refuse:
        def send(self, body: bytes) -> int:
            raise BadRequestError("bad event", status_code=400)

        def close(self) -> None:
            pass

    def on_error(error: BaseException, events: list[EventInput]) -> None:
        raise SystemExit(1)

    ingestion = make_ingestion(transport=Refuse(), event_name="e", on_error=on_error)
    ingestion.track("cus_1")
    assert ingestion.flush(5)
    stats = ingestion.stats
    assert (stats.dead_lettered, stats.queued) == (1, 0) and _balanced(ingestion)
    assert len(ingestion.dead_letters()) == 1
