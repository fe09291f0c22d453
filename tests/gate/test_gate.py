"""``CreditGate`` in one process, over real HTTP against the dev server."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from dodo_ingest import (
    AsyncDodoClient,
    ConfigurationError,
    CreditGate,
    DodoClient,
    InsufficientCreditsError,
)
from dodo_ingest.devserver import DevServer
from dodo_ingest.gate import CreditCheckUnavailableError

API_KEY = "sk_test_gate_0123456789abcdef"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server():
    with DevServer() as running:
        yield running


@pytest.fixture
def client(server):
    with DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as made:
        yield made


def _entitlement(client: DodoClient, **overage) -> str:
    return client.credits.create_entitlement(
        name="Credits", unit="credits", precision=2, **overage
    ).id


def _grant(client: DodoClient, entitlement: str, customer: str, amount: str) -> None:
    client.credits.create_ledger_entry(entitlement, customer, amount=amount)


def test_reserve_admits_up_to_the_balance_and_refuses_beyond(client, server):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "10")
    gate = CreditGate(client, credit_entitlement_id=credits)
    first = gate.reserve("cus_1", Decimal("6"))
    assert gate.available("cus_1") == Decimal("4")
    with pytest.raises(InsufficientCreditsError) as refused:
        gate.reserve("cus_1", "4.01")
    error = refused.value
    assert (error.customer_id, error.requested, error.available) == (
        "cus_1",
        Decimal("4.01"),
        Decimal("4"),
    )
    assert error.status_code == 402
    assert error.to_dict()["error"] == {
        "code": "insufficient_credits",
        "message": str(error),
        "customer_id": "cus_1",
        "requested": "4.01",
        "available": "4.00",  # in the entitlement's precision, as the API wrote it
    }
    with gate.reserve("cus_1", 4):  # exactly what is left
        assert gate.available("cus_1") == 0
        assert not gate.would_fit("cus_1", "0.01")
    first.cancel()  # nothing was used by the first
    assert gate.stats.admitted == 2 and gate.stats.refused == 1


def test_a_customer_without_a_balance_has_nothing(client):
    gate = CreditGate(client, credit_entitlement_id=_entitlement(client))
    assert gate.available("cus_new") == 0
    with pytest.raises(InsufficientCreditsError):
        gate.reserve("cus_new", "0.01")
    with gate.reserve("cus_new", 0):  # free work always fits
        pass


def test_overage_allows_up_to_its_limit(client):
    limited = _entitlement(client, overage_enabled=True, overage_limit="5")
    _grant(client, limited, "cus_1", "10")
    gate = CreditGate(client, credit_entitlement_id=limited)
    assert gate.available("cus_1") == Decimal("15")
    unlimited = _entitlement(client, overage_enabled=True)
    gate = CreditGate(client, credit_entitlement_id=unlimited)
    assert gate.available("cus_1") == Decimal("Infinity")
    with gate.reserve("cus_1", 10**9):
        pass


def test_settled_cost_counts_until_the_balance_shows_it_deducted_and_never_twice(client):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "10")
    clock = Clock()
    gate = CreditGate(
        client, credit_entitlement_id=credits, refresh_interval=5, ingestion_lag=30, clock=clock
    )
    with gate.reserve("cus_1", 4) as hold:
        hold.settle("3")  # the work cost 3, not the 4 reserved
    assert gate.available("cus_1") == Decimal("7")  # the API has not deducted it yet
    # The API deducts it (here by hand); the next read shows the drop: subtracted once.
    client.credits.create_ledger_entry(credits, "cus_1", amount="3", entry_type="debit")
    clock.now += 6
    assert gate.available("cus_1") == Decimal("7")
    with gate.reserve("cus_1", 2):  # an unsettled hold keeps its estimate
        pass
    assert gate.available("cus_1") == Decimal("5")
    # A grant arrives before the API deducted those 2: the balance rose, nothing is taken
    # for deducted, the 2 still count.
    _grant(client, credits, "cus_1", "10")
    clock.now += 6
    assert gate.available("cus_1") == Decimal("15")
    # ingestion_lag later the API must have deducted it: from then on the balance decides.
    clock.now += 31
    assert gate.available("cus_1") == Decimal("17")
    assert gate.stats.balance_reads == 4


def test_a_fresh_balance_is_used_without_a_request(client, server):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "100")
    clock = Clock()
    gate = CreditGate(client, credit_entitlement_id=credits, refresh_interval=5, clock=clock)
    for _ in range(50):
        with gate.reserve("cus_1", 1):
            pass
    assert gate.stats.balance_reads == 1
    clock.now += 5
    gate.reserve("cus_1", 1).release()
    assert gate.stats.balance_reads == 2


def test_concurrent_threads_never_admit_more_than_the_balance(client):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "50")
    _grant(client, credits, "cus_2", "500")
    gate = CreditGate(client, credit_entitlement_id=credits)
    admitted: list[str] = []
    refused: list[str] = []
    holds = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def work(customer: str) -> None:
        start.wait(10)
        for _ in range(10):
            try:
                hold = gate.reserve(customer, 1)
            except InsufficientCreditsError:
                with lock:
                    refused.append(customer)
            else:
                with lock:
                    admitted.append(customer)
                    holds.append(hold)

    threads = [threading.Thread(target=work, args=(f"cus_{1 + n % 2}",)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert admitted.count("cus_1") == 50  # all it can pay for, not one more
    assert refused.count("cus_1") == 50
    assert admitted.count("cus_2") == 100 and "cus_2" not in refused  # enough: never refused
    assert gate.stats.balance_reads == 2  # one read per customer, not one per thread
    for hold in holds:
        hold.cancel()
    assert gate.available("cus_1") == 50


def test_concurrent_asyncio_tasks_with_an_async_client(server, client):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "30")

    async def main() -> tuple[int, int]:
        async with AsyncDodoClient(api_key=API_KEY, base_url=server.base_url) as aclient:
            gate = CreditGate(aclient, credit_entitlement_id=credits)
            with pytest.raises(ConfigurationError, match="areserve"):
                gate.reserve("cus_1", 1)
            admitted = refused = 0
            release = asyncio.Event()

            async def one() -> None:
                nonlocal admitted, refused
                try:
                    async with gate.areserve("cus_1", 1):
                        admitted += 1
                        await release.wait()  # all holds live at once
                except InsufficientCreditsError:
                    refused += 1

            tasks = [asyncio.create_task(one()) for _ in range(100)]
            while admitted + refused < 100:
                await asyncio.sleep(0)
            release.set()
            await asyncio.gather(*tasks)
            assert await gate.aavailable("cus_1") == 0  # their estimates now wait for the API
            assert gate.stats.balance_reads == 1  # one read, however many tasks asked
            return admitted, refused

    assert asyncio.run(main()) == (30, 70)


def test_an_unreachable_api_follows_on_unavailable(client, server, caplog):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "5")
    clock = Clock()
    allow = CreditGate(client, credit_entitlement_id=credits, clock=clock)
    deny = CreditGate(client, credit_entitlement_id=credits, on_unavailable="deny", clock=clock)
    assert allow.available("cus_1") == 5  # a balance known from before the outage
    server.stop()
    clock.now += 60  # stale now
    # On the last balance known: still bounded by it.
    with allow.reserve("cus_1", 5), pytest.raises(InsufficientCreditsError):
        allow.reserve("cus_1", 1)
    with pytest.raises(CreditCheckUnavailableError) as denied:
        deny.reserve("cus_1", 1)
    assert denied.value.status_code == 503
    unknown = CreditGate(client, credit_entitlement_id=credits, clock=clock)
    unknown.reserve("cus_9", 1000).release()  # nothing known: admitted unchecked, counted
    assert allow.stats.unavailable_allowed >= 1
    assert unknown.stats.unavailable_allowed == 1
    assert deny.stats.unavailable_denied == 1
    assert "cannot be read" in caplog.text
    assert API_KEY not in caplog.text


def test_bad_arguments_are_named(client):
    with pytest.raises(ConfigurationError, match="on_unavailable"):
        CreditGate(client, credit_entitlement_id="cent_1", on_unavailable="maybe")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="refresh_interval"):
        CreditGate(client, credit_entitlement_id="cent_1", refresh_interval=float("nan"))
    with pytest.raises(ConfigurationError, match="credit_entitlement_id"):
        CreditGate(client, credit_entitlement_id="")
    gate = CreditGate(client, credit_entitlement_id="cent_1")
    with pytest.raises(ValueError, match="amount must be a finite amount >= 0"):
        gate.reserve("cus_1", "-1")
    with pytest.raises(ValueError, match="amount"):
        gate.reserve("cus_1", Decimal("NaN"))


def test_a_hold_lasts_its_lease_unless_extended(client):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "10")
    clock = Clock()
    gate = CreditGate(client, credit_entitlement_id=credits, lease=60, clock=clock)
    hold = gate.reserve("cus_1", 6)
    clock.now += 50
    assert hold.extend()  # 60 s more from now
    clock.now += 50  # past the first lease, within the second
    assert gate.available("cus_1") == 4
    clock.now += 11  # the extended lease ended: the holder is presumed dead
    assert gate.available("cus_1") == 10
    assert not hold.extend()
    with pytest.raises(ValueError, match="seconds"):
        gate.reserve("cus_1", 1).extend(0)


def test_a_balance_that_is_not_a_number_is_an_unavailable_read(client, monkeypatch):
    credits = _entitlement(client)
    _grant(client, credits, "cus_1", "10")
    gate = CreditGate(client, credit_entitlement_id=credits, on_unavailable="deny")
    real = client.credits.balance

    def garbage(entitlement: str, customer: str):
        balance = real(entitlement, customer)
        return type(balance)(**{**balance.__dict__, "balance": Decimal("NaN")})

    monkeypatch.setattr(client.credits, "balance", garbage)
    with pytest.raises(CreditCheckUnavailableError):
        gate.reserve("cus_1", 1000)
    allow = CreditGate(client, credit_entitlement_id=credits)
    with allow.reserve("cus_1", 1):  # nothing known before: admitted blind, counted
        pass
    assert allow.stats.unavailable_allowed == 1
