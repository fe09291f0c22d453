"""``RedisStore`` against a real ``redis-server``, with ``MemoryStore`` as the reference.

The protocol scenarios run on both stores; then what only Redis has: exact decimals through
Lua, threads and processes racing one key, a holder killed with SIGKILL, a Redis that stops or
freezes, restarts, keys and their TTL. Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from dodo_ingest import ConfigurationError
from dodo_ingest.gate import MemoryStore, ReservationStore, Snapshot
from dodo_ingest.gate._redis_store import RedisStore
from dodo_ingest.gate._store import PRUNE_MARGIN
from tests._redis import RedisServer

KEY = "cent_1:cus_1"
INF = Decimal("Infinity")


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def reserve(
    store: ReservationStore,
    hold_id: str,
    amount: Decimal | str | int,
    *,
    headroom: Decimal | str | int = 10,
    reflected_before: float = 0.0,
    expires_at: float = 10_000.0,
    now: float = 1.0,
    key: str = KEY,
) -> tuple[bool, Decimal]:
    """``store.reserve`` with defaults; ``(admitted, available)``."""
    answer = store.reserve(
        key,
        hold_id,
        Decimal(amount),
        headroom=Decimal(headroom),
        reflected_before=reflected_before,
        expires_at=expires_at,
        now=now,
    )
    return answer.admitted, answer.available


def snap(headroom: Decimal | str | int, at: float) -> Snapshot:
    value = Decimal(headroom)
    return Snapshot(value, Decimal(0), value, at)


@pytest.fixture
def redis_store(redis_server) -> Iterator[RedisStore]:
    with RedisStore(redis_server.url, timeout=2.0) as store:
        yield store


@pytest.fixture
def fast_redis_server() -> Iterator[RedisServer]:
    """A ``redis-server`` that does not fsync each write (the scenarios that make thousands of
    writes would spend their time in fsync)."""
    server = RedisServer(appendfsync="no")
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def fast_redis_store(fast_redis_server) -> Iterator[RedisStore]:
    with RedisStore(fast_redis_server.url, timeout=2.0) as store:
        yield store


@pytest.fixture(params=["memory", "redis"])
def store(request) -> Iterator[ReservationStore]:
    """Each protocol scenario runs on the reference (``MemoryStore``) and on ``RedisStore``."""
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield request.getfixturevalue("fast_redis_store")


# --- the protocol, on both stores ------------------------------------------------------------


def test_admits_up_to_the_exact_boundary_and_refuses_beyond(store):
    assert reserve(store, "a", 4) == (True, Decimal(10))
    assert reserve(store, "b", "5.9999999999") == (True, Decimal(6))
    admitted, available = reserve(store, "c", "0.0000000002")
    assert (admitted, available) == (False, Decimal("0.0000000001"))
    assert reserve(store, "d", "0.0000000001") == (True, Decimal("0.0000000001"))
    admitted, available = reserve(store, "e", "0.0000000001")
    assert not admitted
    assert available == 0
    assert reserve(store, "f", 0) == (True, Decimal(0))  # nothing asked: it fits
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == 10


def test_a_refused_reservation_holds_nothing(store):
    assert reserve(store, "a", 11) == (False, Decimal(10))
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == 0
    assert not store.extend(KEY, "a", expires_at=20_000.0)
    assert reserve(store, "b", 10) == (True, Decimal(10))


def test_a_negative_headroom_refuses_even_nothing(store):
    assert reserve(store, "a", 0, headroom="-2.5") == (False, Decimal("-2.5"))
    reserve(store, "b", 1, headroom=INF)
    assert reserve(store, "c", 0, headroom="-2.5") == (False, Decimal("-3.5"))


def test_keys_are_independent(store):
    assert reserve(store, "a", 10, key="k1") == (True, Decimal(10))
    assert reserve(store, "a", 10, key="k2") == (True, Decimal(10))
    assert reserve(store, "b", 1, key="k1") == (False, Decimal(0))


def test_a_hold_counts_until_its_lease_ends(store):
    assert reserve(store, "a", 10, expires_at=100.0, now=1.0)[0]
    assert reserve(store, "b", 1, now=99.999) == (False, Decimal(0))
    assert store.outstanding(KEY, reflected_before=0.0, now=99.999) == 10
    # expires_at <= now: ended.
    assert reserve(store, "c", 10, now=100.0) == (True, Decimal(10))
    assert not store.extend(KEY, "a", expires_at=500.0)  # dropped when it ended
    assert store.outstanding(KEY, reflected_before=0.0, now=100.0) == 10


def test_extend_moves_a_live_lease(store):
    assert reserve(store, "a", 6, expires_at=100.0)[0]
    assert store.extend(KEY, "a", expires_at=200.0)
    assert store.outstanding(KEY, reflected_before=0.0, now=150.0) == 6
    assert reserve(store, "b", 5, now=150.0) == (False, Decimal(4))
    assert store.outstanding(KEY, reflected_before=0.0, now=200.0) == 0
    assert not store.extend(KEY, "a", expires_at=300.0)
    assert not store.extend(KEY, "never", expires_at=300.0)
    # A lease may also be shortened.
    assert reserve(store, "c", 3, expires_at=1000.0, now=200.0)[0]
    assert store.extend(KEY, "c", expires_at=250.0)
    assert store.outstanding(KEY, reflected_before=0.0, now=249.0) == 3
    assert store.outstanding(KEY, reflected_before=0.0, now=250.0) == 0


def test_release_ends_the_hold_and_counts_usage_until_reflected(store):
    assert reserve(store, "a", 5, now=10.0)[0]
    store.release(KEY, "a", Decimal("3.25"), now=50.0)
    assert not store.extend(KEY, "a", expires_at=20_000.0)
    # Counted while recorded at or after reflected_before...
    assert store.outstanding(KEY, reflected_before=50.0, now=60.0) == Decimal("3.25")
    assert reserve(store, "b", "6.75", reflected_before=50.0, now=60.0) == (
        True,
        Decimal("6.75"),
    )
    # ...and no more once a read at least that late reflects it.
    assert store.outstanding(KEY, reflected_before=50.000001, now=60.0) == Decimal("6.75")


def test_a_release_of_nothing_records_nothing(store):
    assert reserve(store, "a", 5)[0]
    store.release(KEY, "a", Decimal(0), now=5.0)
    assert store.outstanding(KEY, reflected_before=-1e9, now=5.0) == 0


def test_a_release_without_a_hold_still_records_usage(store):
    store.release(KEY, "unknown", Decimal(2), now=5.0)
    assert store.outstanding(KEY, reflected_before=0.0, now=5.0) == 2


def test_usage_within_the_prune_margin_is_kept(store):
    store.release(KEY, "a", Decimal(1), now=0.0)
    store.release(KEY, "b", Decimal(2), now=100.0)
    assert store.outstanding(KEY, reflected_before=PRUNE_MARGIN, now=1.0) == 0
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == 3
    assert store.outstanding(KEY, reflected_before=100.0, now=1.0) == 2


def test_a_drop_larger_than_a_hundred_entries_consumes_them_all(store):
    store.save_snapshot(KEY, snap(1000, 1.0))
    for i in range(250):
        store.release(KEY, f"u{i}", Decimal("1.5"), now=10.0 + i)
    store.save_snapshot(KEY, snap(700, 300.0))  # 300 deducted: the 200 oldest entries
    assert store.outstanding(KEY, reflected_before=0.0, now=301.0) == 75
    assert store.outstanding(KEY, reflected_before=209.0, now=301.0) == 75
    assert store.outstanding(KEY, reflected_before=211.0, now=301.0) == Decimal("73.5")


def test_the_newer_snapshot_wins(store):
    assert store.snapshot(KEY) is None
    first = Snapshot(Decimal("10.50"), Decimal("0"), Decimal("10.50"), 1000.25)
    store.save_snapshot(KEY, first)
    assert store.snapshot(KEY) == first
    assert str(store.snapshot(KEY).balance) == "10.50"  # the decimal exactly as given
    store.save_snapshot(KEY, snap(3, 999.0))  # older: ignored
    assert store.snapshot(KEY) == first
    same_time = Snapshot(Decimal("-1.25"), Decimal("7"), INF, 1000.25)
    store.save_snapshot(KEY, same_time)  # read at the same time: the new one wins
    assert store.snapshot(KEY) == same_time
    later = Snapshot(Decimal("1E+3"), Decimal("0.0000000001"), Decimal("1000"), 1700000000.123456)
    store.save_snapshot(KEY, later)
    stored = store.snapshot(KEY)
    assert stored == later
    assert stored.fetched_at == 1700000000.123456
    assert store.snapshot("other") is None


def test_a_headroom_drop_consumes_the_oldest_usage_recorded_before_the_read(store):
    store.save_snapshot(KEY, snap(100, 5.0))
    store.release(KEY, "u1", Decimal(3), now=10.0)
    store.release(KEY, "u2", Decimal(4), now=20.0)
    store.release(KEY, "u3", Decimal(5), now=30.0)  # at the read's time: not before it
    store.release(KEY, "u4", Decimal(6), now=40.0)
    assert store.outstanding(KEY, reflected_before=0.0, now=41.0) == 18
    store.save_snapshot(KEY, snap(95, 30.0))  # 5 deducted: all of u1, 2 of u2
    assert store.outstanding(KEY, reflected_before=0.0, now=41.0) == 13
    assert store.outstanding(KEY, reflected_before=20.0, now=41.0) == 13
    assert store.outstanding(KEY, reflected_before=30.0, now=41.0) == 11
    store.save_snapshot(KEY, snap(200, 31.0))  # a grant: consumes nothing
    assert store.outstanding(KEY, reflected_before=0.0, now=41.0) == 13
    store.save_snapshot(KEY, snap(100, 29.0))  # older than the stored one: ignored
    assert store.outstanding(KEY, reflected_before=0.0, now=41.0) == 13
    store.save_snapshot(KEY, snap(150, 35.0))  # 50 deducted, only 7 recorded before the read
    assert store.outstanding(KEY, reflected_before=0.0, now=41.0) == 6
    store.save_snapshot(KEY, snap(0, 45.0))
    assert store.outstanding(KEY, reflected_before=0.0, now=46.0) == 0


def test_no_consumption_across_an_infinite_headroom(store):
    store.save_snapshot(KEY, snap(100, 5.0))
    store.release(KEY, "u1", Decimal(3), now=10.0)
    store.save_snapshot(KEY, snap(INF, 20.0))
    store.save_snapshot(KEY, snap(0, 30.0))
    assert store.outstanding(KEY, reflected_before=0.0, now=31.0) == 3


def test_an_infinite_headroom_admits_everything_and_still_holds_it(store):
    assert reserve(store, "a", "99999999999999", headroom=INF) == (True, INF)
    assert reserve(store, "b", "0.0000000001", headroom=INF) == (True, INF)
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == Decimal(
        "99999999999999.0000000001"
    )
    assert reserve(store, "c", 1, headroom=10) == (False, Decimal("-99999999999989.0000000001"))
    assert reserve(store, "d", 0, headroom=-INF) == (False, -INF)


@pytest.mark.parametrize("amount", ["0.000001", "0.0000000001", "0.1"])
def test_tiny_amounts_add_up_exactly(store, amount):
    step = Decimal(amount)
    for i in range(30):
        admitted, available = reserve(store, f"h{i}", step, headroom=step * 25)
        assert admitted == (i < 25)
        assert available == step * (25 - min(i, 25))
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == step * 25


def test_large_balances_are_exact(store):
    top = Decimal("9999999999.9999999999")  # the API's largest amount (10 integer digits)
    assert reserve(store, "a", top - Decimal("0.0000000001"), headroom=top)[0]
    assert reserve(store, "b", "0.0000000001", headroom=top) == (True, Decimal("0.0000000001"))
    admitted, available = reserve(store, "c", "0.0000000001", headroom=top)
    assert (admitted, available) == (False, Decimal(0))
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == top
    # Far beyond what doubles hold exactly in micro-units (2^53 / 10^6 ~ 9e9 units).
    huge = Decimal("12345678901234.1234567891")
    store.release(KEY, "a", huge, now=2.0)
    store.release(KEY, "b", Decimal("0.0000000009"), now=2.0)
    assert store.outstanding(KEY, reflected_before=0.0, now=2.0) == huge + Decimal("9E-10")


def test_sums_of_small_and_large_amounts_stay_exact(store):
    """Amounts of up to 15 digits of ticks are added as doubles and folded into the limbs
    before 2^52 ticks; longer ones go through the limbs: any mix must be exact."""
    amounts = [
        Decimal("99999.9999999999"),  # 15 digits of ticks: added as a double
        Decimal("0.0000000001"),
        Decimal("100000"),  # 16 digits: through the limbs
        Decimal("0.3"),
    ] * 12
    expected = Decimal(0)
    for i, amount in enumerate(amounts):
        assert reserve(store, f"h{i}", amount, headroom=INF)[0]
        expected += amount
        assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == expected, i
        store.release(KEY, f"u{i}", amount, now=1.0)
        expected += amount
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == expected
    assert expected == Decimal("4800007.2")  # (99999.9999999999 + 1E-10 + 100000 + 0.3) * 24


def test_no_drift_after_ten_thousand_reserve_release_cycles(store):
    """Each cycle reserves and settles amounts that doubles cannot hold (0.1, 0.3, ...); the
    usage of the last 30 s counts; every answer must be exact."""
    headroom = Decimal("1000000.0000000001")
    window = 30
    settled: dict[int, Decimal] = {}
    counted = Decimal(0)  # the usage of the last `window` seconds
    for i in range(10_000):
        amount = Decimal("0.1") * (i % 3 + 1) + Decimal(i % 997).scaleb(-10)
        now = float(i)
        counted -= settled.pop(i - window - 1, Decimal(0))
        expected = headroom - counted
        answer = store.reserve(
            KEY,
            f"h{i}",
            amount,
            headroom=headroom,
            reflected_before=now - window,
            expires_at=now + 10,
            now=now,
        )
        assert answer == (True, expected), i
        store.release(KEY, f"h{i}", amount, now=now)
        settled[i] = amount
        counted += amount
    counted -= settled.pop(10_000 - window - 1)
    assert store.outstanding(KEY, reflected_before=10_000 - window, now=10_000.0) == counted
    assert counted == sum(settled.values(), Decimal(0))


def test_threads_racing_one_key_admit_exactly_the_headroom(store):
    threads, attempts, headroom = 8, 100, 250
    barrier = threading.Barrier(threads)
    admitted = [0] * threads
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(attempts):
                ok, available = reserve(store, f"t{n}-{i}", 1, headroom=headroom)
                admitted[n] += ok
                assert ok == (available >= 1)
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors
    assert sum(admitted) == headroom
    assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == headroom


def test_random_operations_agree_with_the_reference(fast_redis_store):
    """Seeded random reserves, releases, extends, balance reads and clock moves, applied to
    ``MemoryStore`` and ``RedisStore``: every answer must be the same."""
    lag = 30.0
    for seed in range(12):
        rng = random.Random(seed)
        key = f"cent_1:random_{seed}"
        memory = MemoryStore()
        redis_store = fast_redis_store
        stores: tuple[Any, Any] = (memory, redis_store)
        start = now = 1000.0
        live: list[str] = []
        ids = 0
        for target in stores:
            target.save_snapshot(key, snap(200, now))
        for _ in range(250):
            current = memory.snapshot(key)
            assert current is not None
            reflected_before = current.fetched_at - lag
            kind = rng.choice(["reserve", "reserve", "release", "extend", "snapshot", "tick"])
            if kind == "reserve":
                ids += 1
                amount = Decimal(rng.randint(0, 40_000_000)).scaleb(-6)
                expires_at = now + rng.randint(1, 120)
                answers = [
                    target.reserve(
                        key,
                        f"h{ids}",
                        amount,
                        headroom=current.headroom,
                        reflected_before=reflected_before,
                        expires_at=expires_at,
                        now=now,
                    )
                    for target in stores
                ]
                assert answers[0] == answers[1], (seed, kind)
                if answers[0].admitted:
                    live.append(f"h{ids}")
            elif kind == "release" and live:
                hold_id = live.pop(rng.randrange(len(live)))
                usage = Decimal(rng.randint(0, 5_000_000_000)).scaleb(-10)
                for target in stores:
                    target.release(key, hold_id, usage, now=now)
            elif kind == "extend" and live:
                hold_id = rng.choice([*live, "unknown"])
                expires_at = now + rng.randint(-5, 60)
                results = [target.extend(key, hold_id, expires_at=expires_at) for target in stores]
                assert results[0] == results[1], (seed, kind)
            elif kind == "snapshot":
                headroom = INF if rng.random() < 0.1 else Decimal(rng.randint(0, 400)) / 2
                for target in stores:
                    target.save_snapshot(key, snap(headroom, now))
            elif kind == "tick" and now - start < PRUNE_MARGIN - 100:
                # Within the prune margin: what each store forgets, and when, may differ.
                now += rng.choice([0, 1, 5, 20, 61])
            current = memory.snapshot(key)
            assert current is not None
            assert redis_store.snapshot(key) == current
            reflected_before = current.fetched_at - lag
            assert memory.outstanding(
                key, reflected_before=reflected_before, now=now
            ) == redis_store.outstanding(key, reflected_before=reflected_before, now=now), (
                seed,
                kind,
            )


def test_older_and_newer_reflected_before_agree_with_the_reference(fast_redis_store):
    """Processes using snapshots of different ages: seeded random calls whose
    ``reflected_before`` goes down as well as up (older than the newest one given, or later
    than ``now``, so that usage is recorded before it), with releases, extends and balance
    drops in between; every answer the same as ``MemoryStore``'s."""
    for seed in range(12):
        rng = random.Random(1000 + seed)
        key = f"cent_1:ages_{seed}"
        memory = MemoryStore()
        stores: tuple[Any, Any] = (memory, fast_redis_store)
        now = 1000.0
        live: list[str] = []
        for target in stores:
            target.save_snapshot(key, snap(300, now))
        for i in range(300):
            # All within the prune margin: what each store forgets, and when, may differ.
            now = min(now + rng.choice([0, 0, 0.5, 2, 5]), 1000.0 + PRUNE_MARGIN - 150)
            since = now - rng.uniform(-20, 120)
            kind = rng.choice(["reserve", "reserve", "release", "release", "extend", "snapshot"])
            if kind == "reserve":
                amount = Decimal(rng.randint(0, 20_000_000)).scaleb(-6)
                current = memory.snapshot(key)
                assert current is not None
                expires_at = now + rng.randint(1, 60)
                answers = [
                    target.reserve(
                        key,
                        f"h{i}",
                        amount,
                        headroom=current.headroom,
                        reflected_before=since,
                        expires_at=expires_at,
                        now=now,
                    )
                    for target in stores
                ]
                assert answers[0] == answers[1], (seed, i)
                if answers[0].admitted:
                    live.append(f"h{i}")
            elif kind == "release" and live:
                hold_id = live.pop(rng.randrange(len(live)))
                usage = Decimal(rng.randint(0, 3_000_000_000)).scaleb(-10)
                for target in stores:
                    target.release(key, hold_id, usage, now=now)
            elif kind == "extend" and live:
                hold_id = rng.choice(live)
                expires_at = now + rng.randint(-5, 60)
                results = [target.extend(key, hold_id, expires_at=expires_at) for target in stores]
                assert results[0] == results[1], (seed, i)
            elif kind == "snapshot":
                headroom = Decimal(rng.randint(0, 600)) / 2
                for target in stores:
                    target.save_snapshot(key, snap(headroom, now))
            for older in (since, since - rng.uniform(0, 60), since + rng.uniform(0, 30)):
                assert memory.outstanding(
                    key, reflected_before=older, now=now
                ) == fast_redis_store.outstanding(key, reflected_before=older, now=now), (seed, i)


