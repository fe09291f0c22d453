"""``dodo-ingest usage``: what each meter aggregated, per customer or per subscription.

A dev server reports each meter's total per customer at ``GET /_dev/usage``. The Dodo
Payments API has no report per customer; its equivalent is per subscription and billing
period (``GET /subscriptions/{id}/usage-history``), which ``--subscription`` shows. Asked
for a per-customer report, the API gets one line saying so instead of a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ._api import json_option
from ._common import (
    Connection,
    api_errors,
    connection_options,
    console,
    echo_json,
    format_time,
    print_records,
)

if TYPE_CHECKING:
    from ..client import DodoClient, UsagePeriod

__all__ = ["usage"]

NO_REPORT = "the API reports usage per subscription only: pass --subscription ID"
"""What the command says against the API without ``--subscription`` (one line of at most
80 columns with ``Error: ``)."""
NO_SUBSCRIPTIONS = "a dev server has no subscriptions: leave out --subscription"


@click.command("usage")
@click.option("--customer", "customer_id", default=None, help="Only this customer's usage.")
@click.option("--meter", "meter_id", default=None, help="Only this meter.")
@click.option(
    "--subscription",
    "subscription_id",
    default=None,
    help="A subscription's usage per billing period (the API's usage history).",
)
@click.option(
    "--start", type=click.DateTime(), default=None, help="From this time on (UTC, inclusive)."
)
@click.option("--end", type=click.DateTime(), default=None, help="Up to this time (UTC).")
@json_option
@connection_options
def usage(
    customer_id: str | None,
    meter_id: str | None,
    subscription_id: str | None,
    start: datetime | None,
    end: datetime | None,
    as_json: bool,
    conn: Connection,
) -> None:
    """Show what each meter aggregated: per customer from a dev server, or per billing
    period of one --subscription from the API."""
    if subscription_id is not None and customer_id is not None:
        raise click.UsageError("give --customer or --subscription, not both")
    if subscription_id is not None:
        _subscription_usage(subscription_id, meter_id, start, end, as_json, conn)
        return
    params = {
        "customer_id": customer_id,
        "meter_id": meter_id,
        "start": _time_text(start),
        "end": _time_text(end),
    }
    with conn.client() as client, api_errors(conn, client):
        items = _report(client, {key: value for key, value in params.items() if value})
    if as_json:
        echo_json(items)
        return
    rows = [
        (
            str(item.get("meter_id", "")),
            str(item.get("meter_name", "")),
            str(item.get("customer_id", "")),
            str(item.get("value", "")),
            str(item.get("measurement_unit", "")),
            str(item.get("event_count", "")),
            _aggregation_text(item.get("aggregation")),
        )
        for item in items
    ]
    columns = ("meter_id", "meter", "customer", "value", "unit", "events", "aggregation")
    title = f"{len(rows)} usage total(s), one per meter and customer with events"
    print_records(console(), title, columns, rows)


def _subscription_usage(
    subscription_id: str,
    meter_id: str | None,
    start: datetime | None,
    end: datetime | None,
    as_json: bool,
    conn: Connection,
) -> None:
    """The subscription's usage history: one row per billing period and meter."""
    from ..client import NotFoundError

    with conn.client() as client, api_errors(conn, client):
        try:
            periods = list(
                client.subscriptions.usage_history(
                    subscription_id,
                    meter_id=meter_id,
                    start=_time_text(start),
                    end=_time_text(end),
                )
            )
        except NotFoundError:
            if client.environment is None and _is_dev_server(client):
                raise click.ClickException(NO_SUBSCRIPTIONS) from None
            raise
    if as_json:
        echo_json(periods)
        return
    columns = ("meter_id", "meter", "from", "to", "consumed", "chargeable", "price")
    title = f"usage of subscription {subscription_id}: {len(periods)} billing period(s)"
    print_records(console(), title, columns, _period_rows(periods))


def _period_rows(periods: Iterable[UsagePeriod]) -> list[tuple[str, ...]]:
    return [
        (
            meter.id,
            meter.name,
            format_time(period.start_date),
            format_time(period.end_date),
            "" if meter.consumed_units is None else str(meter.consumed_units),
            "" if meter.chargeable_units is None else str(meter.chargeable_units),
            f"{meter.total_price} {meter.currency or ''}".rstrip(),
        )
        for period in periods
        for meter in period.meters
    ]


def _report(client: DodoClient, params: dict[str, str]) -> list[dict[str, Any]]:
    """The dev server's usage items; a one-line error when the server is not a dev server."""
    from ..client import NotFoundError
    from ..client._requests import APIRequest

    if client.environment is not None:  # the API's own hosts
        raise click.ClickException(NO_REPORT)
    try:
        answer = client.send(APIRequest("GET", "/_dev/usage", params))
    except NotFoundError:
        if not _is_dev_server(client):
            raise click.ClickException(NO_REPORT) from None
        raise  # a dev server: the meter is unknown
    items = answer.get("items") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise click.ClickException(NO_REPORT)
    return [item for item in items if isinstance(item, dict)]


def _is_dev_server(client: DodoClient) -> bool:
    from ..client import DodoError
    from ..client._requests import APIRequest

    try:
        answer = client.with_options(max_retries=0).send(APIRequest("GET", "/_dev/health"))
    except DodoError:
        return False
    return isinstance(answer, dict) and answer.get("status") == "ok"


def _time_text(value: datetime | None) -> str | None:
    """A time from the command line (naive: UTC) as the API writes times."""
    return None if value is None else format_time(value.replace(tzinfo=value.tzinfo or UTC))


def _aggregation_text(aggregation: Any) -> str:
    if not isinstance(aggregation, dict):
        return ""
    key = aggregation.get("key")
    kind = str(aggregation.get("type", ""))
    return kind if key is None else f"{kind}({key})"
