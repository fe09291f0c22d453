"""What every example shares: a billing API to talk to, offline by default, and result printing.

``billing_api()`` yields ``(base_url, api_key)``. With ``DODO_PAYMENTS_BASE_URL`` set (for
instance to a ``dodo-ingest dev-server`` you started), it uses that server and
``DODO_PAYMENTS_API_KEY``; otherwise it starts an embedded dev server on a free port of
127.0.0.1 with an in-memory database, and stops it when the block ends. Either way the
examples need no network and no real key.

The examples read back what the server computed through two dev-server endpoints (the real
API links meters to credits through products and has no usage report):
``POST /_dev/credit-links`` (:func:`link_meter_to_credits`) and ``GET /_dev/usage``
(:func:`meter_total`, :func:`print_usage`).

Results are printed one per line as ``<kind> key=value ...`` so that scripts and the tests
can grep them, e.g. ``usage meter=input-tokens customer=cus_acme value=840 events=4``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal

import httpx2

from dodo_ingest import DodoClient, MeterAggregation

__all__ = [
    "billing_api",
    "create_llm_meters",
    "link_meter_to_credits",
    "meter_total",
    "print_result",
    "print_usage",
]

LOCAL_API_KEY = "sk_local_examples_0123456789"


@contextmanager
def billing_api() -> Iterator[tuple[str, str]]:
    """Yield ``(base_url, api_key)`` of the billing API the example should use (see above)."""
    base_url = os.environ.get("DODO_PAYMENTS_BASE_URL")
    if base_url:
        yield base_url.rstrip("/"), os.environ.get("DODO_PAYMENTS_API_KEY", LOCAL_API_KEY)
        return
    from dodo_ingest.devserver import DevServer

    with DevServer() as server:
        yield server.base_url, LOCAL_API_KEY


def create_llm_meters(
    client: DodoClient, event_name: str = "llm.chat_completion"
) -> dict[str, str]:
    """Create the usual meters over LLM events; return their ids by label.

    ``input-tokens`` and ``output-tokens`` sum the token keys, ``cost-cents`` sums the cost the
    tracker's price table adds, ``requests`` counts the events.
    """
    meters = {
        "input-tokens": ("Input tokens", "tokens", MeterAggregation("sum", "inputTokens")),
        "output-tokens": ("Output tokens", "tokens", MeterAggregation("sum", "outputTokens")),
        "cost-cents": ("Cost", "USD cents", MeterAggregation("sum", "costCents")),
        "requests": ("Requests", "requests", MeterAggregation("count")),
    }
    return {
        label: client.meters.create(
            name=name, event_name=event_name, measurement_unit=unit, aggregation=aggregation
        ).id
        for label, (name, unit, aggregation) in meters.items()
    }


def link_meter_to_credits(
    base_url: str, meter_id: str, credit_entitlement_id: str, meter_units_per_credit: str
) -> None:
    """Let a meter's usage draw on a credit entitlement (dev server only).

    On Dodo Payments the link is made by attaching the meter and the entitlement to the
    customer's product in the dashboard.
    """
    response = httpx2.post(
        f"{base_url}/_dev/credit-links",
        json={
            "meter_id": meter_id,
            "credit_entitlement_id": credit_entitlement_id,
            "meter_units_per_credit": meter_units_per_credit,
        },
    )
    response.raise_for_status()


def _usage_items(base_url: str, meter_id: str, customer_id: str | None) -> list[dict[str, object]]:
    params = {"meter_id": meter_id}
    if customer_id is not None:
        params["customer_id"] = customer_id
    response = httpx2.get(f"{base_url}/_dev/usage", params=params)
    response.raise_for_status()
    items: list[dict[str, object]] = response.json()["items"]
    return items


def meter_total(base_url: str, meter_id: str, customer_id: str) -> Decimal:
    """The server's aggregated value of one meter for one customer (0 without events)."""
    for item in _usage_items(base_url, meter_id, customer_id):
        return Decimal(str(item["value"]))
    return Decimal(0)


def print_result(kind: str, /, **fields: object) -> None:
    """Print one greppable result line: ``kind key=value key=value ...``."""
    print(kind, " ".join(f"{key}={value}" for key, value in fields.items()))


def print_usage(base_url: str, meters: Mapping[str, str]) -> None:
    """Print each meter's total per customer as the server computed it.

    ``meters`` maps a short label (printed as ``meter=``) to a meter id. One line per meter
    and customer with events: ``usage meter=<label> customer=<id> value=<v> events=<n>``.
    """
    for label, meter_id in meters.items():
        for item in _usage_items(base_url, meter_id, None):
            print_result(
                "usage",
                meter=label,
                customer=item["customer_id"],
                value=item["value"],
                events=item["event_count"],
            )
