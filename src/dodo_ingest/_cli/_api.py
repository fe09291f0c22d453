"""``dodo-ingest events|meters|balance``: thin commands over :class:`~dodo_ingest.DodoClient`.

Tables (rich) by default; ``--json`` prints the API objects as JSON for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    Connection,
    api_errors,
    connection_options,
    console,
    echo_json,
    format_time,
    jsonable,
    print_records,
)

if TYPE_CHECKING:
    from ..client import CreditGrant, Event, Meter

__all__ = ["balance", "events", "json_option", "meters"]

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
limit_option = click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Most items to show (0: all).",
)


def _metadata_text(metadata: dict[str, Any] | None) -> str:
    if not metadata:
        return ""
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in metadata.items())


@click.group()
def events() -> None:
    """List and look up ingested usage events."""


@events.command("list")
@click.option("--customer", "customer_id", default=None, help="Only this customer's events.")
@click.option("--event-name", default=None, help="Only events with this name.")
@click.option("--meter", "meter_id", default=None, help="Only events this meter counts.")
@click.option(
    "--start", type=click.DateTime(), default=None, help="Events at or after this time (UTC)."
)
@click.option("--end", type=click.DateTime(), default=None, help="Events before this time (UTC).")
@limit_option
@json_option
@connection_options
def list_events(
    customer_id: str | None,
    event_name: str | None,
    meter_id: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    as_json: bool,
    conn: Connection,
) -> None:
    """List events (at most --limit), filtered by customer, name, meter or time."""
    with conn.client() as client, api_errors(conn, client):
        items = list(
            client.events.list(
                customer_id=customer_id,
                event_name=event_name,
                meter_id=meter_id,
                start=_utc(start),
                end=_utc(end),
                limit=limit or None,
            )
        )
    if as_json:
        echo_json(items)
        return
    _events_table(items, f"{len(items)} event(s)")


@events.command("get")
@click.argument("event_id")
@json_option
@connection_options
def get_event(event_id: str, as_json: bool, conn: Connection) -> None:
    """Show one event by its id."""
    with conn.client() as client, api_errors(conn, client):
        event = client.events.retrieve(event_id)
    if as_json:
        echo_json(event)
        return
    _events_table([event], f"event {event_id}")


def _utc(value: datetime | None) -> datetime | None:
    """A time from the command line (naive: UTC) as an aware datetime."""
    return None if value is None else value.replace(tzinfo=value.tzinfo or UTC)


def _events_table(items: Iterable[Event], title: str) -> None:
    rows = [
        (
            event.event_id,
            event.customer_id,
            event.event_name,
            format_time(event.timestamp),
            _metadata_text(event.metadata),
        )
        for event in items
    ]
    columns = ("event_id", "customer_id", "event_name", "timestamp", "metadata")
    print_records(console(), title, columns, rows)


@click.group()
def meters() -> None:
    """List and create meters."""


@meters.command("list")
@click.option("--archived", is_flag=True, help="Archived meters instead of active ones.")
@limit_option
@json_option
@connection_options
def list_meters(archived: bool, limit: int, as_json: bool, conn: Connection) -> None:
    """List meters."""
    with conn.client() as client, api_errors(conn, client):
        items = list(client.meters.list(archived=archived or None, limit=limit or None))
    if as_json:
        echo_json(items)
        return
    _meters_table(items, f"{len(items)} meter(s)")


def _parse_value(text: str) -> str | int | float | bool:
    """A filter value: a JSON number or boolean when it reads as one, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


