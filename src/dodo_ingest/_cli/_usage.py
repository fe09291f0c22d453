"""``dodo-ingest usage``: what each meter aggregated per customer, from a dev server.

The dev server reports it at ``GET /_dev/usage``. The Dodo Payments API has no such report
(its nearest, ``GET /subscriptions/{id}/usage-history``, is per subscription and billing
period), so against the API the command says so in one line instead of guessing.
"""

from __future__ import annotations

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
    from ..client import DodoClient

__all__ = ["usage"]

NO_REPORT = "the Dodo Payments API has no usage report: use a dev server (--base-url)"
"""What the command says against the API (one line of 80 columns with ``Error: ``)."""


@click.command("usage")
@click.option("--customer", "customer_id", default=None, help="Only this customer's usage.")
@click.option("--meter", "meter_id", default=None, help="Only this meter.")
@click.option(
    "--start", type=click.DateTime(), default=None, help="Events at or after this time (UTC)."
)
@click.option("--end", type=click.DateTime(), default=None, help="Events up to this time (UTC).")
@json_option
@connection_options
def usage(
    customer_id: str | None,
    meter_id: str | None,
    start: datetime | None,
    end: datetime | None,
    as_json: bool,
    conn: Connection,
) -> None:
    """Show what each meter aggregated per customer (a dev server's usage report)."""
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
