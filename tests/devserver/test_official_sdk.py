"""A client we did not write, the official ``dodopayments`` SDK, against the dev server: it
ingests, lists every page, retrieves and lists meters, and sees what our client sees."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dodopayments
import pytest
from dodopayments import DodoPayments

from dodo_ingest import DodoClient, Event, MeterAggregation
from dodo_ingest.devserver import DevServer
from tests.devserver._helpers import ago, events, unique

API_KEY = "sk_test_official_sdk_0123456789"


@pytest.fixture(scope="module")
def running() -> Iterator[DevServer]:
    with DevServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def sdk(running: DevServer) -> Iterator[DodoPayments]:
    with DodoPayments(bearer_token=API_KEY, base_url=running.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
def ours(running: DevServer) -> Iterator[DodoClient]:
    with DodoClient(api_key=API_KEY, base_url=running.base_url, max_retries=0) as client:
        yield client


def sdk_pages(sdk: DodoPayments, page_size: int, **filters: Any) -> list[Any]:
    """Every event, paging explicitly (the SDK's auto-paging skips page 1 of 0-based pages)."""
    items: list[Any] = []
    for page_number in range(1000):
        page = sdk.usage_events.list(page_number=page_number, page_size=page_size, **filters)
        items += page.items
        if len(page.items) < page_size:
            return items
    raise AssertionError("more pages than expected")


def as_tuple(event: Any) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.business_id,
        event.customer_id,
        event.event_name,
        event.timestamp,
        event.metadata,
    )


def test_the_sdk_ingests_and_both_clients_list_the_same_events(
    sdk: DodoPayments, ours: DodoClient
) -> None:
    customer = unique("cus")
    batch = events(23, customer_id=customer, metadata={"tokens": 12, "model": "gpt", "ok": True})
    for i, event in enumerate(batch):
        event["timestamp"] = ago(minutes=30 - i)
    assert sdk.usage_events.ingest(events=batch).ingested_count == 23
    assert sdk.usage_events.ingest(events=batch).ingested_count == 0

    theirs = sdk_pages(sdk, 5, customer_id=customer)
    mine: list[Event] = list(ours.events.list(customer_id=customer, page_size=7))
    assert [as_tuple(e) for e in theirs] == [as_tuple(e) for e in mine]
    assert {e.event_id for e in mine} == {e["event_id"] for e in batch}


def test_our_client_ingests_and_the_sdk_retrieves_the_same_event(
    sdk: DodoPayments, ours: DodoClient
) -> None:
    batch = events(3, customer_id=unique("cus"), metadata={"inputTokens": 10, "ratio": 0.5})
    assert ours.events.ingest(batch).ingested_count == 3
    for event in batch:
        theirs = sdk.usage_events.retrieve(event["event_id"])
        assert as_tuple(theirs) == as_tuple(ours.events.retrieve(event["event_id"]))
        assert theirs.metadata == event["metadata"]


def test_both_clients_filter_by_meter_and_time_alike(sdk: DodoPayments, ours: DodoClient) -> None:
    customer, name = unique("cus"), unique("llm")
    batch = events(12, customer_id=customer, event_name=name)
    for i, event in enumerate(batch):
        event["metadata"] = {"model": "gpt" if i % 3 else "claude"}
        event["timestamp"] = ago(minutes=40 - 3 * i)
    ours.events.ingest(batch)
    meter = sdk.meters.create(
        name="gpt calls",
        event_name=name,
        measurement_unit="calls",
        aggregation={"type": "count"},
        filter={
            "conjunction": "and",
            "clauses": [{"key": "model", "operator": "equals", "value": "gpt"}],
        },
    )
    window = {"start": ago(minutes=35), "end": ago(minutes=5)}
    theirs = sdk_pages(sdk, 3, meter_id=meter.id, **window)
    mine = list(ours.events.list(meter_id=meter.id, page_size=4, **window))
    assert [e.event_id for e in theirs] == [e.event_id for e in mine]
    assert 0 < len(mine) < 12


def test_both_clients_list_the_same_meters() -> None:
    with (
        DevServer(api_key=API_KEY) as server,
        DodoPayments(bearer_token=API_KEY, base_url=server.base_url, max_retries=0) as sdk,
        DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as ours,
    ):
        created = [
            ours.meters.create(
                name=f"meter {i}",
                event_name="api.call",
                measurement_unit="calls",
                aggregation=MeterAggregation("sum", "n") if i % 2 else MeterAggregation("count"),
            )
            for i in range(4)
        ]
        sdk.meters.archive(created[2].id)
        listed = sdk.meters.list().items
        assert [m.id for m in listed] == [m.id for m in ours.meters.list()]
        assert [m.id for m in listed] == [created[i].id for i in (0, 1, 3)]
        assert [m.id for m in sdk.meters.list(archived=True).items] == [created[2].id]
        theirs = sdk.meters.retrieve(created[1].id)
        assert (theirs.name, theirs.aggregation.type, theirs.aggregation.key) == (
            "meter 1",
            "sum",
            "n",
        )


def test_the_sdk_reads_credit_balances(
    sdk: DodoPayments, ours: DodoClient, running: DevServer
) -> None:
    customer, name = unique("cus"), unique("llm")
    entitlement = sdk.credit_entitlements.create(
        name="Credits", unit="credits", precision=2, overage_enabled=True, rollover_enabled=False
    )
    meter = ours.meters.create(
        name="Tokens",
        event_name=name,
        measurement_unit="tokens",
        aggregation=MeterAggregation("sum", "tokens"),
    )
    running.link_meter_to_credits(meter.id, entitlement.id, 100)
    entry = sdk.credit_entitlements.balances.create_ledger_entry(
        customer, credit_entitlement_id=entitlement.id, amount="5", entry_type="credit"
    )
    assert (entry.balance_before, entry.balance_after) == ("0.00", "5.00")
    ours.events.ingest(events(3, customer_id=customer, event_name=name, metadata={"tokens": 50}))
    theirs = sdk.credit_entitlements.balances.retrieve(
        customer, credit_entitlement_id=entitlement.id
    )
    mine = ours.credits.balance(entitlement.id, customer)
    assert (Decimal(theirs.balance), Decimal(theirs.overage)) == (mine.balance, mine.overage)
    assert mine.balance == Decimal("3.50")


def test_the_sdk_sees_the_documented_errors(sdk: DodoPayments, running: DevServer) -> None:
    batch = events(2)
    batch[1]["event_id"] = batch[0]["event_id"]
    with pytest.raises(dodopayments.BadRequestError):
        sdk.usage_events.ingest(events=batch)
    with pytest.raises(dodopayments.UnprocessableEntityError):
        sdk.usage_events.ingest(events=[])
    with pytest.raises(dodopayments.NotFoundError):
        sdk.usage_events.retrieve("evt_missing")
    with (
        DodoPayments(bearer_token="sk_test_wrong", base_url=running.base_url, max_retries=0) as bad,
        pytest.raises(dodopayments.AuthenticationError),
    ):
        bad.usage_events.ingest(events=events(1))