# --- Redis only: the running totals ----------------------------------------------------------

_NO_FULL_READS = ("cmdstat_hvals", "cmdstat_hgetall", "cmdstat_zrange", "cmdstat_hkeys")


def _inner_calls(client: Any) -> dict[str, int]:
    """Calls of each command since the last ``CONFIG RESETSTAT``, counting the commands that
    scripts run inside Redis; without ``PEXPIRE`` (a TTL is refreshed only once a millisecond
    has passed: it depends on the clock, and it follows a ``PTTL``, which is counted) and the
    test's own ``INFO``/``CONFIG``."""
    stats = client.info("commandstats")
    return {
        name: int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_pexpire" and not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


def test_a_call_runs_the_same_redis_commands_with_thousands_of_entries_as_with_none(
    fast_redis_server,
):
    """The cost inside Redis does not grow with the entries: 50 gated calls (reserve, release
    with usage, outstanding) run each command as many times against a key holding 5,000 live
    holds and 5,000 usage entries counted in the window as against an empty key (INFO
    commandstats counts the commands scripts run; not a timing)."""
    client: Any = fast_redis_server.client()
    since, now = 500.0, 2000.0
    with RedisStore(fast_redis_server.url, timeout=5.0) as store:
        for i in range(5000):
            admitted, _ = reserve(
                store,
                f"h{i}",
                "0.001",
                headroom=INF,
                reflected_before=since,
                expires_at=now + 20,
                now=now - 10,
                key="busy",
            )
            assert admitted
            store.release("busy", f"u{i}", Decimal("0.002"), now=1000.0 + i * 0.1)

        def gated_calls(key: str, prefix: str, count: int) -> dict[str, int]:
            client.config_resetstat()
            for i in range(count):
                admitted, _ = reserve(
                    store,
                    f"{prefix}{i}",
                    "0.5",
                    headroom=1_000_000,
                    reflected_before=since,
                    expires_at=now + 30,
                    now=now,
                    key=key,
                )
                assert admitted
                store.release(key, f"{prefix}{i}", Decimal("0.25"), now=now)
                store.outstanding(key, reflected_before=since, now=now)
            return _inner_calls(client)

        for key in ("idle", "busy"):  # the same state but the entries: totals and bound stored
            gated_calls(key, "warm", 1)
        idle = gated_calls("idle", "c", 50)
        busy = gated_calls("busy", "c", 50)
        assert busy == idle
        assert idle["cmdstat_evalsha"] == 150
        assert idle["cmdstat_zrangebyscore"] > 0  # the inner commands are counted
        assert not any(name in idle for name in _NO_FULL_READS), idle
        # 5,000 x 0.001 held, 5,000 x 0.002 + 51 x 0.25 recorded: exactly.
        assert store.outstanding("busy", reflected_before=since, now=now) == Decimal("27.75")
        assert store.outstanding("busy", reflected_before=1250.0, now=now) == Decimal("22.75")
    client.close()


def test_usage_counts_from_any_reflected_before_older_or_newer_than_the_last(redis_store):
    for i, at in enumerate((10.0, 20.0, 30.0, 40.0)):
        redis_store.release(KEY, f"u{i}", Decimal(i + 1), now=at)

    def counted(since: float) -> Decimal:
        return redis_store.outstanding(KEY, reflected_before=since, now=50.0)

    assert counted(25.0) == 7  # u2 + u3: entries before 25 leave the running total
    assert counted(15.0) == 9  # older: u1 read again
    assert counted(-1e9) == 10
    assert counted(30.0) == 7  # newer: u2 recorded at 30 still counts
    assert counted(30.000001) == 4
    assert counted(20.0) == 9
    redis_store.release(KEY, "late", Decimal("0.5"), now=25.0)  # recorded before 30.000001
    assert counted(30.000001) == 4
    assert counted(25.0) == Decimal("7.5")
    redis_store.release(KEY, "u1", Decimal(6), now=45.0)  # replaced, now after the bound
    assert counted(30.000001) == 10
    assert counted(0.0) == Decimal("14.5")
    redis_store.release(KEY, "u3", Decimal(1), now=5.0)  # replaced, now long before it
    assert counted(30.000001) == 6
    assert counted(0.0) == Decimal("11.5")
    assert counted(60.0) == 0
    assert counted(0.0) == Decimal("11.5")
    assert counted(1e9) == 0
    assert counted(0.0) == 0  # forgotten: recorded before 1e9 - PRUNE_MARGIN


def test_a_headroom_drop_lowers_the_running_total_of_the_entries_it_consumes(redis_store):
    redis_store.save_snapshot(KEY, snap(100, 1.0))
    for i in range(6):
        redis_store.release(KEY, f"u{i}", Decimal("1.5"), now=10.0 + i)
    assert redis_store.outstanding(KEY, reflected_before=12.0, now=20.0) == 6  # 12 and later
    redis_store.save_snapshot(KEY, snap(96, 20.0))  # 4: u0, u1, 1 of u2 (the first counted)
    assert redis_store.outstanding(KEY, reflected_before=12.0, now=20.0) == 5
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=20.0) == 5
    redis_store.save_snapshot(KEY, snap(95, 21.0))
    assert redis_store.outstanding(KEY, reflected_before=12.0, now=20.0) == 4


