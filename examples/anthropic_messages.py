"""Token metering of the Anthropic SDK: messages, the streaming helper and async clients.

Billing model
    Customers pay for the tokens their requests use, input and output priced per model
    (here Claude Sonnet at $3 / $15 and Claude Haiku at $1 / $5 per million tokens).

How it is built
    - ``tracker.wrap(Anthropic(), customer_id=...)`` and ``tracker.wrap(AsyncAnthropic())``
      return the same clients; every ``messages.create`` and ``messages.stream`` tracks one
      ``llm.chat_completion`` event with ``inputTokens`` (cache reads and writes included),
      ``outputTokens``, ``model`` and ``costCents``.
    - The async client has no default customer: ``async with tracker.customer(...)`` names
      the customer of each request, as a multi-tenant server does.
    - Meters: ``Input tokens``, ``Output tokens``, ``Cost`` (sum of ``costCents``) and
      ``Requests`` (count).

Run it
    python examples/anthropic_messages.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and the Anthropic SDK is
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply). It prints ``usage`` lines with the totals the server computed.
"""

from __future__ import annotations

import asyncio

import httpx2
from _local import billing_api, create_llm_meters, print_usage
from anthropic import Anthropic, AsyncAnthropic

from dodo_ingest import DodoClient, Ingestion
from dodo_ingest.blueprints.llm import LLMTracker, Price
from dodo_ingest.testing import MockLLMTransport

PRICES = {
    "claude-sonnet-4-6": Price(input_per_million="3", output_per_million="15"),
    "claude-haiku-4-5": Price(input_per_million="1", output_per_million="5"),
}
SYSTEM_PROMPT = "You review pull requests for a Python web service. Point out bugs first."
REVIEW_REQUEST = "Review this change: the retry loop now sleeps 2 ** attempt seconds, no cap."
FOLLOW_UP = "Suggest a cap and explain why jitter matters when many workers retry together."
SUMMARY_REQUEST = "Summarise in one line: bump httpx2 to 2.16 and drop the Python 3.10 job."
REPLY = "Cap the delay at thirty seconds and add full jitter so retries spread out."
TENANTS = ["cus_initech", "cus_umbrella"]


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        meter_ids = create_llm_meters(client)

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion, prices=PRICES)
            transport = MockLLMTransport(reply=REPLY)
            # Offline: the real SDK answered locally. In production: Anthropic()
            # (ANTHROPIC_API_KEY from the environment).
            claude = tracker.wrap(
                Anthropic(api_key="sk-ant-offline", http_client=httpx2.Client(transport=transport)),
                customer_id="cus_hooli",
            )

            review = claude.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=1024,
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": REVIEW_REQUEST}],
            )
            print("claude:", review.content[0].text)  # type: ignore[union-attr]

            # The streaming helper: billed when the block ends, from the final usage.
            with claude.messages.stream(
                model="claude-sonnet-4-6",
                max_tokens=1024,
                system=SYSTEM_PROMPT,
                messages=[
                    {"role": "user", "content": REVIEW_REQUEST},
                    {"role": "assistant", "content": REPLY},
                    {"role": "user", "content": FOLLOW_UP},
                ],
            ) as stream:
                print("claude:", "".join(stream.text_stream))

            # An async client shared by all tenants: the customer is named per request.
            # In production: AsyncAnthropic().
            shared = tracker.wrap(
                AsyncAnthropic(
                    api_key="sk-ant-offline", http_client=httpx2.AsyncClient(transport=transport)
                )
            )

            async def summarise(tenant: str) -> None:
                async with tracker.customer(tenant):
                    await shared.messages.create(
                        model="claude-haiku-4-5",
                        max_tokens=256,
                        messages=[{"role": "user", "content": SUMMARY_REQUEST}],
                    )

            async def summarise_all() -> None:
                await asyncio.gather(*(summarise(tenant) for tenant in TENANTS))

            asyncio.run(summarise_all())

        print_usage(base_url, meter_ids)


if __name__ == "__main__":
    main()
