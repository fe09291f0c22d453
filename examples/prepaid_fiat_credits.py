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
      billed. The gateway runs under uvicorn on 127.0.0.1.
    - ``POST /webhooks/dodo`` is registered as a webhook endpoint for ``credit.balance_low``
      (``client.webhooks.create``); it verifies each delivery's signature with ``Webhook``
      and the endpoint's secret (``client.webhooks.secret``). The billing API sends the
      webhook itself when the balance falls below 10 % of the credits bought.
    - The script plays the customer (every question in turn; the last ones are refused),
      waits for the webhook deliveries, and replays one with a forged body (refused).

Run it
    python examples/prepaid_fiat_credits.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and the OpenAI SDK is
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply). It prints each request's outcome (``available`` on refusals), the
    ``webhook`` it received, then ``usage`` and ``balance`` lines with the totals the server
    computed.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx2
from _local import (
    LocalServer,
    billing_api,
    link_meter_to_credits,
    print_result,
    print_usage,
    wait_for_deliveries,
)
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
    WebhookEvent,
    WebhookPayloadError,
    WebhookVerificationError,
)
from dodo_ingest.testing import MockLLMTransport

CUSTOMER_ID = "cus_acme"
MODEL = "gpt-4o"
TOP_UP_USD = Decimal("0.0017")
INPUT_TOKENS_PER_USD = "400000"  # $2.50 per million input tokens
OUTPUT_TOKENS_PER_USD = "100000"  # $10.00 per million output tokens
MAX_OUTPUT_TOKENS = 40  # the most a reply may use (sent as max_tokens): the worst case held
CHARACTERS_PER_TOKEN = 4  # a rough estimate; a tokenizer (tiktoken) counts exactly
LOW_BALANCE_PERCENT = 10  # the dev server's threshold: 10 % of the credits granted
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
    tracker: LLMTracker,
    llm: AsyncOpenAI,
    ingestion: Ingestion,
    billing: tuple[str, str],
    entitlement_id: str,
) -> Starlette:
    """The customer-facing API: a credit gate around the model call, and the webhook endpoint.

    Set ``app.state.webhook`` (a ``Webhook`` with the endpoint's secret) before serving;
    ``app.state.received`` collects the verified deliveries as ``(event, body, headers)``.
    """
    base_url, api_key = billing

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The gate's async client lives on the server's event loop.
        async with AsyncDodoClient(api_key=api_key, base_url=base_url) as client:
            app.state.gate = CreditGate(client, credit_entitlement_id=entitlement_id)
            yield

    async def chat_completions(request: Request) -> JSONResponse:
        customer_id = request.headers["x-customer-id"]  # in production: from the API key
        body = await request.json()
        gate: CreditGate = request.app.state.gate
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
        webhook: Webhook = request.app.state.webhook
        body = await request.body()
        try:
            event = webhook.unwrap(body, request.headers)
        except WebhookVerificationError:
            return JSONResponse({"error": "invalid webhook signature"}, status_code=400)
        except WebhookPayloadError as error:  # signed, but not the shape its type promises
            return JSONResponse({"error": f"malformed webhook: {error}"}, status_code=400)
        # In production: on credit.balance_low, email the customer, show a banner, offer an
        # auto top-up; deduplicate on event.webhook_id (retries carry the same one).
        request.app.state.received.append((event, body, dict(request.headers)))
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/webhooks/dodo", dodo_webhook, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.received = []
    # Bills each request served (api.request) and answers the gate's refusals with 402.
    app.add_middleware(
        UsageMiddleware,
        ingestion=ingestion,
        customer_id=lambda request: request.headers.get("x-customer-id"),
        event_name="api.request",
        exclude=["/webhooks/dodo"],
    )
    return app


def play_customer(http: httpx2.Client, ingestion: Ingestion) -> None:
    """Send every question in turn; the last ones are refused with 402."""
    for number, question in enumerate(QUESTIONS, start=1):
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
        response = http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": messages},
            headers={"x-customer-id": CUSTOMER_ID},
        )
        if response.status_code == 402:
            error = response.json()["error"]
            print_result("request", number=number, status=402, available=error["available"])
        else:
            print_result("request", number=number, status=response.status_code)
        # The sender delivers within a second anyway; flushing here makes Dodo Payments
        # deduct each request on its own, so the low-balance webhook names the balance left
        # after the request that crossed the threshold. The gate does not need it: it
        # counts what it settled until the balance it reads shows it.
        ingestion.flush()


def report_webhooks(
    http: httpx2.Client, received: list[tuple[WebhookEvent, bytes, dict[str, str]]]
) -> None:
    """Print the verified webhooks, and replay the first with a forged body (refused)."""
    for event, _, _ in received:
        if isinstance(event, CreditBalanceLowEvent):
            print_result(
                "webhook",
                type=event.type,
                customer=event.data.customer_id,
                available_balance=event.data.available_balance,
                threshold_percent=event.data.threshold_percent,
            )
    if received:
        _, body, headers = received[0]
        forged = http.post(
            "/webhooks/dodo",
            content=body.replace(CUSTOMER_ID.encode(), b"cus_evil"),
            headers={k: v for k, v in headers.items() if k.startswith("webhook-")},
        )
        print_result("webhook_replay", forged=forged.status_code)


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
            app = create_gateway(tracker, llm, ingestion, (base_url, api_key), credits.id)
            gateway = LocalServer(app)
            # Register the webhook endpoint (in production: once, for the public URL) and
            # verify with its secret (in production: Webhook() reads DODO_PAYMENTS_WEBHOOK_KEY).
            endpoint = client.webhooks.create(
                f"{gateway.url}/webhooks/dodo",
                description="low-balance alerts",
                filter_types=["credit.balance_low"],
            )
            app.state.webhook = Webhook(client.webhooks.secret(endpoint.id))
            with gateway as url, httpx2.Client(base_url=url) as http:
                play_customer(http, ingestion)
                for delivery in wait_for_deliveries(base_url, endpoint.id):
                    print_result(
                        "webhook_delivery",
                        type=delivery["event_type"],
                        status=delivery["status"],
                        attempts=len(delivery["attempts"]),
                    )
                report_webhooks(http, app.state.received)
            client.webhooks.delete(endpoint.id)

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