def test_entries_whose_keys_expired_before_the_totals_count_nothing(redis_server, redis_store):
    client: Any = redis_server.client()
    tag = "{dodo-gate:cent_1:cus_1}"
    assert reserve(redis_store, "a", 3)[0]
    redis_store.release(KEY, "u", Decimal(2), now=1.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 5
    client.delete(f"{tag}:holds", f"{tag}:leases")  # as their TTL would
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 2
    client.delete(f"{tag}:usage", f"{tag}:used")
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 0
    assert reserve(redis_store, "b", 10) == (True, Decimal(10))
    redis_store.release(KEY, "v", Decimal(1), now=1.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 11
    for name in ("holds", "leases", "usage", "used"):
        assert client.pttl(f"{tag}:totals") >= client.pttl(f"{tag}:{name}") > 0
    client.close()


def test_entries_without_totals_are_counted_once_from_the_entries(redis_server, redis_store):
    """A key whose totals are missing (written before they existed) is counted from its
    entries, then kept running."""
    client: Any = redis_server.client()
    for i in range(3):
        assert reserve(redis_store, f"h{i}", "1.25")[0]
        redis_store.release(KEY, f"u{i}", Decimal("0.5"), now=10.0 * i)
    client.delete("{dodo-gate:cent_1:cus_1}:totals")
    assert redis_store.outstanding(KEY, reflected_before=10.0, now=1.0) == Decimal("4.75")
    assert client.hget("{dodo-gate:cent_1:cus_1}:totals", "held") == b"37500000000"
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == Decimal("5.25")
    redis_store.release(KEY, "h0", Decimal(0), now=30.0)
    assert redis_store.outstanding(KEY, reflected_before=10.0, now=1.0) == Decimal("3.5")
    client.close()


def test_usage_beyond_the_exact_range_is_recorded_and_counted_again_once_reflected(redis_store):
    """A release never fails; while the usage counted is beyond the exact range, a reserve
    fails as before; once reflected (a headroom drop), answers are exact again."""
    redis_store.save_snapshot(KEY, snap("1E+14", 1.0))
    top = Decimal("99999999999999")
    for i in range(5):
        redis_store.release(KEY, f"u{i}", top, now=10.0 + i)
    with pytest.raises(redis.ResponseError, match="exact range"):
        reserve(redis_store, "a", 1, headroom=INF)
    with pytest.raises(redis.ResponseError, match="exact range"):
        redis_store.outstanding(KEY, reflected_before=0.0, now=20.0)
    assert redis_store.outstanding(KEY, reflected_before=11.0, now=20.0) == top * 4
    redis_store.save_snapshot(KEY, snap("-1E+14", 20.0))  # 2E+14 deducted
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=20.0) == top * 5 - 2 * 10**14
    assert reserve(redis_store, "a", 1, headroom=INF) == (True, INF)
    redis_store.release(KEY, "a", Decimal("0.0000000001"), now=20.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=20.0) == Decimal(
        "299999999999995.0000000001"
    )


# --- Redis only: representation and values ---------------------------------------------------


def test_more_than_ten_decimals_round_the_safe_way(redis_store):
    # The amount rounds up to a tick (10^-10), the headroom down.
    assert reserve(redis_store, "a", "0.00000000001", headroom="0.0000000001") == (
        True,
        Decimal("0.0000000001"),
    )
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == Decimal("1E-10")
    admitted, available = reserve(
        redis_store, "b", "0.00000000011", headroom="0.00000000019", key="k2"
    )
    assert (admitted, available) == (False, Decimal("0.00000000019"))  # exactly, it fits
    # Usage rounds up too.
    redis_store.release(KEY, "u", Decimal("0.00000000001"), now=1.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == Decimal("2E-10")


def test_values_outside_the_exact_range_are_refused(redis_store):
    with pytest.raises(ValueError, match="amount"):
        reserve(redis_store, "a", -1)
    with pytest.raises(ValueError, match="amount"):
        reserve(redis_store, "a", "1E+14")
    with pytest.raises(ValueError, match="headroom"):
        reserve(redis_store, "a", 1, headroom="NaN")
    with pytest.raises(ValueError, match="now"):
        reserve(redis_store, "a", 1, now=float("nan"))
    with pytest.raises(ValueError, match="usage"):
        redis_store.release(KEY, "a", Decimal(-1), now=1.0)
    with pytest.raises(ValueError, match="usage"):
        redis_store.release(KEY, "a", Decimal("Infinity"), now=1.0)
    # A finite headroom beyond 10^14 units is cut down to it (and answers exactly).
    assert reserve(redis_store, "b", "99999999999999", headroom="1E+20") == (True, Decimal("1E+20"))
    assert reserve(redis_store, "c", 2, headroom="1E+20")[0] is False
    # Totals beyond 4.5e14 units: Redis answers an error rather than a wrong sum.
    for i in range(4):
        assert reserve(redis_store, f"x{i}", "99999999999999", headroom=INF, key="k2")[0]
    with pytest.raises(redis.ResponseError, match="exact range"):
        reserve(redis_store, "x5", "99999999999999", headroom=INF, key="k2")


def test_reserving_a_hold_id_again_replaces_it(redis_store):
    assert reserve(redis_store, "a", 4) == (True, Decimal(10))
    assert reserve(redis_store, "a", 2) == (True, Decimal(6))  # the old one counted, then replaced
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 2


def test_usage_beyond_the_prune_margin_leaves_redis(redis_server, redis_store):
    client: Any = redis_server.client()
    for i in range(10):
        redis_store.release(KEY, f"u{i}", Decimal(1), now=float(i))
    assert redis_store.outstanding(KEY, reflected_before=PRUNE_MARGIN + 4.5, now=1.0) == 0
    assert client.hlen("{dodo-gate:cent_1:cus_1}:usage") == 5
    assert client.zcard("{dodo-gate:cent_1:cus_1}:used") == 5
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == 5
    client.close()


def test_a_second_release_of_one_hold_replaces_its_usage(redis_store):
    assert reserve(redis_store, "a", 5)[0]
    redis_store.release(KEY, "a", Decimal(3), now=2.0)
    redis_store.release(KEY, "a", Decimal(3), now=2.0)  # a retried release
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=3.0) == 3
    redis_store.release(KEY, "a", Decimal(0), now=4.0)  # nothing: the usage stays
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=4.0) == 3


