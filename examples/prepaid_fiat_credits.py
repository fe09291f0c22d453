"""Prepaid fiat credits with separate input and output token meters (OpenAI API style).

Billing model
    Customers buy credits in dollars up front. Every request draws on that balance at the
    model's per-token prices, input and output priced separately (here $2.50 per million input
    tokens and $10.00 per million output tokens). A request whose worst-case cost the balance
    cannot cover is refused with HTTP 402 Payment Required before the model is called, so the
    balance never goes negative; the customer tops up to continue. When the balance falls below a threshold,
    Dodo Payments sends a ``credit.balance_low`` webhook and the app warns the customer.

How it is built
    - ``LLMTracker(split_events=(...))`` turns every request of the wrapped OpenAI client into
      two events: ``llm.input_tokens`` (``inputTokens``) and ``llm.output_tokens``
      (``outputTokens``).
    - Two meters sum them; both draw on one USD credit entitlement (precision 6, fractions of
      a cent): 400,000 input tokens or 100,000 output tokens per dollar.
    - A Starlette gateway serves ``POST /v1/chat/completions``. A ``CreditGate`` on the USD
      entitlement reserves the request's worst case (the prompt's tokens, about 4 characters
      each, plus ``max_tokens`` of output) before the model is called, and settles the cost
      the model reported. A request that does not fit raises ``InsufficientCreditsError``,
      which ``UsageMiddleware`` answers with 402 and the error's JSON body (``available``
      says what is left). The middleware also bills every request served as an
      ``api.request`` event (a ``Requests`` meter counts them); refused requests are not
      billed. ``POST /webhooks/dodo`` verifies the webhook signature with ``Webhook`` and
      handles ``credit.balance_low``.
    - The script plays the customer (every question in turn; the last ones are refused) and
      plays Dodo Payments (a signed ``credit.balance_low`` delivery, built with
      ``Webhook.sign``).

Run it
    python examples/prepaid_fiat_credits.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and the OpenAI SDK is
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply). It prints each request's outcome (``available`` on refusals), then
    ``usage``, ``balance`` and ``webhook`` lines with the totals the server computed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
from _local import billing_api, link_meter_to_credits, print_result, print_usage
from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dodo_ingest import AsyncDodoClient, CreditGate, DodoClient, Ingestion, MeterAggregation
from dodo_ingest.blueprints.api_gateway import UsageMiddleware
from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.client.webhooks import (
    CreditBalanceLowEvent,
    Webhook,
    WebhookPayloadError,
    WebhookVerificationError,
)
from dodo_ingest.testing import MockLLMTransport

CUSTOMER_ID = "cus_acme"
MODEL = "gpt-4o"
TOP_UP_USD = Decimal("0.0015")
INPUT_TOKENS_PER_USD = "400000"  # $2.50 per million input tokens
OUTPUT_TOKENS_PER_USD = "100000"  # $10.00 per million output tokens
MAX_OUTPUT_TOKENS = 40  # the most a reply may use (sent as max_tokens): the worst case held
CHARACTERS_PER_TOKEN = 4  # a rough estimate; a tokenizer (tiktoken) counts exactly
LOW_BALANCE_PERCENT = 25
SYSTEM_PROMPT = "You are a support assistant for a bicycle shop. Answer in two sentences."
QUESTIONS = [
    "My rear derailleur skips gears when I pedal hard uphill. What should I check first?",
    "How often should I replace the chain on a commuter bike ridden every day in the rain?",
    "Which tyre pressure do you recommend for 32 mm gravel tyres and a 75 kg rider?",
    "Can I fit mudguards on a carbon road frame without eyelets?",
    "What is the difference between mechanical and hydraulic disc brakes?",
    "Do you sell tubeless repair kits, and how long does the sealant last?",
]
REPLY = (
    "Start by checking the cable tension and the hanger alignment, since a bent hanger is the "
    "most common cause. If both look fine, the chain or cassette is probably worn."
)
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"example endpoint secret").decode()


def usd(input_tokens: int, output_tokens: int) -> Decimal:
    """What a request costs at the per-token prices."""
    return input_tokens / Decimal(INPUT_TOKENS_PER_USD) + output_tokens / Decimal(
        OUTPUT_TOKENS_PER_USD
    )


def worst_case_usd(messages: list[dict[str, Any]]) -> Decimal:
    """The most a request can cost: its prompt's tokens and a reply of ``MAX_OUTPUT_TOKENS``."""
    characters = sum(len(message["content"]) for message in messages)
    return usd(math.ceil(characters / CHARACTERS_PER_TOKEN), MAX_OUTPUT_TOKENS)


