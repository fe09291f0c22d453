"""``LeaseRenewer`` alone, with holds of the test's own making and real stores."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

from dodo_ingest.gate import MemoryStore
from dodo_ingest.gate._renewer import LeaseRenewer

DEADLINE = 10.0


class FakeHold:
    """A hold as the renewer sees it, on a real ``MemoryStore`` key."""

    def __init__(self, store, hold_id: str, span: float = 3.0, due: float = 0.0) -> None:
        self.store = store
        self.hold_id = hold_id
        self.span = span
        self._due = due  # due at once unless told
        self.ended = False
        self.answers: list[bool | None] = []
        store.reserve(
            "k",
            hold_id,
            Decimal(1),
            headroom=Decimal(1000),
            reflected_before=0.0,
            expires_at=time.time() + span,
            now=time.time(),
        )

    @property
    def renewal_due(self) -> float:
        return self._due

    def lease_request(self):
        if self.ended:
            return None
        return self.store, "k", self.hold_id, time.time() + self.span, self.span

    def lease_renewed(self, started: float, span: float, extended: bool | None) -> None:
        self.answers.append(extended)
        self._due = started + span / 3 if extended else time.monotonic() + 0.05


class CountingStore(MemoryStore):
    """Counts the calls the renewer makes; fails while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.failing = threading.Event()

    def extend_many(self, leases):
        self.batches.append(len(leases))
        if self.failing.is_set():
            raise ConnectionError("store down")
        return super().extend_many(leases)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"no {what} in {DEADLINE} s"
        time.sleep(0.01)


def test_holds_of_one_store_are_renewed_in_one_call():
    store = CountingStore()
    renewer = LeaseRenewer(idle=0.2)
    due = time.monotonic() + 0.5  # all due together, after they were all added
    holds = [FakeHold(store, f"h{i}", due=due) for i in range(200)]
    for hold in holds:
        renewer.add(hold)
    wait_for(lambda: all(hold.answers for hold in holds), "renewal of every hold")
    assert store.batches[0] == 200  # one round trip, not 200
    for hold in holds:
        hold.ended = True
    thread = renewer._thread
    assert thread is not None
    thread.join(DEADLINE)
    assert not thread.is_alive()  # no live hold left for a while: the thread ends
    assert renewer.live() == 0


def test_a_store_that_cannot_be_reached_is_tried_again_soon_and_logged_once(caplog):
    store = CountingStore()
    store.failing.set()
    renewer = LeaseRenewer(idle=0.2)
    hold = FakeHold(store, "h", span=60)
    with caplog.at_level(logging.DEBUG, logger="dodo_ingest"):
        renewer.add(hold)
        wait_for(lambda: len(hold.answers) >= 3, "three attempts")
        assert hold.answers[:3] == [None, None, None]  # tried again, well before 20 s
        store.failing.clear()
        wait_for(lambda: hold.answers[-1] is True, "a renewal once the store is back")
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("could not renew" in message for message in warnings) == 1
    assert "credit gate: leases are renewed again" in warnings
    hold.ended = True


def test_a_hold_the_store_no_longer_has_is_dropped_with_a_warning(caplog):
    store = MemoryStore()
    renewer = LeaseRenewer(idle=0.2)
    hold = FakeHold(store, "h")
    store.release("k", "h", Decimal(0), now=time.time())  # ended in the store, not here
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        renewer.add(hold)
        wait_for(lambda: hold.answers == [False], "the store's answer")
        wait_for(lambda: renewer.live() == 0, "the hold dropped")
    assert "had ended in the store before its renewal" in caplog.text


def test_the_thread_survives_a_hold_that_raises():
    class Broken(FakeHold):
        def lease_request(self):
            raise RuntimeError("a bug")

    store = MemoryStore()
    renewer = LeaseRenewer(idle=0.2)
    broken = Broken(store, "broken")
    good = FakeHold(store, "good")
    renewer.add(broken)
    renewer.add(good)
    wait_for(lambda: renewer._thread is not None and renewer._thread.is_alive(), "thread")
    broken.ended = True  # the next round drops it; the good one is renewed
    wait_for(lambda: good.answers and good.answers[-1] is True, "the good hold renewed")
    good.ended = True


def test_redis_store_extends_many_holds_in_one_pipeline(redis_server):
    from dodo_ingest.gate import RedisStore

    store = RedisStore(redis_server.url)
    now = time.time()
    for i in range(100):
        store.reserve(
            "k",
            f"h{i}",
            Decimal(1),
            headroom=Decimal(1000),
            reflected_before=0.0,
            expires_at=now + 2,
            now=now,
        )
    later = now + 3600
    answers = store.extend_many(
        [("k", f"h{i}", later) for i in range(100)] + [("k", "gone", later)]
    )
    assert answers == [True] * 100 + [False]
    # Past the first leases, every hold still counts: their leases moved.
    assert store.outstanding("k", reflected_before=0.0, now=now + 10) == 100
    assert store.extend_many([]) == []