def test_extend_with_now_refuses_a_lease_that_ended(redis_store):
    assert reserve(redis_store, "a", 5, expires_at=100.0)[0]
    assert redis_store.extend(KEY, "a", expires_at=150.0, now=99.0)
    assert not redis_store.extend(KEY, "a", expires_at=300.0, now=150.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=120.0) == 0
    # Without now (the protocol's call), an ended lease not dropped yet is extended, as
    # MemoryStore does.
    assert reserve(redis_store, "b", 5, expires_at=100.0)[0]
    assert redis_store.extend(KEY, "b", expires_at=300.0)
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=200.0) == 5


def test_it_is_a_reservation_store_and_says_where_without_the_password(redis_server):
    url = redis_server.url.replace("redis://", "redis://user:s3cret@") + "?password=s3cret"
    with RedisStore(url) as store:
        assert isinstance(store, ReservationStore)
        assert "s3cret" not in repr(store)
        assert "s3cret" not in store.where
        assert store.where == f"redis://user:***@127.0.0.1:{redis_server.port}/0"


def test_a_client_given_works_either_decoding_and_stays_open(redis_server):
    for decode in (False, True):
        client = redis.Redis(
            host="127.0.0.1", port=redis_server.port, socket_timeout=5, decode_responses=decode
        )
        with RedisStore(client, prefix=f"p{decode}") as store:
            assert store.where == f"redis://127.0.0.1:{redis_server.port}"
            store.save_snapshot(KEY, snap("2.50", 7.0))
            assert store.snapshot(KEY) == snap("2.50", 7.0)
            assert reserve(store, "a", 2, headroom="2.50") == (True, Decimal("2.50"))
            assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == 2
        assert client.ping()  # not closed: not ours
        client.close()


