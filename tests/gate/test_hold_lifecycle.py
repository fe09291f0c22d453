"""How a ``Hold`` ends (settle, release, cancel, from any thread), how the gate renews the
lease of a live hold, and asyncio code on a shared store that never blocks the event loop."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import threading
import time
from decimal import Decimal

import pytest

from dodo_ingest import CreditGate, DodoClient
from dodo_ingest.devserver import DevServer
from dodo_ingest.gate import MemoryStore, RedisStore

API_KEY = "sk_test_gate_hold_0123456789abcdef"


@pytest.fixture
def server():
    with DevServer() as running:
        yield running


@pytest.fixture
def client(server):
    with DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as made:
        yield made


@pytest.fixture
def credits(client) -> str:
    entitlement = client.credits.create_entitlement(name="Credits", unit="credits").id
    client.credits.create_ledger_entry(entitlement, "cus_1", amount="10")
    return entitlement


def _gate(client: DodoClient, credits: str, **settings) -> CreditGate:
    settings.setdefault("refresh_interval", 3600)  # one balance read: the test moves nothing
    return CreditGate(client, credit_entitlement_id=credits, **settings)


def test_settle_ends_the_hold_at_once_and_counts_the_cost(client, credits):
    gate = _gate(client, credits)
    with gate.reserve("cus_1", 6) as hold:
        assert gate.available("cus_1") == 4
        hold.settle(2)  # the work reported what it used: the estimate is no longer held
        assert hold.ended
        assert gate.available("cus_1") == 8
        assert not hold.extend()
    assert gate.available("cus_1") == 8  # leaving the block changes nothing more
    hold.release()
    hold.cancel()  # usage already counted is never taken back
    assert gate.available("cus_1") == 8


def test_a_higher_second_settlement_counts_the_difference_a_lower_one_is_ignored(
    client, credits, caplog
):
    gate = _gate(client, credits)
    hold = gate.reserve("cus_1", 3)
    hold.settle(2)
    hold.settle(5)  # a stream that reports running totals
    assert gate.available("cus_1") == 5
    assert hold.actual == 5
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        hold.settle(1)
    assert gate.available("cus_1") == 5
    assert hold.actual == 5
    assert "below the 5 already counted" in caplog.text


def test_settling_after_a_release_counts_only_what_exceeds_the_estimate(client, credits):
    gate = _gate(client, credits)
    hold = gate.reserve("cus_1", 3)
    hold.release()  # unsettled: the estimate counts
    assert gate.available("cus_1") == 7
    hold.settle(2)  # below the estimate already counted: ignored
    assert gate.available("cus_1") == 7
    hold.settle(4)
    assert gate.available("cus_1") == 6


def test_a_cancelled_hold_counts_nothing_and_cannot_be_settled_lower(client, credits):
    gate = _gate(client, credits)
    hold = gate.reserve("cus_1", 3)
    hold.cancel()
    assert gate.available("cus_1") == 10
    hold.release()
    assert gate.available("cus_1") == 10
    hold.settle(1)  # work done after all: more than the 0 counted
    assert gate.available("cus_1") == 9


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_threads_ending_one_hold_together_count_it_once(kind, client, credits, request):
    store = (
        MemoryStore()
        if kind == "memory"
        else RedisStore(request.getfixturevalue("redis_server").url)
    )
    gate = _gate(client, credits, store=store)
    for _ in range(10):  # were a hold counted twice, a later reserve would be refused
        hold = gate.reserve("cus_1", 1)
        start = threading.Barrier(8)

        def end(index: int, hold=hold, start=start) -> None:
            start.wait()
            if index % 2:
                hold.release()
            else:
                hold.settle(1)

        threads = [threading.Thread(target=end, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert gate.available("cus_1") == Decimal(0)  # 10 holds of 1, each counted once


def test_the_gate_renews_a_live_hold_beyond_its_lease(client, credits):
    gate = _gate(client, credits, lease=1)
    with gate.reserve("cus_1", 6):
        lasted = time.monotonic() + 3.5  # three and a half leases of work
        while time.monotonic() < lasted:
            assert gate.available("cus_1") == 4, "the hold ended while the work went on"
            time.sleep(0.05)
    assert gate.available("cus_1") == 4  # released: the estimate counts as usage


def test_a_hold_nobody_references_is_not_renewed_and_ends_with_its_lease(client, credits):
    gate = _gate(client, credits, lease=1)
    gate.reserve("cus_1", 6)  # dropped at once, never released
    gc.collect()
    deadline = time.monotonic() + 10
    while gate.available("cus_1") != 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.available("cus_1") == 10


def test_one_renewer_thread_serves_every_gate(client, credits):
    from dodo_ingest.gate._renewer import renewer

    before = set(threading.enumerate())
    gates = [_gate(client, credits, lease=1) for _ in range(20)]
    holds = [gate.reserve("cus_1", Decimal("0.1")) for gate in gates]
    started = [thread for thread in threading.enumerate() if thread not in before]
    assert [thread.name for thread in started] in ([], ["dodo-gate-renewer"])
    assert renewer.live() >= 20  # every gate's holds, in the one renewer of the process
    assert renewer._thread is not None and renewer._thread.is_alive()
    for hold in holds:
        hold.cancel()


def test_the_renewer_keeps_a_longer_lease_asked_with_extend(client, credits):
    store = MemoryStore()
    gate = _gate(client, credits, lease=1, store=store)
    hold = gate.reserve("cus_1", 6)
    assert hold.extend(3600)
    ledger = store._ledgers[gate._key("cus_1")]
    assert ledger.holds[hold._hold_id][1] > time.time() + 3500
    renewed = hold.renewal_due
    deadline = time.monotonic() + 10
    while hold.renewal_due == renewed and time.monotonic() < deadline:
        time.sleep(0.02)  # the renewer looks at it at least once
    assert gate.available("cus_1") == 4
    assert ledger.holds[hold._hold_id][1] > time.time() + 3500  # not cut back to 1 s
    hold.cancel()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_settling_higher_after_the_end_adds_on_every_store(kind, client, credits, request):
    store = (
        MemoryStore()
        if kind == "memory"
        else RedisStore(request.getfixturevalue("redis_server").url)
    )
    gate = _gate(client, credits, store=store)
    hold = gate.reserve("cus_1", 3)
    hold.settle(2)
    hold.settle(5)  # a stream reporting running totals
    assert gate.available("cus_1") == 5
    other = gate.reserve("cus_1", 1)
    other.release()  # the estimate (1) counts
    other.settle(3)
    assert gate.available("cus_1") == 2
    assert [gate.would_fit("cus_1", n) for n in (2, 3)] == [True, False]


def test_a_settlement_awaited_by_a_cancelled_task_still_happens(client, credits):
    store = _PausedStore("release")
    gate = _gate(client, credits, store=store)
    gate.available("cus_1")

    async def scenario() -> None:
        hold = await gate.areserve("cus_1", 3)
        task = asyncio.create_task(hold.asettle(8))
        while not store.entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()  # a request timeout while the store answers slowly
        with pytest.raises(asyncio.CancelledError):
            await task
        store.go.set()
        deadline = time.monotonic() + 10
        while await gate.aavailable("cus_1") != 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert gate.available("cus_1") == 2  # settled at 8, not released at the estimate of 3


def test_a_hold_granted_after_its_caller_and_loop_are_gone_is_given_back(client, credits):
    store = _PausedStore("reserve")
    gate = _gate(client, credits, store=store)
    gate.available("cus_1")
    loop = asyncio.new_event_loop()

    async def reserve() -> None:
        await asyncio.wait_for(gate.areserve("cus_1", 6).__aenter__(), timeout=0.2)

    with pytest.raises(TimeoutError):
        loop.run_until_complete(reserve())
    loop.close()
    store.go.set()  # the store grants it now, with no loop left to hand it to
    deadline = time.monotonic() + 10
    while gate.available("cus_1") != 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gate.available("cus_1") == 10


def test_a_huge_lease_does_not_break_the_renewer(client, credits):
    from dodo_ingest.gate._renewer import LONGEST_WAIT, renewer

    gate = _gate(client, credits, lease=1e11)
    with gate.reserve("cus_1", 6):
        deadline = time.monotonic() + 10
        while renewer._wake_at == math.inf and time.monotonic() < deadline:
            time.sleep(0.01)  # until the thread has planned its next round
        thread = renewer._thread
        assert thread is not None and thread.is_alive()
        assert renewer._wake_at <= time.monotonic() + LONGEST_WAIT
        assert gate.available("cus_1") == 4
    assert gate.available("cus_1") == 4


def test_a_forked_child_can_reserve_whatever_locks_the_parent_held(client, credits):
    store = MemoryStore()
    gate = _gate(client, credits, store=store)
    hold = gate.reserve("cus_1", 6)
    with gate._lock, store._lock:  # as if other threads were inside the gate at the fork
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                signal.alarm(20)
                from dodo_ingest.gate._renewer import renewer

                child_hold = gate.reserve("cus_1", 4)  # the parent's hold counts: 4 left
                code = 0 if renewer.live() == 1 and gate.available("cus_1") == 0 else 2
                child_hold.cancel()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    hold.cancel()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def test_asyncio_code_on_a_frozen_redis_store_never_blocks_the_event_loop(
    client, credits, redis_server
):
    process = redis_server.process
    assert process is not None
    store = RedisStore(redis_server.url, timeout=0.5)
    gate = _gate(client, credits, store=store)
    gate.available("cus_1")  # a balance known: the store is the only thing left to wait for

    async def scenario() -> tuple[int, bool]:
        ticks = 0
        running = True

        async def ticker() -> None:
            nonlocal ticks
            while running:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        async with gate.areserve("cus_1", 1) as hold:  # admitted blind (on_unavailable="allow")
            await hold.asettle(1)
        await gate.aavailable("cus_1")
        running = False
        await task
        return ticks, True

    os.kill(process.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while not _stopped(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        ticks, _ = asyncio.run(scenario())
        took = time.monotonic() - started
    finally:
        os.kill(process.pid, signal.SIGCONT)
    assert took >= 0.5  # the store was waited for (each call up to its timeout)...
    assert ticks >= 10  # ...while the event loop went on running other tasks
    assert gate.stats.unavailable_allowed >= 1


def test_a_renewal_that_cannot_reach_redis_is_tried_again(client, credits, redis_server, caplog):
    process = redis_server.process
    assert process is not None
    lease = 3.0
    gate = _gate(client, credits, store=RedisStore(redis_server.url, timeout=0.3), lease=lease)
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        hold = gate.reserve("cus_1", 6)
        reserved = time.monotonic()
        os.kill(process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 10
            while "could not renew" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "could not renew" in caplog.text  # a renewal failed
        finally:
            os.kill(process.pid, signal.SIGCONT)
        # Past the first lease, the hold still counts: the next round renewed it.
        while time.monotonic() < reserved + lease + 1.5:
            assert gate.available("cus_1") == 4, "the hold ended after one failed renewal"
            time.sleep(0.05)
    hold.cancel()
    assert gate.available("cus_1") == 10


class _PausedStore(MemoryStore):
    """A ``MemoryStore`` whose ``paused`` method (``reserve`` or ``release``) waits until the
    test lets it through: a shared store answering slowly. Not the in-process store itself,
    so the gate calls it from worker threads, as it would Redis."""

    def __init__(self, paused: str) -> None:
        super().__init__()
        self.paused = paused
        self.entered = threading.Event()
        self.go = threading.Event()

    def _wait(self, method: str) -> None:
        if method == self.paused:
            self.entered.set()
            assert self.go.wait(10)

    def reserve(self, *args, **kwargs):
        self._wait("reserve")
        return super().reserve(*args, **kwargs)

    def release(self, *args, **kwargs):
        self._wait("release")
        return super().release(*args, **kwargs)


def test_a_hold_granted_to_a_cancelled_asyncio_caller_is_given_back(client, credits):
    store = _PausedStore("reserve")
    gate = _gate(client, credits, store=store)
    assert not gate._inline_store
    gate.available("cus_1")

    async def scenario() -> None:
        task = asyncio.create_task(gate.areserve("cus_1", 6).__aenter__())
        while not store.entered.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        store.go.set()  # the store grants the hold now, to nobody
        deadline = time.monotonic() + 10
        while await gate.aavailable("cus_1") != 10 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert gate.available("cus_1") == 10  # given back, not held until its lease ends
    assert gate.stats.admitted == 1
