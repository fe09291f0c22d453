"""A sender thread killed by an error that is not an ``Exception`` (raised by a transport):
what it held is counted once, and a flush waiting for it starts a new one."""

from __future__ import annotations

import asyncio
import threading
import time

from dodo_ingest.client import EventInput
from dodo_ingest.delivery import EventsDroppedError, _waiter


class Kill(BaseException):
    """Not an ``Exception``: nothing in the sender catches it before the thread ends."""


class Transport:
    """Kills the sender on the first ``kills`` sends (after ``release`` is set), then
    acknowledges; ``arrived`` is set by the first send."""

    def __init__(self, kills: int) -> None:
        self.kills = kills
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.delivered: list[bytes] = []

    def send(self, body: bytes) -> int:
        self.arrived.set()
        self.release.wait(20)
        if self.kills:
            self.kills -= 1
            raise Kill
        self.delivered.append(body)
        return body.count(b'"event_id"')

    def close(self) -> None:
        pass


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_events_written_off_by_close_are_not_counted_again_when_the_sender_dies(
    make_ingestion,
):
    transport = Transport(kills=1)
    reports: list[tuple[BaseException, list[EventInput]]] = []
    ingestion = make_ingestion(
        transport=transport,
        event_name="e",
        flush_interval=60,
        on_error=lambda error, events: reports.append((error, events)),
    )
    ids = [ingestion.track("cus_1") for _ in range(3)]
    assert not ingestion.flush(0)  # wakes the sender, which sends the three
    assert transport.arrived.wait(20)
    ingestion.close(timeout=0.1)  # the request hangs: its events are written off, counted
    assert ingestion.stats.dropped == 3
    thread = ingestion._pipeline._thread
    transport.release.set()  # the request ends by killing the sender
    _wait_until(lambda: not thread.is_alive(), "the sender never ended")
    stats = ingestion.stats
    assert (stats.enqueued, stats.dropped, stats.delivered, stats.queued) == (3, 3, 0, 0)
    dropped = [
        (error.reason, [event.event_id for event in events])
        for error, events in reports
        if isinstance(error, EventsDroppedError)
    ]
    assert dropped == [("shutdown", ids)]


def test_a_waiting_flush_starts_a_new_sender_when_the_sender_dies(make_ingestion):
    transport = Transport(kills=1)
    transport.release.set()
    ingestion = make_ingestion(transport=transport, event_name="e", flush_interval=60)
    ids = [ingestion.track("cus_1") for _ in range(3)]
    assert ingestion.flush(10)  # the first sender dies in its request; a second delivers
    stats = ingestion.stats
    assert (stats.delivered, stats.dropped, stats.queued) == (3, 0, 0)
    assert [body.count(b'"event_id"') for body in transport.delivered] == [3]
    assert all(event_id.encode() in transport.delivered[0] for event_id in ids)


def test_a_waiting_aflush_starts_a_new_sender_when_the_sender_dies(make_ingestion):
    transport = Transport(kills=1)
    transport.release.set()
    ingestion = make_ingestion(transport=transport, event_name="e", flush_interval=60)
    for _ in range(2):
        ingestion.track("cus_1")
    assert asyncio.run(ingestion.aflush(10))
    assert (ingestion.stats.delivered, ingestion.stats.queued) == (2, 0)


class Acknowledging:
    """Acknowledges every send."""

    def send(self, body: bytes) -> int:
        return body.count(b'"event_id"')

    def close(self) -> None:
        pass


def test_a_flush_whose_wait_ends_as_the_events_settle_is_true(make_ingestion, monkeypatch):
    """The sender settles the events just as one slice of the flush's wait runs out (a
    first transport build of about a second made it land there every time)."""
    original = _waiter.Waiter.wait

    def slice_ends_as_fired(self: _waiter.Waiter, timeout: float | None) -> bool:
        self._event.wait(20)  # until the sender fires it...
        return False  # ...while the slice reports that it timed out

    ingestion = make_ingestion(transport=Acknowledging(), event_name="e", flush_interval=60)
    ingestion.track("cus_1")
    monkeypatch.setattr(_waiter.Waiter, "wait", slice_ends_as_fired)
    assert ingestion.flush(10)
    monkeypatch.setattr(_waiter.Waiter, "wait", original)
    assert (ingestion.stats.delivered, ingestion.stats.queued) == (1, 0)


def test_an_aflush_whose_wait_ends_as_the_events_settle_is_true(make_ingestion, monkeypatch):
    original = _waiter.Waiter.async_wait

    async def slice_ends_as_fired(self: _waiter.Waiter, timeout: float | None) -> bool:
        await original(self, 20)
        return False

    ingestion = make_ingestion(transport=Acknowledging(), event_name="e", flush_interval=60)
    ingestion.track("cus_1")
    monkeypatch.setattr(_waiter.Waiter, "async_wait", slice_ends_as_fired)
    assert asyncio.run(ingestion.aflush(10))
    assert (ingestion.stats.delivered, ingestion.stats.queued) == (1, 0)