def create_gateway(
    tracker: LLMTracker, llm: AsyncOpenAI, gate: CreditGate, ingestion: Ingestion
) -> Starlette:
    """The customer-facing API: a credit gate around the model call, and the webhook endpoint."""
    webhook = Webhook(WEBHOOK_SECRET)  # in production: Webhook() reads DODO_PAYMENTS_WEBHOOK_KEY

    async def chat_completions(request: Request) -> JSONResponse:
        customer_id = request.headers["x-customer-id"]  # in production: from the API key
        body = await request.json()
        # Raises InsufficientCreditsError when the worst case does not fit: the middleware
        # answers 402 and the model is never called.
        async with gate.areserve(customer_id, worst_case_usd(body["messages"])) as hold:
            async with tracker.customer(customer_id):
                completion = await llm.chat.completions.create(
                    model=body["model"], messages=body["messages"], max_tokens=MAX_OUTPUT_TOKENS
                )
            usage = completion.usage
            assert usage is not None
            hold.settle(usd(usage.prompt_tokens, usage.completion_tokens))
        return JSONResponse(completion.model_dump())

    async def dodo_webhook(request: Request) -> JSONResponse:
        try:
            event = webhook.unwrap(await request.body(), request.headers)
        except WebhookVerificationError:
            return JSONResponse({"error": "invalid webhook signature"}, status_code=400)
        except WebhookPayloadError as error:  # signed, but not the shape its type promises
            return JSONResponse({"error": f"malformed webhook: {error}"}, status_code=400)
        if isinstance(event, CreditBalanceLowEvent):
            # In production: email the customer, show a banner, offer auto top-up.
            print_result(
                "webhook",
                type=event.type,
                customer=event.data.customer_id,
                available_balance=event.data.available_balance,
                threshold_percent=event.data.threshold_percent,
            )
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/webhooks/dodo", dodo_webhook, methods=["POST"]),
        ]
    )
    # Bills each request served (api.request) and answers the gate's refusals with 402.
    app.add_middleware(
        UsageMiddleware,
        ingestion=ingestion,
        customer_id=lambda request: request.headers.get("x-customer-id"),
        event_name="api.request",
        exclude=["/webhooks/dodo"],
    )
    return app


def balance_low_payload(entitlement_id: str, available: Decimal) -> bytes:
    """A ``credit.balance_low`` webhook body as Dodo Payments sends it."""
    threshold = TOP_UP_USD * LOW_BALANCE_PERCENT / 100
    event = {
        "business_id": "bus_example",
        "type": "credit.balance_low",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "customer_id": CUSTOMER_ID,
            "credit_entitlement_id": entitlement_id,
            "credit_entitlement_name": "API credits",
            "brand_id": "brand_example",
            "subscription_id": "sub_example",
            "available_balance": str(available),
            "subscription_credits_amount": str(TOP_UP_USD),
            "threshold_amount": str(threshold),
            "threshold_percent": LOW_BALANCE_PERCENT,
        },
    }
    return json.dumps(event).encode()


