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

    @property
    def renewal_earliest(self) -> float:
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


class SlowStore(MemoryStore):
    """Its renewals take ``delay`` seconds (a far Redis)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.entered = threading.Event()

    def extend_many(self, leases):
        self.entered.set()
        time.sleep(self.delay)  # the store's latency, not a synchronisation
        return super().extend_many(leases)


def test_a_hold_added_during_a_round_is_planned_for():
    slow = SlowStore(0.5)
    renewer = LeaseRenewer(idle=0.2)
    far = FakeHold(slow, "far", span=600)  # due now; its next renewal is minutes away
    renewer.add(far)
    assert slow.entered.wait(DEADLINE)  # the round is in the slow store now
    soon = FakeHold(MemoryStore(), "soon", span=3, due=time.monotonic() + 0.7)
    renewer.add(soon)  # while the renewer is not waiting: no one to notify
    wait_for(lambda: soon.answers, "the renewal of the hold added during the round")
    far.ended = soon.ended = True


def test_a_due_time_moved_sooner_wakes_the_renewer():
    renewer = LeaseRenewer(idle=0.2)
    hold = FakeHold(MemoryStore(), "h", span=600, due=time.monotonic() + 300)
    renewer.add(hold)
    wait_for(lambda: renewer._wake_at != float("inf"), "the renewer waiting")
    hold._due = time.monotonic() + 0.1  # as Hold.extend(seconds) does with a short lease
    renewer.add(hold)
    wait_for(lambda: hold.answers == [True], "a renewal at the new due time")
    hold.ended = True


def test_a_thread_that_cannot_start_does_not_raise_into_the_reservation(monkeypatch, caplog):
    renewer = LeaseRenewer(idle=0.2)
    hold = FakeHold(MemoryStore(), "h", due=time.monotonic() + 0.1)

    def refuse(self) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as patched, caplog.at_level(logging.ERROR, logger="dodo_ingest"):
        patched.setattr(threading.Thread, "start", refuse)
        renewer.add(hold)  # does not raise
    assert "cannot start the lease renewer" in caplog.text
    assert renewer.live() == 1
    renewer.add(hold)  # a later reservation starts it
    wait_for(lambda: hold.answers == [True], "the renewal once a thread could start")
    hold.ended = True


def test_failures_are_logged_once_per_store_while_another_store_works(caplog):
    broken = CountingStore()
    broken.failing.set()
    renewer = LeaseRenewer(idle=0.2)
    bad = FakeHold(broken, "bad", span=60)
    good = FakeHold(MemoryStore(), "good", span=0.3)  # renewed at every round
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        renewer.add(bad)
        renewer.add(good)
        wait_for(lambda: len(bad.answers) >= 4 and len(good.answers) >= 4, "several rounds")
    messages = [r.message for r in caplog.records]
    assert sum("could not renew" in m for m in messages) == 1
    assert not any("renewed again" in m for m in messages)  # the broken store never came back
    bad.ended = good.ended = True


def test_a_store_answering_the_wrong_number_of_times_is_a_failed_renewal():
    class Short(MemoryStore):
        def extend_many(self, leases):
            return super().extend_many(leases)[:-1]

    renewer = LeaseRenewer(idle=0.2)
    store = Short()
    holds = [FakeHold(store, f"h{i}", due=time.monotonic() + 0.2) for i in range(3)]
    for hold in holds:
        renewer.add(hold)
    wait_for(lambda: all(hold.answers for hold in holds), "an answer for each")
    assert all(hold.answers[0] is None for hold in holds)
    for hold in holds:
        hold.ended = True