@meters.command("create")
@click.option("--name", required=True, help="Meter name.")
@click.option("--event-name", required=True, help="Events this meter counts.")
@click.option("--unit", "measurement_unit", required=True, help="Measurement unit, e.g. tokens.")
@click.option(
    "--aggregation",
    type=click.Choice(["count", "sum", "max", "last"]),
    default="count",
    show_default=True,
    help="How events are aggregated.",
)
@click.option("--key", default=None, help="Metadata key aggregated (sum, max and last need one).")
@click.option(
    "--where",
    "conditions",
    nargs=3,
    multiple=True,
    metavar="KEY OPERATOR VALUE",
    help="Count only events whose metadata matches, e.g. --where model equals gpt-4o "
    "(operators: equals, not_equals, greater_than, greater_than_or_equals, less_than, "
    "less_than_or_equals, contains, does_not_contain). Repeatable.",
)
@click.option(
    "--match",
    type=click.Choice(["all", "any"]),
    default="all",
    show_default=True,
    help="With several --where: all must match, or any.",
)
@click.option("--description", default=None, help="Description.")
@json_option
@connection_options
def create_meter(
    name: str,
    event_name: str,
    measurement_unit: str,
    aggregation: str,
    key: str | None,
    conditions: tuple[tuple[str, str, str], ...],
    match: str,
    description: str | None,
    as_json: bool,
    conn: Connection,
) -> None:
    """Create a meter over the events named --event-name."""
    from ..client import FilterCondition, MeterAggregation, MeterFilter

    try:
        agg = MeterAggregation(aggregation, key)  # type: ignore[arg-type]
        meter_filter = (
            MeterFilter(
                "and" if match == "all" else "or",
                tuple(
                    FilterCondition(k, op, _parse_value(v))  # type: ignore[arg-type]
                    for k, op, v in conditions
                ),
            )
            if conditions
            else None
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    with conn.client() as client, api_errors(conn, client):
        meter = client.meters.create(
            name=name,
            event_name=event_name,
            measurement_unit=measurement_unit,
            aggregation=agg,
            filter=meter_filter,
            description=description,
        )
    if as_json:
        echo_json(meter)
        return
    _meters_table([meter], f"created meter {meter.id}")


def _filter_text(meter: Meter) -> str:
    if meter.filter is None:
        return ""
    return json.dumps(meter.filter.to_dict()["clauses"]) + f" ({meter.filter.conjunction})"


def _meters_table(items: Iterable[Meter], title: str) -> None:
    rows = [
        (
            meter.id,
            meter.name,
            meter.event_name,
            _aggregation_text(meter),
            meter.measurement_unit,
            _filter_text(meter),
            format_time(meter.created_at),
        )
        for meter in items
    ]
    columns = ("id", "name", "event_name", "aggregation", "unit", "filter", "created_at")
    print_records(console(), title, columns, rows)


def _aggregation_text(meter: Meter) -> str:
    agg = meter.aggregation
    return agg.type if agg.key is None else f"{agg.type}({agg.key})"


@click.command("balance")
@click.argument("entitlement")
@click.argument("customer")
@json_option
@connection_options
def balance(entitlement: str, customer: str, as_json: bool, conn: Connection) -> None:
    """Show CUSTOMER's balance of the credit entitlement ENTITLEMENT, and its grants
    (oldest first: what each gave, what is left, when it expires)."""
    with conn.client() as client, api_errors(conn, client):
        result = client.credits.balance(entitlement, customer)
        grants = list(client.credits.grants(entitlement, customer))
    if as_json:
        echo_json(
            {
                **jsonable(result),
                "grants": [{**jsonable(grant), "status": grant.status} for grant in grants],
            }
        )
        return
    last = result.last_transaction_at
    row = (
        result.credit_entitlement_id,
        result.customer_id,
        str(result.balance),
        str(result.overage),
        format_time(last) if last else "",
    )
    columns = ("entitlement", "customer", "balance", "overage", "last transaction")
    out = console()
    print_records(out, f"credit balance of {customer}", columns, [row])
    out.print()
    print_records(out, f"{len(grants)} grant(s), oldest first", _GRANT_COLUMNS, _grant_rows(grants))


_GRANT_COLUMNS = ("grant", "granted", "left", "status", "expires", "source")


def _grant_rows(grants: Iterable[CreditGrant]) -> list[tuple[str, ...]]:
    return [
        (
            grant.id,
            str(grant.initial_amount),
            str(grant.remaining_amount),
            grant.status,
            format_time(grant.expires_at) if grant.expires_at else "never",
            grant.source_type,
        )
        for grant in grants
    ]
