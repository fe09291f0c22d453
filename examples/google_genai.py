"""Token metering of the Google GenAI SDK (Gemini): generate, stream and chat.

Billing model
    Customers pay for the tokens their requests use, input and output priced per model
    (here Gemini 2.5 Flash at $0.30 / $2.50 and Gemini 2.5 Pro at $1.25 / $10 per million
    tokens). Gemini's output includes its thinking tokens.

How it is built
    - ``tracker.wrap(genai.Client(), customer_id=...)`` returns the same client; every request
      of ``models.generate_content``, ``generate_content_stream`` and ``chats`` tracks one
      ``llm.chat_completion`` event with ``inputTokens``, ``outputTokens`` (candidates plus
      thoughts), ``model`` and ``costCents``. A chat resends its history, so each turn costs
      more input than the last.
    - Meters: ``Input tokens``, ``Output tokens``, ``Cost`` (sum of ``costCents``) and
      ``Requests`` (count).

Run it
    python examples/google_genai.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and the genai SDK is
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply). It prints ``usage`` lines with the totals the server computed.
"""

from __future__ import annotations

from _local import billing_api, create_llm_meters, print_usage
from google import genai

from dodo_ingest import DodoClient, Ingestion
from dodo_ingest.blueprints.llm import LLMTracker, Price
from dodo_ingest.testing import MockLLMTransport

PRICES = {
    "gemini-2.5-flash": Price(input_per_million="0.30", output_per_million="2.50"),
    "gemini-2.5-pro": Price(input_per_million="1.25", output_per_million="10"),
}
PRODUCT_PROMPT = "Write a product description for a waterproof hiking backpack of 28 litres."
STREAM_PROMPT = "List three packing tips for a two-day hike in the Scottish Highlands."
CHAT_TURNS = [
    "I am planning a trip to Kyoto in April. Which neighbourhood should I stay in?",
    "And which day trip would you recommend from there?",
]
REPLY = "Stay near Gion for the old streets and take a day trip to Nara to see the temples."


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        meter_ids = create_llm_meters(client)

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion, prices=PRICES)
            # Offline: the real SDK answered locally. In production: genai.Client()
            # (GEMINI_API_KEY from the environment).
            gemini = tracker.wrap(
                genai.Client(
                    api_key="offline-key",
                    http_options={"client_args": {"transport": MockLLMTransport(reply=REPLY)}},
                ),
                customer_id="cus_outdoor_co",
            )

            product = gemini.models.generate_content(
                model="gemini-2.5-pro", contents=PRODUCT_PROMPT
            )
            print("gemini:", product.text)

            chunks = gemini.models.generate_content_stream(
                model="gemini-2.5-flash", contents=STREAM_PROMPT
            )
            print("gemini:", "".join(chunk.text or "" for chunk in chunks))

            with tracker.customer("cus_travel_desk"):
                chat = gemini.chats.create(model="gemini-2.5-flash")
                for turn in CHAT_TURNS:
                    print("gemini:", chat.send_message(turn).text)

        print_usage(base_url, meter_ids)


if __name__ == "__main__":
    main()
