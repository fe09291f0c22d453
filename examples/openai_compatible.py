"""Token metering of OpenAI-compatible providers (Groq, OpenRouter) through the OpenAI SDK.

Billing model
    A product that resells several inference providers bills its customers per token and
    needs to know which provider served each request (each has its own price and margin).

How it is built
    - The OpenAI SDK reaches any OpenAI-compatible server with ``base_url``. Wrapped by
      ``LLMTracker``, each request tracks one ``llm.chat_completion`` event whose
      ``provider`` is recognised from the host: ``groq`` for api.groq.com, ``openrouter`` for
      openrouter.ai (``openai_compatible`` for hosts it does not know).
    - Meters: ``Groq tokens`` and ``OpenRouter tokens`` sum ``totalTokens`` of the events
      whose ``provider`` matches (meter filters); ``Requests`` counts all of them.

Run it
    python examples/openai_compatible.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``), and both providers are
    answered by ``MockLLMTransport`` (one prompt token per 4 characters, one output token per
    word of the reply), so the real base URLs are never contacted. It prints ``usage`` lines
    with the totals the server computed.
"""

from __future__ import annotations

import httpx2
from _local import billing_api, print_usage
from openai import OpenAI

from dodo_ingest import DodoClient, FilterCondition, Ingestion, MeterAggregation, MeterFilter
from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.testing import MockLLMTransport

CUSTOMER_ID = "cus_quizlab"
PROVIDERS = {
    # provider: (base URL, model)
    "groq": ("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile"),
    "openrouter": ("https://openrouter.ai/api/v1", "mistralai/mistral-small-3.2-24b-instruct"),
}
QUESTIONS = [
    "Write a multiple-choice question about the water cycle for ten-year-olds.",
    "Give one hint for a question about the boiling point of water at sea level.",
]
REPLY = "Which process turns water vapour into clouds? A) evaporation B) condensation C) melting"


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        meter_ids = {
            f"{provider}-tokens": client.meters.create(
                name=f"{provider} tokens",
                event_name="llm.chat_completion",
                measurement_unit="tokens",
                aggregation=MeterAggregation("sum", "totalTokens"),
                filter=MeterFilter("and", (FilterCondition("provider", "equals", provider),)),
            ).id
            for provider in PROVIDERS
        }
        meter_ids["requests"] = client.meters.create(
            name="Requests",
            event_name="llm.chat_completion",
            measurement_unit="requests",
            aggregation=MeterAggregation("count"),
        ).id

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion)
            transport = MockLLMTransport(reply=REPLY)
            for provider, (provider_url, model) in PROVIDERS.items():
                # Offline: the requests to provider_url are answered locally. In production:
                # OpenAI(base_url=provider_url, api_key=os.environ["GROQ_API_KEY"]) (or the
                # OpenRouter key), without http_client.
                llm = tracker.wrap(
                    OpenAI(
                        base_url=provider_url,
                        api_key="offline-key",
                        http_client=httpx2.Client(transport=transport),
                    ),
                    customer_id=CUSTOMER_ID,
                    metadata={"feature": "quiz-generator"},
                )
                question, hint = QUESTIONS
                answer = llm.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": question}]
                )
                print(f"{provider}:", answer.choices[0].message.content)
                stream = llm.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": hint}], stream=True
                )
                print(f"{provider}:", "".join(c.choices[0].delta.content or "" for c in stream))

        print_usage(base_url, meter_ids)


if __name__ == "__main__":
    main()
