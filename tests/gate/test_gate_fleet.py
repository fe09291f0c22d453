"""``CreditGate`` across processes on a shared Redis store, against the dev server over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from dodo_ingest import CreditGate, DodoClient, InsufficientCreditsError
from dodo_ingest.devserver import DevServer
from dodo_ingest.gate import RedisStore

API_KEY = "sk_test_gate_fleet_0123456789"

WORKER = """
import json, sys, threading
from dodo_ingest import CreditGate, DodoClient, InsufficientCreditsError
base_url, redis_url, credits, customer, attempts = sys.argv[1:6]
client = DodoClient(api_key="sk_test_gate_fleet_0123456789", base_url=base_url)
gate = CreditGate(client, credit_entitlement_id=credits, store=redis_url)
print("ready", flush=True)
sys.stdin.readline()  # all workers start together
admitted = refused = 0
holds = []
for _ in range(int(attempts)):
    try:
        holds.append(gate.reserve(customer, 1))  # held until the end: all count at once
        admitted += 1
    except InsufficientCreditsError:
        refused += 1
print(json.dumps({"admitted": admitted, "refused": refused}), flush=True)
sys.stdin.readline()
for hold in holds:
    hold.cancel()
"""

HOLDER = """
import sys
from dodo_ingest import CreditGate, DodoClient
base_url, redis_url, credits, customer = sys.argv[1:5]
client = DodoClient(api_key="sk_test_gate_fleet_0123456789", base_url=base_url)
gate = CreditGate(client, credit_entitlement_id=credits, store=redis_url, lease=2)
hold = gate.reserve(customer, 40)
print("holding", flush=True)
sys.stdin.readline()  # killed here
"""


@pytest.fixture
def server():
    with DevServer() as running:
        yield running


@pytest.fixture
def client(server):
    with DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as made:
        yield made


def _entitlement_with(client: DodoClient, customer: str, amount: str) -> str:
    credits = client.credits.create_entitlement(name="Credits", unit="credits", precision=0).id
    client.credits.create_ledger_entry(credits, customer, amount=amount)
    return credits


def _start(tmp_path, source: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / f"script_{abs(hash(source))}.py"
    if not script.exists():  # never rewritten: a child started before may still be reading it
        script.write_text(source)
    stderr = tmp_path / f"child_{len(list(tmp_path.glob('child_*.stderr')))}.stderr"
    with stderr.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            cwd=os.getcwd(),
        )
    _STDERR[child.pid] = stderr
    return child


_STDERR: dict[int, Path] = {}


def _line(child: subprocess.Popen[str]) -> str:
    """The child's next stdout line; quotes its stderr when it ended without one."""
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        raise AssertionError(
            f"the child ended (exit {child.wait(30)}) without a line; stderr:\n"
            + _STDERR[child.pid].read_text()[-4000:]
        )
    return line.strip()


def test_processes_sharing_a_redis_store_never_admit_more_than_the_balance(
    tmp_path, server, client, redis_server
):
    credits = _entitlement_with(client, "cus_1", "100")
    workers = [
        _start(tmp_path, WORKER, server.base_url, redis_server.url, credits, "cus_1", "60")
        for _ in range(4)
    ]
    try:
        for worker in workers:
            assert _line(worker) == "ready"
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(_line(worker)) for worker in workers]
        assert sum(r["admitted"] for r in results) == 100  # the balance, not one more
        assert sum(r["refused"] for r in results) == 140
        # While they hold everything, this process sees nothing left either.
        gate = CreditGate(client, credit_entitlement_id=credits, store=redis_server.url)
        assert gate.available("cus_1") == 0
        for worker in workers:
            worker.stdin.write("done\n")
            worker.stdin.flush()
        for worker in workers:
            assert worker.wait(30) == 0
        assert gate.available("cus_1") == 100  # cancelled: nothing used
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


def test_a_holder_killed_with_sigkill_releases_its_hold_when_its_lease_ends(
    tmp_path, server, client, redis_server
):
    credits = _entitlement_with(client, "cus_1", "50")
    holder = _start(tmp_path, HOLDER, server.base_url, redis_server.url, credits, "cus_1")
    try:
        assert _line(holder) == "holding"
        store = RedisStore(redis_server.url)
        gate = CreditGate(client, credit_entitlement_id=credits, store=store)
        with pytest.raises(InsufficientCreditsError):
            gate.reserve("cus_1", 40)  # held by the other process
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 15
        while gate.available("cus_1") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gate.available("cus_1") == Decimal(50)  # the lease ended: the hold is gone
        gate.reserve("cus_1", 40).cancel()
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_process_on_an_older_balance_reserves_on_the_newer_one_another_read(
    kind, client, request
):
    """Process A holds a balance it read itself, still fresh for it; process B reads a newer
    one showing A's usage deducted, which marks that usage reflected in the shared store. A
    must not reserve on its older, higher balance: the store answers stale, A takes B's."""
    from dodo_ingest.gate import MemoryStore

    if kind == "memory":
        store = MemoryStore()
    else:
        store = RedisStore(request.getfixturevalue("redis_server").url)
    credits = _entitlement_with(client, "cus_1", "10")
    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    a = CreditGate(
        client, credit_entitlement_id=credits, store=store, refresh_interval=100, clock=clock
    )
    b = CreditGate(
        client, credit_entitlement_id=credits, store=store, refresh_interval=1, clock=clock
    )
    with a.reserve("cus_1", 4) as hold:
        hold.settle(4)
    client.credits.create_ledger_entry(credits, "cus_1", amount="4", entry_type="debit")
    now[0] += 2  # B's copy is stale now, A's is not
    assert b.available("cus_1") == 6  # B reads 6; the drop marks A's 4 reflected
    with pytest.raises(InsufficientCreditsError) as refused:
        a.reserve("cus_1", 7)  # on A's own 10 - 0 it would be admitted
    assert refused.value.available == 6
    a.reserve("cus_1", 6).cancel()
    assert a.stats.balance_reads == 1  # A read no balance itself: it took B's from the store


def test_an_amount_the_store_cannot_keep_is_refused_not_admitted_blind(client, redis_server):
    credits = _entitlement_with(client, "cus_1", "10")
    gate = CreditGate(client, credit_entitlement_id=credits, store=redis_server.url)
    for amount in ("1e14", 10**15, "1e300"):
        with pytest.raises(ValueError, match="amount"):
            gate.reserve("cus_1", amount)
    assert gate.stats.unavailable_allowed == 0
    assert gate.available("cus_1") == 10


def test_a_host_whose_clock_runs_ahead_cannot_switch_off_the_others_accounting(
    client, redis_server
):
    credits = _entitlement_with(client, "cus_1", "10")
    ahead = CreditGate(
        client,
        credit_entitlement_id=credits,
        store=redis_server.url,
        clock=lambda: time.time() + 600,
    )
    ahead.available("cus_1")  # stores a balance stamped 10 minutes in the future
    gate = CreditGate(client, credit_entitlement_id=credits, store=redis_server.url)
    done = 0
    for _ in range(20):
        try:
            with gate.reserve("cus_1", 5) as hold:
                hold.settle(5)
                done += 5
        except InsufficientCreditsError:
            pass
    assert done == 10  # the balance, not 100
