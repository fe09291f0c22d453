"""Model-weighted request credits (Cursor style).

Billing model
    The subscription includes a monthly allowance of premium requests. A request does not cost
    tokens but request credits, and the price depends on the model: a small model is free, a
    standard frontier model costs 1 credit, a large reasoning model costs more. When the
    allowance cannot pay for the model asked for, the request is not refused: it falls back to
    the free model (Cursor's "slow pool"), so the user keeps working.

How it is built
    - One ``LLMTracker`` with ``request_weights`` wraps both an OpenAI and an Anthropic client;
      every request becomes one ``llm.request`` event carrying ``requestCredits`` (the model's
      weight), ``model`` and the token counts.
    - Meters: ``Premium requests`` sums ``requestCredits``; ``Requests`` counts every request;
      ``Tokens`` sums ``totalTokens`` (what the requests cost you at the providers).
    - A ``Premium requests`` credit entitlement holds the monthly allowance (a ledger credit);
      the premium meter draws on it, one credit per request credit. Before each request the
      editor backend reads the balance to pick the model.

Run it
    python examples/model_weighted_credits.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); the OpenAI and Anthropic
    SDKs are answered by ``MockLLMTransport``. It prints one ``request`` line per request
    (model asked for, model used, credits), then ``usage`` and ``balance`` lines.
"""

from __future__ import annotations

import httpx2
from _local import billing_api, link_meter_to_credits, print_result, print_usage
from anthropic import Anthropic
from openai import OpenAI

from dodo_ingest import DodoClient, Ingestion, MeterAggregation
from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.testing import MockLLMTransport

CUSTOMER_ID = "cus_dev_maria"
MONTHLY_PREMIUM_REQUESTS = 12
FREE_MODEL = "gpt-4o-mini"
REQUEST_WEIGHTS = {
    FREE_MODEL: 0,
    "gpt-4.1": 1,
    "claude-sonnet-4-6": 1,
    "o3": 3,
    "claude-opus-4-7": 5,
    "*": 1,
}
# One editing session: (model the user picked, prompt sent with the code context).
SESSION = [
    ("claude-sonnet-4-6", "Explain what the retry decorator in http_client.py does."),
    ("gpt-4.1", "Write a unit test for parse_invoice() covering an empty line items list."),
    ("claude-opus-4-7", "Refactor the billing module into separate pricing and invoicing layers."),
    (FREE_MODEL, "Rename the variable tmp to pending_invoices in this function."),
    ("o3", "Find the race condition in the worker pool shutdown sequence."),
    ("claude-opus-4-7", "Plan a migration from SQLAlchemy 1.4 to 2.0 for the whole repository."),
    ("claude-sonnet-4-6", "Add type hints to the public functions of the exporter module."),
    ("gpt-4.1", "Why does this regular expression not match dates like 2026-11-05?"),
]
REPLY = "Here is the change with a short explanation of each step."


def weight_of(model: str) -> int:
    """The request credits one request to ``model`` costs (the tracker applies the same table)."""
    return REQUEST_WEIGHTS.get(model, REQUEST_WEIGHTS["*"])


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        premium = client.meters.create(
            name="Premium requests",
            event_name="llm.request",
            measurement_unit="requests",
            aggregation=MeterAggregation("sum", "requestCredits"),
        )
        requests = client.meters.create(
            name="Requests",
            event_name="llm.request",
            measurement_unit="requests",
            aggregation=MeterAggregation("count"),
        )
        tokens = client.meters.create(
            name="Tokens",
            event_name="llm.request",
            measurement_unit="tokens",
            aggregation=MeterAggregation("sum", "totalTokens"),
        )
        allowance = client.credits.create_entitlement(
            name="Premium requests", unit="requests", precision=0
        )
        link_meter_to_credits(base_url, premium.id, allowance.id, "1")
        # The monthly grant (in production: included in the subscription product).
        client.credits.create_ledger_entry(
            allowance.id,
            CUSTOMER_ID,
            amount=MONTHLY_PREMIUM_REQUESTS,
            reason="Pro plan, monthly premium requests",
            idempotency_key=f"{CUSTOMER_ID}-2026-11",
        )

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(
                ingestion, event_name="llm.request", request_weights=REQUEST_WEIGHTS
            )
            # Offline: the real SDKs answered locally. In production: OpenAI(), Anthropic().
            transport = MockLLMTransport(reply=REPLY)
            openai = tracker.wrap(
                OpenAI(api_key="sk-offline", http_client=httpx2.Client(transport=transport)),
                customer_id=CUSTOMER_ID,
            )
            anthropic = tracker.wrap(
                Anthropic(api_key="sk-ant-offline", http_client=httpx2.Client(transport=transport)),
                customer_id=CUSTOMER_ID,
            )

            for number, (asked, prompt) in enumerate(SESSION, start=1):
                left = client.credits.balance(allowance.id, CUSTOMER_ID).balance
                model = asked if weight_of(asked) <= left else FREE_MODEL
                if model.startswith("claude"):
                    anthropic.messages.create(
                        model=model,
                        max_tokens=1024,
                        messages=[{"role": "user", "content": prompt}],
                    )
                else:
                    openai.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": prompt}]
                    )
                print_result(
                    "request", number=number, asked=asked, used=model, credits=weight_of(model)
                )
                # Deliver now, so that the next balance check sees this request.
                ingestion.flush()

        print_usage(
            base_url,
            {"premium-requests": premium.id, "requests": requests.id, "tokens": tokens.id},
        )
        balance = client.credits.balance(allowance.id, CUSTOMER_ID)
        print_result(
            "balance",
            customer=CUSTOMER_ID,
            entitlement="premium-requests",
            balance=balance.balance,
            overage=balance.overage,
        )


if __name__ == "__main__":
    main()
