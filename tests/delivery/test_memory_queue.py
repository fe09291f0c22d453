"""The compact in-memory queue: what goes in comes out as the same ``QueuedEvent`` items
(ids read back from the encoded bodies, sequence numbers from positions), requeued items
first, and the flush bookkeeping still exact."""

from __future__ import annotations

import itertools
import json
import signal
import time

from hypothesis import given
from hypothesis import strategies as st

from dodo_ingest.client import EventInput
from dodo_ingest.delivery._encoding import encode_event
from dodo_ingest.delivery._ids import format_epoch
from dodo_ingest.delivery._queues import MemoryQueue, QueuedEvent

NOW = time.time()


def _put(queue: MemoryQueue, event_id: str, offset: float = 0.0) -> QueuedEvent:
    event = EventInput(event_id=event_id, customer_id="cus_1", event_name="e")
    body = encode_event(event, NOW + offset)
    assert queue.put(NOW + offset, body) == 1
    # The body comes out as the UTF-8 bytes of the text put in (sent without re-encoding).
    return QueuedEvent(event_id, NOW + offset, body.encode(), queue.next_seq - 1)


def test_items_come_out_as_they_went_in_with_their_sequence_numbers():
    queue = MemoryQueue(100, 1 << 20)
    expected = [_put(queue, f"evt_{i}", i) for i in range(7)]
    assert len(queue) == 7
    assert queue.take(3) == expected[:3]
    assert queue.take(10) == expected[3:]
    assert queue.take(10) == []
    assert queue.bytes == 0


@given(st.text(min_size=1, max_size=40))
def test_any_event_id_is_read_back_from_its_body(event_id):
    queue = MemoryQueue(10, 1 << 20)
    try:
        expected = _put(queue, event_id)
    except ValueError:
        return  # an id the API refuses never reaches the queue
    (item,) = queue.take(1)
    assert item == expected
    assert json.loads(item.body)["event_id"] == item.event_id


def test_ids_with_quotes_backslashes_and_non_ascii_characters():
    queue = MemoryQueue(10, 1 << 20)
    ids = ['a"b', "c\\d", "é\u2028x", 'end\\"', "\\"]
    expected = [_put(queue, event_id) for event_id in ids]
    assert [item.event_id for item in queue.take(10)] == ids
    assert expected  # built with the same ids


def test_requeued_items_come_first_and_hold_back_the_settled_mark():
    queue = MemoryQueue(100, 1 << 20)
    items = [_put(queue, f"evt_{i}", i) for i in range(6)]
    batch = queue.take(4)
    # The sender puts back two of them out of order (a part rotated behind its sibling).
    queue.requeue([batch[3], batch[1]])
    queue.settle([batch[0], batch[2]], drained=False)
    assert queue.settled_through == 1  # evt_1 (seq 2) waits again
    assert queue.oldest_timestamp() == items[1].timestamp
    assert len(queue) == 4
    assert queue.take(3) == [batch[3], batch[1], items[4]]
    queue.settle([], drained=False)
    assert queue.settled_through == 5  # evt_5 (seq 6) waits
    assert queue.close() == [items[5]]
    assert queue.put(NOW, items[5].body.decode()) == -1


def test_bounds_count_requeued_items():
    queue = MemoryQueue(3, 1 << 20)
    for i in range(3):
        _put(queue, f"evt_{i}")
    assert queue.put(NOW, queue.take(1)[0].body.decode()) == 1  # room for one
    taken = queue.take(3)
    queue.requeue(taken)
    assert len(queue) == 3
    assert not queue.has_room(1)
    assert queue.put(NOW, taken[0].body.decode()) == 0


def test_a_put_from_a_signal_handler_never_pairs_a_body_with_another_events_time():
    """``track()`` may run in a signal handler that interrupted a ``track()``: the nested
    put lands between two bytecodes of the outer one, never between its body and its time."""
    queue = MemoryQueue(10_000_000, 1 << 40)
    base = NOW - 3000
    count = itertools.count()

    def put(tag: str) -> None:
        n = next(count)
        stamp = base + n * 1e-3  # a distinct time per event, written into its body too
        queue.put(
            stamp,
            encode_event(EventInput(event_id=f"{tag}{n}", customer_id="c", event_name="e"), stamp),
        )

    fired = [0]

    def handler(signum, frame) -> None:
        fired[0] += 1
        put("signal_")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        deadline = time.monotonic() + 30
        while fired[0] < 500 and time.monotonic() < deadline:
            for _ in range(1000):
                put("main_")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired[0] >= 500
    items = queue.take(len(queue))
    assert len(items) == next(count)
    mismatched = [item for item in items if format_epoch(item.timestamp).encode() not in item.body]
    assert mismatched == []


def test_the_byte_bound_counts_utf8_bytes_of_queued_and_requeued_events():
    queue = MemoryQueue(10, 1 << 20)
    first = _put(queue, "é" * 40)  # 2 bytes a character
    size = len(first.body)
    assert size == len(first.body.decode()) + 40
    assert queue.bytes == size
    assert queue.oldest_timestamp() == NOW
    # Bound to two such events: a third fits by characters but not by bytes.
    queue = MemoryQueue(10, 2 * size)
    items = [_put(queue, "é" * 40), _put(queue, "é" * 40)]
    assert not queue.has_room(len(items[0].body.decode()))
    assert queue.put(NOW, items[0].body.decode()) == 0
    taken = queue.take(1)
    assert taken == items[:1]
    assert queue.bytes == size and queue.has_room(size)
    queue.requeue(taken)
    assert queue.bytes == 2 * size
    assert queue.take(5) == items
    assert queue.bytes == 0


def test_a_batch_being_taken_still_counts_as_pending(monkeypatch):
    """Between ``take()`` popping a batch and the sender holding it, the batch's oldest
    timestamp is still reported (the credit gate reads it as usage not yet reflected), until
    the batch is settled."""
    import threading

    from dodo_ingest.delivery import _queues

    queue = MemoryQueue(100, 1 << 20)
    _put(queue, "evt_old", -5.0)
    _put(queue, "evt_new")
    unpacking, release = threading.Event(), threading.Event()
    unpack = _queues._unpack

    def slow_unpack(packed: bytes, seq: int) -> QueuedEvent:
        unpacking.set()
        assert release.wait(10)
        return unpack(packed, seq)

    monkeypatch.setattr(_queues, "_unpack", slow_unpack)
    taken: list[QueuedEvent] = []
    taker = threading.Thread(target=lambda: taken.extend(queue.take(10)))
    taker.start()
    assert unpacking.wait(10)
    assert len(queue) == 0
    assert queue.oldest_timestamp() == NOW - 5.0  # popped, not built yet: still pending
    release.set()
    taker.join(10)
    assert [item.event_id for item in taken] == ["evt_old", "evt_new"]
    assert queue.oldest_timestamp() == NOW - 5.0  # held by the sender, not settled
    queue.settle(taken, drained=True)
    assert queue.oldest_timestamp() is None
