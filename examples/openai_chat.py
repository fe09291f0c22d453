"""Token metering of the OpenAI SDK: chat, streaming, the Responses API and embeddings.

Billing model
    Customers pay for the tokens their requests use, input and output priced per model.
    ``LLMTracker`` records the exact counts OpenAI reports (streams included) and, with a
    price table, the cost of each request in cents.

How it is built
    - ``tracker.wrap(OpenAI(), customer_id=...)`` returns the same client; every billable call
      then tracks one ``llm.chat_completion`` event with ``inputTokens``, ``outputTokens``,
      ``totalTokens``, ``model``, ``operation`` and ``costCents`` (from ``prices``).
    - ``with tracker.customer(...)`` bills the calls inside the block to another customer
      (one shared client in a multi-tenant server).
    - Meters: ``Input tokens``, ``Output tokens``, ``Cost`` (sum of ``costCents``) and
      ``Requests`` (count).

Run it
    python examples/openai_chat.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and the OpenAI SDK is
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply). It prints ``usage`` lines with the totals the server computed.
"""

from __future__ import annotations

import httpx2
from _local import billing_api, create_llm_meters, print_usage
from openai import OpenAI

from dodo_ingest import DodoClient, Ingestion
from dodo_ingest.blueprints.llm import LLMTracker, Price
from dodo_ingest.testing import MockLLMTransport

PRICES = {
    "gpt-4o-mini": Price(input_per_million="0.15", output_per_million="0.60"),
    "gpt-4o": Price(input_per_million="2.50", output_per_million="10.00"),
    "text-embedding-3-small": Price(input_per_million="0.02", output_per_million="0"),
}
SYSTEM_PROMPT = "You are the help desk of a travel agency. Be brief and friendly."
CHAT_QUESTION = "Can I change the date of my flight to Lisbon without paying a fee?"
STREAM_QUESTION = "Write a three-line summary of our cancellation policy for the newsletter."
RESPONSES_INPUT = "Classify this ticket as billing, booking or other: 'I was charged twice.'"
DOCUMENTS = [
    "Flights booked with a flexible fare can be changed up to 24 hours before departure.",
    "Refunds go back to the original payment method within ten working days.",
    "Hotel bookings can be cancelled free of charge until 48 hours before arrival.",
]
REPLY = "Yes, flexible fares can be changed for free until a day before departure."


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        meter_ids = create_llm_meters(client)

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion, prices=PRICES)
            # Offline: the real SDK answered locally. In production: OpenAI() (OPENAI_API_KEY).
            openai = tracker.wrap(
                OpenAI(
                    api_key="sk-offline",
                    http_client=httpx2.Client(transport=MockLLMTransport(reply=REPLY)),
                ),
                customer_id="cus_acme",
                metadata={"feature": "help-desk"},
            )

            answer = openai.chat.completions.create(
                model="gpt-4o-mini",
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": CHAT_QUESTION},
                ],
            )
            print("assistant:", answer.choices[0].message.content)

            # Streams are billed when they end; the tracker asks for the usage chunk itself.
            stream = openai.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": STREAM_QUESTION}],
                stream=True,
            )
            print("assistant:", "".join(chunk.choices[0].delta.content or "" for chunk in stream))

            with tracker.customer("cus_globex", metadata={"feature": "triage"}):
                openai.responses.create(model="gpt-4o-mini", input=RESPONSES_INPUT)
                openai.embeddings.create(model="text-embedding-3-small", input=DOCUMENTS)

        print_usage(base_url, meter_ids)


if __name__ == "__main__":
    main()
