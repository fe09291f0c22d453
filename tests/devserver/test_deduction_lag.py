"""``DevServer(deduction_lag=...)`` and ``dev-server --deduction-lag``: usage counts against
credit balances only some time after it arrived, as the real API deducts asynchronously.

Every wait polls observable state (a balance read over HTTP) until a deadline; none sleeps to
synchronise.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dodo_ingest import CreditBalance, DodoClient, MeterAggregation
from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import events, unique
from tests.devserver.test_cli import dev_server

API_KEY = "sk_test_deduction_lag_0123456789"
DEADLINE = 15.0


def poll(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = DEADLINE) -> Any:
    """Read until ``done(value)``; the last value read (a test asserts on it) after the
    deadline. Polls every 20 ms."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.02)
        value = read()
    return value


class Credits:
    """An entitlement (precision 2) whose balance a ``sum`` meter of ``credits`` draws on."""

    def __init__(self, client: DodoClient, link: Callable[[str, str], None]) -> None:
        self.client = client
        self.event_name = unique("work.done")
        meter = client.meters.create(
            name="Credits used",
            event_name=self.event_name,
            measurement_unit="credits",
            aggregation=MeterAggregation("sum", "credits"),
        )
        self.meter_id = meter.id
        self.id = client.credits.create_entitlement(
            name="Credits", unit="credits", overage_enabled=True
        ).id
        link(meter.id, self.id)

    def grant(self, customer: str, amount: str) -> None:
        self.client.credits.create_ledger_entry(self.id, customer, amount=amount)

    def use(self, customer: str, credits: str, *, prefix: str | None = None) -> list[str]:
        batch = events(
            1,
            customer_id=customer,
            event_name=self.event_name,
            prefix=prefix,
            metadata={"credits": credits},
        )
        self.client.events.ingest(batch)
        return [event["event_id"] for event in batch]

    def balance(self, customer: str) -> CreditBalance:
        return self.client.credits.balance(self.id, customer)

    def left(self, customer: str) -> Decimal:
        return self.balance(customer).balance


def credits_on(server: DevServer, client: DodoClient) -> Credits:
    return Credits(client, lambda meter, ent: server.link_meter_to_credits(meter, ent, "1"))


@pytest.fixture
def lagging() -> Iterator[DevServer]:
    with DevServer(deduction_lag=1.0) as server:
        yield server


@pytest.fixture
def client(lagging: DevServer) -> Iterator[DodoClient]:
    with DodoClient(api_key=API_KEY, base_url=lagging.base_url, max_retries=0) as made:
        yield made


def test_usage_counts_only_once_it_arrived_the_lag_ago(
    lagging: DevServer, client: DodoClient
) -> None:
    credits = credits_on(lagging, client)
    customer = unique("cus")
    credits.grant(customer, "10")
    arrived = time.monotonic()
    credits.use(customer, "3")
    # Stored, listed and in the usage report at once; not yet deducted.
    assert [event.metadata for event in client.events.list(customer_id=customer)] == [
        {"credits": "3"}
    ]
    assert credits.left(customer) == Decimal("10.00")
    listed = client.credits.balances(credits.id)  # the list endpoint lags alike
    assert [item.balance for item in listed] == [Decimal("10.00")]

    assert poll(lambda: credits.left(customer), lambda left: left < 10) == Decimal("7.00")
    assert time.monotonic() - arrived >= lagging.deduction_lag - 0.05  # not before the lag
    listed = client.credits.balances(credits.id)  # the list endpoint lags alike
    assert [item.balance for item in listed] == [Decimal("7.00")]


def test_each_event_waits_from_its_own_arrival(lagging: DevServer, client: DodoClient) -> None:
    credits = credits_on(lagging, client)
    customer = unique("cus")
    credits.grant(customer, "10")
    credits.use(customer, "1")
    assert poll(lambda: credits.left(customer), lambda left: left < 10) == Decimal("9.00")
    credits.use(customer, "2")  # arrives after the first was deducted
    assert credits.left(customer) == Decimal("9.00")
    assert poll(lambda: credits.left(customer), lambda left: left < 9) == Decimal("7.00")


