"""``CreditGate`` against a billing API that deducts usage late (the dev server's
``deduction_lag``), with the usage tracked for real through an ``Ingestion``.

The usage events go to a meter linked to the entitlement (one credit per ``credits`` unit),
so the server's balance drops by exactly what the gate settled, ``deduction_lag`` seconds
after each event arrived. Every wait polls observable state (a balance read over HTTP, the
gate's answer) until a deadline; none sleeps to synchronise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from dodo_ingest import (
    CreditGate,
    DodoClient,
    Ingestion,
    InsufficientCreditsError,
    MeterAggregation,
)
from dodo_ingest.devserver import DevServer

API_KEY = "sk_test_gate_lag_0123456789abcdef"
LAG = 2.0
"""Seconds the server takes to deduct an event after it arrived."""
DEADLINE = 20.0
EVENT = "work.done"


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = DEADLINE) -> Any:
    """Read until ``done(value)`` or the deadline; the last value read (asserted on)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


@dataclass
class Billing:
    server: DevServer
    client: DodoClient
    ingestion: Ingestion
    entitlement: str
    meter: str

    def grant(self, customer: str, amount: str) -> None:
        self.client.credits.create_ledger_entry(self.entitlement, customer, amount=amount)

    def server_balance(self, customer: str) -> Decimal:
        """What the API reports now (usage older than the lag deducted)."""
        return self.client.credits.balance(self.entitlement, customer).balance

    def track(self, customer: str, credits: Decimal | int) -> None:
        self.ingestion.track(customer, EVENT, {"credits": str(credits)})

    def gate(self, **settings: Any) -> CreditGate:
        return CreditGate(self.client, credit_entitlement_id=self.entitlement, **settings)

    def used_on_server(self, customer: str) -> Decimal:
        """Every credit of usage the server stored for ``customer``, deducted or not."""
        total = Decimal(0)
        for event in self.client.events.list(customer_id=customer, event_name=EVENT):
            total += Decimal(str((event.metadata or {})["credits"]))
        return total


@pytest.fixture
def billing() -> Iterator[Billing]:
    with (
        DevServer(deduction_lag=LAG) as server,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client,
        Ingestion(api_key=API_KEY, base_url=server.base_url, flush_interval=0.05) as ingestion,
    ):
        meter = client.meters.create(
            name="Credits used",
            event_name=EVENT,
            measurement_unit="credits",
            aggregation=MeterAggregation("sum", "credits"),
        ).id
        entitlement = client.credits.create_entitlement(name="Credits", unit="credits").id
        server.link_meter_to_credits(meter, entitlement, "1")
        yield Billing(server, client, ingestion, entitlement, meter)


def test_no_over_admission_while_the_server_has_not_deducted(billing: Billing) -> None:
    """A gate whose ingestion_lag matches the server's: every decision on a fresh read of a
    balance that does not show the recent usage yet, and still not one credit too many."""
    billing.grant("cus_1", "10")
    gate = billing.gate(refresh_interval=0, ingestion_lag=LAG)  # reads at every reserve
    admitted = 0
    refused: InsufficientCreditsError | None = None
    server_left_when_refused: Decimal | None = None
    for _ in range(30):  # bounded: 10 fit
        try:
            hold = gate.reserve("cus_1", 1)
        except InsufficientCreditsError as error:
            server_left_when_refused = billing.server_balance("cus_1")
            refused = error
            break
        with hold:
            admitted += 1
            billing.track("cus_1", 1)
            assert billing.ingestion.flush(10)  # it arrived before the hold is released
            hold.settle(1)
        assert gate.available("cus_1") == 10 - admitted
    assert admitted == 10
    assert refused is not None and refused.available == 0
    # The API still showed credits (at least the last one is within its lag): the gate
    # refused on usage the server had not deducted.
    assert server_left_when_refused is not None and server_left_when_refused > 0
    assert gate.stats.admitted == 10 and gate.stats.refused == 1

    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left == 0) == 0
    # Deducted on the server: counted once, not twice (0, not -10).
    assert gate.available("cus_1") == 0
    balance = billing.client.credits.balance(billing.entitlement, "cus_1")
    assert (balance.balance, balance.overage) == (0, 0)
    assert billing.used_on_server("cus_1") == 10


