"""What every example shares: a billing API to talk to, offline by default, and result printing.

``billing_api()`` yields ``(base_url, api_key)``. With ``DODO_PAYMENTS_BASE_URL`` set (for
instance to a ``dodo-ingest dev-server`` you started), it uses that server and
``DODO_PAYMENTS_API_KEY``; otherwise it starts an embedded dev server on a free port of
127.0.0.1 with an in-memory database, and stops it when the block ends. Either way the
examples need no network and no real key.

The examples read back what the server computed, and play out time, through dev-server
endpoints (the real API links meters to credits through products, grants subscription
credits each billing cycle, and has no usage report or clock to move):
``POST /_dev/credit-links`` (:func:`link_meter_to_credits`), ``GET /_dev/usage``
(:func:`meter_total`, :func:`print_usage`), ``POST /_dev/credit-cycles``
(:func:`grant_every_month`), ``POST /_dev/clock`` (:func:`advance_clock`) and
``GET /_dev/webhook-deliveries`` (:func:`wait_for_deliveries`).

:class:`LocalServer` serves an app of the example (a gateway, a webhook receiver) on
127.0.0.1, so that the dev server can deliver its signed webhooks to it.

Results are printed one per line as ``<kind> key=value ...`` so that scripts and the tests
can grep them, e.g. ``usage meter=input-tokens customer=cus_acme value=840 events=4``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx2
import uvicorn

from dodo_ingest import DodoClient, MeterAggregation

__all__ = [
    "LocalServer",
    "advance_clock",
    "billing_api",
    "create_llm_meters",
    "grant_every_month",
    "link_meter_to_credits",
    "meter_total",
    "print_result",
    "print_usage",
    "wait_for_deliveries",
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


def grant_every_month(
    base_url: str, credit_entitlement_id: str, customer_id: str, amount: int | str
) -> None:
    """Grant ``amount`` credits now and again every 30 days (dev server only).

    On Dodo Payments the customer's subscription grants them at each billing cycle; the dev
    server stands in with a cycle: at each reset the entitlement's rollover and overage
    settings apply, then the new month's credits are granted.
    """
    response = httpx2.post(
        f"{base_url}/_dev/credit-cycles",
        json={
            "credit_entitlement_id": credit_entitlement_id,
            "customer_id": customer_id,
            "amount": str(amount),
            "cycle_days": 30,
        },
    )
    response.raise_for_status()


def advance_clock(base_url: str, *, days: int) -> None:
    """Let ``days`` pass on the dev server's clock: what falls due happens before it returns
    (expiries, cycle resets with their rollovers, and the webhooks they send)."""
    response = httpx2.post(f"{base_url}/_dev/clock", json={"advance": {"days": days}})
    response.raise_for_status()


def wait_for_deliveries(
    base_url: str, webhook_id: str, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Wait until the dev server has no webhook delivery to ``webhook_id`` in flight; return
    them all, oldest first (``GET /_dev/webhook-deliveries``)."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx2.get(
            f"{base_url}/_dev/webhook-deliveries", params={"webhook_id": webhook_id}
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        if all(item["status"] != "pending" for item in items):
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"webhook deliveries still pending after {timeout:g} s")
        time.sleep(0.02)


class LocalServer:
    """Serve an ASGI app under uvicorn on 127.0.0.1 (a free port) in a background thread.

    ``url`` is known as soon as the object exists (the port is bound then), so a webhook
    endpoint can be registered before the app serves; ``with`` serves it, and leaving the
    block stops it gracefully (requests in flight finish).
    """

    def __init__(self, app: Any) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, args=([self._socket],))

    def __enter__(self) -> str:
        self._thread.start()
        while not self._server.started and self._thread.is_alive():
            self._thread.join(0.01)
        if not self._server.started:
            raise RuntimeError(f"the app did not start on {self.url}")
        return self.url

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._socket.close()