def test_a_replayed_event_keeps_its_first_arrival(lagging: DevServer, client: DodoClient) -> None:
    credits = credits_on(lagging, client)
    customer = unique("cus")
    credits.grant(customer, "10")
    [event_id] = credits.use(customer, "4", prefix=unique("evt"))
    assert poll(lambda: credits.left(customer), lambda left: left < 10) == Decimal("6.00")
    replay = [
        {
            "event_id": event_id,
            "customer_id": customer,
            "event_name": credits.event_name,
            "metadata": {"credits": "4"},
        }
    ]
    assert client.events.ingest(replay).ingested_count == 0
    assert credits.left(customer) == Decimal("6.00")  # not hidden again for another lag


def test_ledger_entries_see_the_balance_reads_show(lagging: DevServer, client: DodoClient) -> None:
    credits = credits_on(lagging, client)
    customer = unique("cus")
    credits.grant(customer, "10")
    credits.use(customer, "3")
    debit = client.credits.create_ledger_entry(credits.id, customer, amount="9", entry_type="debit")
    assert (debit.balance_before, debit.balance_after) == (Decimal("10.00"), Decimal("1.00"))
    # Once the usage is deducted it goes beyond what is left: into overage.
    balance = poll(lambda: credits.balance(customer), lambda b: b.balance < 1)
    assert (balance.balance, balance.overage) == (Decimal("0.00"), Decimal("2.00"))


def test_the_lag_can_change_while_running_and_applies_to_stored_events(
    lagging: DevServer, client: DodoClient
) -> None:
    lagging.set_deduction_lag(3600)
    credits = credits_on(lagging, client)
    customer = unique("cus")
    credits.grant(customer, "10")
    credits.use(customer, "2.5")
    assert credits.left(customer) == Decimal("10.00")
    lagging.set_deduction_lag(0)
    assert lagging.deduction_lag == 0
    assert credits.left(customer) == Decimal("7.50")  # at once, no waiting
    lagging.set_deduction_lag(3600)
    assert credits.left(customer) == Decimal("7.50")  # a deduction made is never taken back
    credits.use(customer, "1")  # arrives under the new lag
    assert credits.left(customer) == Decimal("7.50")
    lagging.clock.advance(hours=1)
    assert credits.left(customer) == Decimal("6.50")


def test_without_a_lag_usage_counts_at_once() -> None:
    with (
        DevServer() as server,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        assert server.deduction_lag == 0
        credits = credits_on(server, client)
        credits.grant("cus_1", "10")
        credits.use("cus_1", "3")
        assert credits.left("cus_1") == Decimal("7.00")


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "1"])
def test_a_bad_lag_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="deduction_lag"):
        DevServer(deduction_lag=bad)
    server = DevServer()
    with pytest.raises(ValueError, match="deduction_lag"):
        server.set_deduction_lag(bad)
    assert server.deduction_lag == 0


def test_events_of_a_database_written_before_arrival_times_count_at_once(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    customer = "cus_old"
    with (
        DevServer(db=db) as server,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        credits = credits_on(server, client)
        credits.grant(customer, "10")
        credits.use(customer, "4")
    with sqlite3.connect(db) as connection:  # the events table as an older dev server wrote it
        connection.execute("ALTER TABLE events DROP COLUMN ingested_us")
    with (
        DevServer(db=db, deduction_lag=3600) as server,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        credits.client = client
        assert credits.left(customer) == Decimal("6.00")
        credits.use(customer, "1")  # arrives now: waits for the lag
        assert credits.left(customer) == Decimal("6.00")
        assert len(list(client.events.list(customer_id=customer))) == 2


def test_the_command_takes_a_deduction_lag() -> None:
    with dev_server("--deduction-lag", "2") as (process, url):
        with DodoClient(api_key=API_KEY, base_url=url, max_retries=0) as client:

            def link(meter: str, entitlement: str) -> None:
                body = {
                    "meter_id": meter,
                    "credit_entitlement_id": entitlement,
                    "meter_units_per_credit": "1",
                }
                httpx2.post(f"{url}/_dev/credit-links", json=body).raise_for_status()

            credits = Credits(client, link)
            credits.grant("cus_cli", "5")
            credits.use("cus_cli", "2")
            assert credits.left("cus_cli") == Decimal("5.00")
            left = poll(lambda: credits.left("cus_cli"), lambda value: value < 5)
            assert left == Decimal("3.00")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "credit balances count usage 2 s after it arrives" in stderr


def test_the_command_refuses_a_negative_lag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dodo_ingest", "dev-server", "--deduction-lag", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--deduction-lag" in result.stderr