def test_usage_the_server_deducted_is_not_subtracted_twice(billing: Billing) -> None:
    """With an ingestion_lag far longer than the test, only the drop in the balance can
    clear settled usage: available must equal the server's balance minus the live holds."""
    billing.grant("cus_1", "10")
    gate = billing.gate(refresh_interval=0, ingestion_lag=600)
    for reserved, cost in (("3", "2"), ("3", "2.5"), ("2", "2"), ("1", "0.5")):
        with gate.reserve("cus_1", reserved) as hold:
            billing.track("cus_1", Decimal(cost))
            hold.settle(cost)
    assert billing.ingestion.flush(10)
    assert billing.used_on_server("cus_1") == 7
    assert gate.available("cus_1") == 3  # the server may not show any of it yet
    live = gate.reserve("cus_1", "1.5")
    assert gate.available("cus_1") == Decimal("1.5")

    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left <= 3) == 3
    assert gate.available("cus_1") == 3 - Decimal("1.5")  # the server's balance minus the hold
    with pytest.raises(InsufficientCreditsError):
        gate.reserve("cus_1", "1.6")

    billing.track("cus_1", 1)
    live.settle(1)
    live.release()
    assert gate.available("cus_1") == 2  # before the server deducts it ...
    assert billing.ingestion.flush(10)
    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left <= 2) == 2
    assert gate.available("cus_1") == 2  # ... and after, once


def test_racing_threads_with_background_delivery_never_overspend(billing: Billing) -> None:
    """Threads reserve and settle while the Ingestion delivers in the background (after the
    holds are released) and the server deducts late: exactly the grant is admitted."""
    billing.grant("cus_1", "25")
    # The lag covers the server's deduction plus the background delivery.
    gate = billing.gate(refresh_interval=0.05, ingestion_lag=LAG + 3)
    admitted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(10)
        for _ in range(20):  # bounded: 8 x 20 tries for 25 credits
            try:
                with gate.reserve("cus_1", 1) as hold:
                    billing.track("cus_1", 1)
                    hold.settle(1)
            except InsufficientCreditsError:
                return
            with lock:
                admitted.append(1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(admitted) == 25
    assert billing.ingestion.flush(10)
    assert billing.used_on_server("cus_1") == 25
    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left == 0) == 0
    balance = billing.client.credits.balance(billing.entitlement, "cus_1")
    assert balance.overage == 0
    assert gate.available("cus_1") == 0


def test_usage_settled_when_reported_is_not_subtracted_twice_while_the_work_goes_on(
    billing: Billing,
) -> None:
    billing.grant("cus_1", "10")
    gate = billing.gate(refresh_interval=0, ingestion_lag=600)
    with gate.reserve("cus_1", 1) as hold:
        billing.track("cus_1", 1)  # the work reports its usage...
        hold.settle(1)  # ...and settles it at the same moment, then goes on for a while
        assert billing.ingestion.flush(10)
        assert poll(lambda: billing.server_balance("cus_1"), lambda left: left < 10) == 9
        # Another request of the customer reads meanwhile: the drop is matched to the usage.
        assert gate.available("cus_1") == 9
    assert gate.available("cus_1") == 9


def test_usage_settled_after_the_api_deducted_it_counts_again_until_ingestion_lag(
    billing: Billing,
) -> None:
    """The documented safe side of settling late: the drop was read while no usage was
    recorded, so the usage recorded by the late settlement counts until ``ingestion_lag``
    has passed; the gate refuses a little early, never admits past the balance."""
    billing.grant("cus_1", "10")
    lag = LAG + 1.0
    gate = billing.gate(refresh_interval=0, ingestion_lag=lag)
    hold = gate.reserve("cus_1", 1)
    billing.track("cus_1", 1)
    assert billing.ingestion.flush(10)
    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left < 10) == 9
    assert gate.available("cus_1") == 8  # the server's 9 minus the live hold
    hold.settle(1)
    settled = time.monotonic()
    assert gate.available("cus_1") == 8  # counted again: the earlier drop is not matched to it
    assert poll(lambda: gate.available("cus_1"), lambda left: left != 8) == 9  # never 10
    assert time.monotonic() - settled >= lag - 0.5  # not before a read ``lag`` later


def test_undelivered_usage_keeps_counting(billing: Billing) -> None:
    billing.grant("cus_1", "3")
    # The lag matches the server's; the gate knows the Ingestion that delivers the usage.
    gate = billing.gate(refresh_interval=0, ingestion_lag=LAG, ingestion=billing.ingestion)
    billing.server.set_faults("5xx=1")  # ingestion fails; balance reads still answer
    try:
        for _ in range(3):
            with gate.reserve("cus_1", 1) as hold:
                billing.track("cus_1", 1)
                hold.settle(1)
        assert not gate.would_fit("cus_1", 1)
        # While none of the usage reached the server, the gate must go on refusing.
        fits = poll(lambda: gate.would_fit("cus_1", 1), lambda fit: fit, timeout=2 * LAG)
        assert billing.server.event_ids() == []  # still undelivered when we looked
        assert not fits  # without ingestion=, True once LAG has passed since the releases
    finally:
        billing.server.set_faults(None)
        assert billing.ingestion.flush(15)
    assert poll(lambda: billing.server_balance("cus_1"), lambda left: left == 0) == 0