def test_bad_arguments_are_configuration_errors(redis_server):
    with pytest.raises(ConfigurationError, match=r"redis:// URL or a redis\.Redis"):
        RedisStore(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        RedisStore("http://127.0.0.1:1/0")
    with pytest.raises(ConfigurationError, match="timeout"):
        RedisStore(redis_server.url, timeout=0)
    with pytest.raises(ConfigurationError, match="ttl"):
        RedisStore(redis_server.url, ttl=float("inf"))
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(redis_server.url, prefix="")


def test_prefixes_keep_stores_apart(redis_server):
    with RedisStore(redis_server.url, prefix="a") as a, RedisStore(redis_server.url) as b:
        assert reserve(a, "h", 10)[0]
        assert reserve(b, "h", 10)[0]
        assert a.outstanding(KEY, reflected_before=0.0, now=1.0) == 10


# --- Redis only: keys and TTL ----------------------------------------------------------------


def test_a_keys_data_shares_one_cluster_slot_and_expires(redis_server):
    client: Any = redis_server.client()
    with RedisStore(redis_server.url, prefix="gate", ttl=60) as store:
        store.save_snapshot(KEY, snap(10, 1.0))
        assert reserve(store, "a", 1, expires_at=130.0, now=100.0)[0]
        store.release(KEY, "b", Decimal(1), now=100.0)
        keys = sorted(k.decode() for k in client.keys("*"))
        tag = "{gate:cent_1:cus_1}"
        names = ("holds", "leases", "snap", "totals", "usage", "used")
        assert keys == [f"{tag}:{name}" for name in names]
        assert len({key_slot(k.encode()) for k in keys}) == 1
        for k in keys:
            assert 0 < client.pttl(k) <= (60 + 30) * 1000
    client.close()


def test_a_long_lease_keeps_its_keys_and_no_write_shortens_a_ttl(redis_server):
    client: Any = redis_server.client()
    with RedisStore(redis_server.url, ttl=5) as store:
        assert reserve(store, "long", 1, expires_at=3601.0, now=1.0)[0]
        assert reserve(store, "short", 1, expires_at=2.0, now=1.0)[0]
        assert client.pttl("{dodo-gate:cent_1:cus_1}:holds") > 3_600_000
        assert client.pttl("{dodo-gate:cent_1:cus_1}:leases") > 3_600_000
    client.close()


def test_an_abandoned_customer_disappears(redis_server):
    client: Any = redis_server.client()
    with RedisStore(redis_server.url, ttl=1.0) as store:
        store.save_snapshot(KEY, snap(10, 1.0))
        assert reserve(store, "a", 1, expires_at=1.1, now=1.0)[0]
        store.release(KEY, "b", Decimal(1), now=1.0)
        assert client.dbsize() == 6
        wait_until(lambda: client.dbsize() == 0, "the keys to expire", timeout=10)
    client.close()


# --- Redis only: processes -------------------------------------------------------------------

_RACER = """
import sys, time
from decimal import Decimal
import redis
from dodo_ingest.gate._redis_store import RedisStore

url, key, name, count, headroom = sys.argv[1:6]
store = RedisStore(url, timeout=10)
store.outstanding("warm-up", reflected_before=0.0, now=1.0)  # connected, scripts loaded
signals = redis.Redis.from_url(url, socket_timeout=10)
signals.incr("test:ready")
deadline = time.monotonic() + 60
while not signals.exists("test:go"):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.001)
admitted = 0
for i in range(int(count)):
    answer = store.reserve(key, f"{name}-{i}", Decimal(1), headroom=Decimal(headroom),
                           reflected_before=0.0, expires_at=10_000.0, now=1.0)
    if answer.admitted != (answer.available >= 1):
        sys.exit(f"admitted={answer.admitted} with {answer.available} available")
    admitted += answer.admitted
print(admitted)
"""


def _python(code: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_processes_racing_one_key_admit_exactly_the_headroom(redis_server, redis_store):
    processes, attempts, headroom = 4, 150, 250
    signals: Any = redis_server.client()
    children = [
        _python(_RACER, redis_server.url, KEY, f"p{n}", str(attempts), str(headroom))
        for n in range(processes)
    ]
    try:

        def all_ready() -> bool:
            for child in children:
                if child.poll() is not None:
                    raise AssertionError(f"a racer exited early: {child.communicate()[1]}")
            return int(signals.get("test:ready") or 0) == processes

        wait_until(all_ready, "the racers to be ready", timeout=60)
        signals.set("test:go", 1)
        counts = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            counts.append(int(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        signals.close()
    assert sum(counts) == headroom
    assert sum(1 for count in counts if count) >= 2  # 150 each: at least two got some
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1.0) == headroom


_HOLDER = """
import sys, time
from decimal import Decimal
from dodo_ingest.gate._redis_store import RedisStore

url, key, lease = sys.argv[1], sys.argv[2], float(sys.argv[4])
store = RedisStore(url, timeout=10)
now = time.time() if sys.argv[3] == "real" else float(sys.argv[3])
answer = store.reserve(key, "holder", Decimal(10), headroom=Decimal(10), reflected_before=0.0,
                       expires_at=now + lease, now=now)
print("held" if answer.admitted else "refused", flush=True)
sys.stdin.readline()  # until killed
"""


def _killed_holder(redis_server: Any, now: float | str, lease: float) -> float:
    """Start a process that holds all 10 credits of KEY, SIGKILL it once its hold is in
    Redis; return the end of its lease as stored."""
    client: Any = redis_server.client()
    holder = _python(_HOLDER, redis_server.url, KEY, str(now), repr(lease), stdin=subprocess.PIPE)
    try:

        def held() -> Any:
            if holder.poll() is not None:
                raise AssertionError(f"the holder exited: {holder.communicate()[1]}")
            return client.zscore("{dodo-gate:cent_1:cus_1}:leases", "holder")

        ends = float(wait_until(held, "the hold to be stored", timeout=60))
    finally:
        holder.kill()  # SIGKILL: it never releases
        holder.wait(30)
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
        client.close()
    assert holder.returncode == -signal.SIGKILL
    return ends


def test_the_hold_of_a_killed_process_ends_with_its_lease(redis_server, redis_store):
    ends = _killed_holder(redis_server, now=1000.0, lease=30.0)
    assert ends == 1030.0
    assert reserve(redis_store, "a", 1, now=1029.999) == (False, Decimal(0))
    assert redis_store.outstanding(KEY, reflected_before=0.0, now=1029.999) == 10
    assert reserve(redis_store, "b", 10, now=1030.0) == (True, Decimal(10))


def test_the_hold_of_a_killed_process_ends_with_its_lease_in_real_time(redis_server, redis_store):
    ends = _killed_holder(redis_server, now="real", lease=1.0)
    attempts = iter(range(100_000))

    def admitted() -> float | None:
        now = time.time()
        ok, _ = reserve(redis_store, f"try{next(attempts)}", 10, expires_at=now + 60, now=now)
        assert ok == (now >= ends), f"admitted={ok} at {now}, the lease ends at {ends}"
        return now if ok else None

    admitted_at = wait_until(admitted, "the lease to end", timeout=20)
    assert admitted_at >= ends


# --- Redis only: when Redis fails ------------------------------------------------------------


def _calls(store: RedisStore, usage: int = 1) -> dict[str, Callable[[], object]]:
    """One call of each method."""
    return {
        "reserve": lambda: reserve(store, "x", 1),
        "release": lambda: store.release(KEY, "x", Decimal(usage), now=1.0),
        "extend": lambda: store.extend(KEY, "x", expires_at=5.0),
        "outstanding": lambda: store.outstanding(KEY, reflected_before=0.0, now=1.0),
        "snapshot": lambda: store.snapshot(KEY),
        "save_snapshot": lambda: store.save_snapshot(KEY, snap(1, 1.0)),
    }


def test_a_stopped_redis_raises_a_connection_error_naming_it(redis_server):
    url = redis_server.url.replace("redis://", "redis://:s3cret@")
    with RedisStore(redis_server.url, timeout=0.3) as store, RedisStore(url) as secret:
        assert reserve(store, "warm", 1)[0]  # a pooled connection that will break
        redis_server.stop()
        for name, call in [*_calls(store).items(), *_calls(store).items()]:
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError) as caught:
                call()
            assert time.monotonic() - started < 2.0, name
            assert store.where in str(caught.value), name
            assert name in str(caught.value)
        with pytest.raises(redis.ConnectionError) as caught:
            secret.snapshot(KEY)
        assert "s3cret" not in str(caught.value)
        assert "***" in str(caught.value)


def test_a_frozen_redis_raises_within_the_timeout(redis_server):
    timeout = 0.3
    process = redis_server.process
    assert process is not None
    with RedisStore(redis_server.url, timeout=timeout) as store:
        assert reserve(store, "before", 2)[0]
        os.kill(process.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: _stopped(process.pid), "redis-server to stop", timeout=10)
            for name, call in _calls(store, usage=0).items():
                started = time.monotonic()
                with pytest.raises((redis.TimeoutError, redis.ConnectionError)) as caught:
                    call()
                took = time.monotonic() - started
                # One read timeout, plus the connect handshake when a connection is opened.
                assert took < 4 * timeout + 0.5, f"{name} took {took:.2f} s"
                assert store.where in str(caught.value)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        # Redis answers again: the store works without being rebuilt. A reserve that timed
        # out may still have been applied when Redis woke up: releasing it by id undoes it.
        store.release(KEY, "x", Decimal(0), now=1.0)
        assert store.outstanding(KEY, reflected_before=0.0, now=1.0) == 2
        assert reserve(store, "after", 8) == (True, Decimal(8))


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def test_holds_and_scripts_survive_a_redis_restart(redis_server, redis_store):
    assert reserve(redis_store, "a", 6)[0]
    redis_store.save_snapshot(KEY, snap(10, 5.0))
    redis_server.restart()  # AOF: the data comes back; the script cache does not

    def answered() -> Any:
        with contextlib.suppress(redis.ConnectionError):
            return (reserve(redis_store, "b", 5),)
        return None

    # The pooled connection died with the server: its first use may fail (no retry).
    (answer,) = wait_until(answered, "the store to answer after the restart", timeout=10)
    assert answer == (False, Decimal(4))
    assert reserve(redis_store, "c", 4) == (True, Decimal(4))
    assert redis_store.snapshot(KEY) == snap(10, 5.0)
