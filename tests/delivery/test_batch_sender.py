"""The delivery policy of one batch, driven through a scripted transport: no threads, no sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from dodo_ingest.client import APIConnectionError, BadRequestError, EventInput, InternalServerError
from dodo_ingest.delivery._batch_sender import POISON_THRESHOLD, Abandoned, BatchSender
from dodo_ingest.delivery._encoding import encode_event
from dodo_ingest.delivery._queues import MemoryQueue, QueuedEvent
from dodo_ingest.delivery._settings import Settings

NOW = 1_800_000_000.0


def _items(count: int, *, start: int = 0) -> list[QueuedEvent]:
    items = []
    for n in range(start, start + count):
        event = EventInput(f"evt_{n}", "cus_1", "e")
        items.append(QueuedEvent(event.event_id, NOW, encode_event(event, NOW), n + 1))
    return items


def _server_error() -> InternalServerError:
    return InternalServerError("boom", status_code=500)


class ScriptedTransport:
    """Answers each request with ``answer(ids)``: an ``int`` (ingested) or an exception."""

    def __init__(self, answer: Callable[[list[str]], int | BaseException]) -> None:
        self.answer = answer
        self.requests: list[list[str]] = []

    def send(self, body: bytes) -> int:
        ids = [event["event_id"] for event in json.loads(body)["events"]]
        self.requests.append(ids)
        outcome = self.answer(ids)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def close(self) -> None:
        pass


class Harness:
    def __init__(self, answer: Callable[[list[str]], int | BaseException], **settings: Any):
        self.transport = ScriptedTransport(answer)
        self.queue = MemoryQueue(1000, 1 << 30)
        self.reports: list[tuple[BaseException, list[str]]] = []
        self.sleeps: list[float] = []
        self.stop_after_sleeps: int | None = None
        self.sender = BatchSender(
            Settings(**settings),
            self.transport,
            self.queue,
            lambda error, items: self.reports.append((error, [i.event_id for i in items])),
            self.sleep,
            lambda text: text,
            clock=lambda: NOW,
            jitter=lambda low, high: high,
        )

    def sleep(self, seconds: float, wake_on_flush: bool) -> bool:
        self.sleeps.append(seconds)
        return self.stop_after_sleeps is None or len(self.sleeps) < self.stop_after_sleeps

    def dead(self) -> dict[str, int | None]:
        return {letter.event.event_id: letter.status_code for letter in self.queue.dead_letters}


def _poisoned_by(bad: set[str], delivered: list[str]) -> Callable[[list[str]], int | BaseException]:
    """Answers 500 to any request holding one of ``bad``; records what it acknowledges."""

    def answer(ids: list[str]) -> int | BaseException:
        if bad & set(ids):
            return _server_error()
        delivered.extend(ids)
        return len(ids)

    return answer


def test_a_poison_event_answered_with_5xx_is_isolated_and_the_rest_delivered():
    delivered: list[str] = []
    harness = Harness(_poisoned_by({"evt_5"}, delivered))
    harness.sender.deliver(_items(16))
    assert sorted(delivered) == sorted(f"evt_{n}" for n in range(16) if n != 5)
    assert harness.dead() == {"evt_5": 500}
    sender = harness.sender
    assert (sender.delivered, sender.dead_lettered) == (15, 1)
    ((error, ids),) = harness.reports
    assert isinstance(error, InternalServerError) and ids == ["evt_5"]
    (letter,) = harness.queue.dead_letters
    assert "other events were acknowledged" in letter.reason
    # Bisection is bounded: log2(16) levels, each tried POISON_THRESHOLD times at most twice.
    assert len(harness.transport.requests) <= 4 * 2 * POISON_THRESHOLD + 16


@pytest.mark.parametrize(("events", "failures", "most_acks"), [(64, 40, 16), (1000, 200, 64)])
def test_an_outage_dead_letters_nothing_and_sends_one_request_per_backoff(
    events, failures, most_acks
):
    left = {"failures": failures}

    def answer(ids: list[str]) -> int | BaseException:
        if left["failures"] > 0:
            left["failures"] -= 1
            return _server_error()
        return len(ids)

    harness = Harness(answer)
    harness.sender.deliver(_items(events))
    assert harness.dead() == {}
    assert harness.sender.delivered == events
    assert len(harness.sleeps) == failures  # one request per backoff: no storm
    # Parts get smaller only slowly: the batch is not shattered into single events.
    assert len(harness.transport.requests) - failures <= most_acks
    assert harness.reports == []


def test_a_lone_event_failing_with_5xx_without_evidence_is_kept_not_dead_lettered():
    harness = Harness(lambda ids: _server_error())
    harness.stop_after_sleeps = 3 * POISON_THRESHOLD
    with pytest.raises(Abandoned) as raised:
        harness.sender.deliver(_items(1))
    assert [item.event_id for item in raised.value.items] == ["evt_0"]
    assert harness.dead() == {}


def test_400_is_bisected_to_the_refused_event():
    def answer(ids: list[str]) -> int | BaseException:
        if "evt_2" in ids:
            return BadRequestError("bad metadata", status_code=400)
        return len(ids)

    harness = Harness(answer)
    harness.sender.deliver(_items(8))
    assert harness.dead() == {"evt_2": 400}
    assert harness.sender.delivered == 7
    assert harness.sleeps == []  # refusals are not retried


def test_backoff_grows_and_resets_after_an_acknowledgement():
    script = [APIConnectionError("reset")] * 3 + [1] + [APIConnectionError("reset")] + [1]

    harness = Harness(lambda ids: script.pop(0), retry_initial_delay=0.5, retry_max_delay=1.5)
    harness.sender.deliver(_items(1))
    harness.sender.deliver(_items(1, start=1))
    assert harness.sleeps == [0.5, 1.0, 1.5, 0.5]
    assert harness.sender.retried == 4


def test_write_off_while_in_flight_settles_nothing_afterwards():
    holder: dict[str, BatchSender] = {}

    def answer(ids: list[str]) -> int | BaseException:
        written_off = holder["sender"].write_off()  # close() gives up during the request
        assert [item.event_id for item in written_off] == ids
        return len(ids)

    harness = Harness(answer)
    holder["sender"] = harness.sender
    with pytest.raises(Abandoned) as raised:
        harness.sender.deliver(_items(3))
    assert raised.value.items == []  # already counted by the one who wrote them off
    assert harness.sender.delivered == 0


def test_duplicate_ids_in_a_batch_are_sent_once():
    items = _items(3)
    harness = Harness(lambda ids: len(ids))
    harness.sender.deliver([*items, items[0]])
    assert harness.transport.requests == [["evt_0", "evt_1", "evt_2"]]
    assert harness.sender.delivered == 4


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(1e9, 0.2), (float("inf"), 0.2), (0.05, 0.05)]
)
def test_retry_after_is_honoured_up_to_max_retry_after(retry_after, expected):
    from dodo_ingest.client import RateLimitError

    script: list[int | BaseException] = [
        RateLimitError("slow down", status_code=429, retry_after=retry_after),
        1,
    ]
    harness = Harness(lambda ids: script.pop(0), max_retry_after=0.2)
    harness.sender.deliver(_items(1))
    assert harness.sleeps == [expected]
    assert harness.sender.delivered == 1


@pytest.mark.parametrize("poisoned", [(3, 700), (3, 10), (0, 1, 2, 511, 999)])
def test_several_poison_events_are_isolated_and_the_rest_delivered(poisoned):
    bad = {f"evt_{n}" for n in poisoned}
    delivered: list[str] = []
    harness = Harness(_poisoned_by(bad, delivered))
    harness.sender.deliver(_items(1000))
    assert sorted(delivered) == sorted(f"evt_{n}" for n in range(1000) if n not in poisoned)
    assert harness.dead() == dict.fromkeys(bad, 500)
    # Bounded: a few log2(1000) rounds of POISON_THRESHOLD attempts per poisoned event.
    assert len(harness.transport.requests) <= len(poisoned) * 2 * 10 * 2 * POISON_THRESHOLD


def test_an_event_dead_lettered_while_on_error_runs_is_not_also_written_off():
    holder: dict[str, BatchSender] = {}
    written_off: list[list[str]] = []

    harness = Harness(lambda ids: BadRequestError("bad event", status_code=400))

    def report(error: BaseException, items: Any) -> None:
        # close() gives up while on_error runs: the buried event must not be handed back.
        written_off.append([item.event_id for item in holder["sender"].write_off()])

    harness.sender._report = report
    holder["sender"] = harness.sender
    with pytest.raises(Abandoned) as raised:
        harness.sender.deliver(_items(2))
    assert written_off == [["evt_1"]]  # evt_0 was dead-lettered first, evt_1 still unsettled
    assert raised.value.items == []
    assert harness.sender.dead_lettered == 1