async def play_customer(
    app: Starlette, ingestion: Ingestion, billing: AsyncDodoClient, entitlement_id: str
) -> None:
    """Send every question until the gateway refuses; deliver the low-balance webhook."""
    dodo = Webhook(WEBHOOK_SECRET)  # plays Dodo Payments' side: signs what it sends
    alerted = False
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as http:
        for number, question in enumerate(QUESTIONS, start=1):
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": question},
            ]
            response = await http.post(
                "/v1/chat/completions",
                json={"model": MODEL, "messages": messages},
                headers={"x-customer-id": CUSTOMER_ID},
            )
            if response.status_code == 402:
                error = response.json()["error"]
                print_result("request", number=number, status=402, available=error["available"])
            else:
                print_result("request", number=number, status=response.status_code)
            # The sender delivers within a second anyway; flushing here makes Dodo Payments'
            # balance below (which decides the webhook) show this request. The gate does not
            # need it: it counts what it settled until the balance it reads shows it.
            await ingestion.aflush()
            balance = (await billing.credits.balance(entitlement_id, CUSTOMER_ID)).balance
            if not alerted and balance < TOP_UP_USD * LOW_BALANCE_PERCENT / 100:
                alerted = True
                body = balance_low_payload(entitlement_id, balance)
                sent = await http.post("/webhooks/dodo", content=body, headers=dodo.sign(body))
                forged = await http.post(
                    "/webhooks/dodo",
                    content=body.replace(b"cus_acme", b"cus_evil"),
                    headers=dodo.sign(body),
                )
                print_result("webhook_delivery", signed=sent.status_code, forged=forged.status_code)


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        input_meter = client.meters.create(
            name="Input tokens",
            event_name="llm.input_tokens",
            measurement_unit="tokens",
            aggregation=MeterAggregation("sum", "inputTokens"),
        )
        output_meter = client.meters.create(
            name="Output tokens",
            event_name="llm.output_tokens",
            measurement_unit="tokens",
            aggregation=MeterAggregation("sum", "outputTokens"),
        )
        requests_meter = client.meters.create(
            name="Requests",
            event_name="api.request",
            measurement_unit="requests",
            aggregation=MeterAggregation("count"),
        )
        credits = client.credits.create_entitlement(
            name="API credits", unit="USD", currency="USD", precision=6
        )
        link_meter_to_credits(base_url, input_meter.id, credits.id, INPUT_TOKENS_PER_USD)
        link_meter_to_credits(base_url, output_meter.id, credits.id, OUTPUT_TOKENS_PER_USD)
        # The customer buys credits (in production: a one-time payment on Dodo Payments).
        client.credits.create_ledger_entry(
            credits.id, CUSTOMER_ID, amount=TOP_UP_USD, reason="prepaid top-up"
        )

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion, split_events=("llm.input_tokens", "llm.output_tokens"))
            # Offline: the real OpenAI SDK answered locally. In production: AsyncOpenAI()
            # (OPENAI_API_KEY from the environment).
            llm = tracker.wrap(
                AsyncOpenAI(
                    api_key="sk-offline",
                    http_client=httpx2.AsyncClient(transport=MockLLMTransport(reply=REPLY)),
                )
            )

            async def run() -> None:
                async with AsyncDodoClient(api_key=api_key, base_url=base_url) as billing:
                    gate = CreditGate(billing, credit_entitlement_id=credits.id)
                    app = create_gateway(tracker, llm, gate, ingestion)
                    await play_customer(app, ingestion, billing, credits.id)

            asyncio.run(run())

        print_usage(
            base_url,
            {
                "input-tokens": input_meter.id,
                "output-tokens": output_meter.id,
                "requests": requests_meter.id,
            },
        )
        balance = client.credits.balance(credits.id, CUSTOMER_ID)
        print_result(
            "balance",
            customer=CUSTOMER_ID,
            entitlement="usd",
            balance=balance.balance,
            overage=balance.overage,
        )


if __name__ == "__main__":
    main()
