"""LLMTracker: event ids, customer scopes, manual tracking, billing-model hooks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal

import anthropic
import openai
import pytest
import respx
from google import genai

from dodo_ingest import EventValidationError
from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage, Price, create_llm_tracker
from dodo_ingest.blueprints.llm._billing import ModelTable, cost_cents

from . import payloads
from .conftest import RecordingSink

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(tracker: LLMTracker) -> openai.OpenAI:
    return tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_default")


# ------------------------------------------------------------------------------ ids


def test_event_id_derives_from_response_id_and_event_name(
    sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    first = LLMTracker(sink, event_name="llm.a")
    second = LLMTracker(sink, event_name="llm.a")
    other = LLMTracker(sink, event_name="llm.b")
    for tracker in (first, second, other):
        wrapped = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
        wrapped.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    a, b, c = (event.event_id for event in sink.events)
    assert a == b
    assert a != c


def test_manual_track_of_a_tracked_response_reuses_its_id(
    client: openai.OpenAI, tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    completion = client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    ids = tracker.track(completion, customer_id="cus_default")
    assert len(sink.events) == 2
    assert sink.events[0].event_id == sink.events[1].event_id == ids[0]
    assert sink.events[0].metadata == sink.events[1].metadata


@pytest.mark.parametrize(
    ("make", "provider"),
    [
        (lambda: openai.OpenAI(api_key="k", base_url="https://openrouter.ai/api/v1"), "openrouter"),
        (lambda: openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1"), "openai_compatible"),
        (
            lambda: openai.AzureOpenAI(
                api_key="k", api_version="2024-10-21", azure_endpoint="https://r.openai.azure.com"
            ),
            "azure_openai",
        ),
    ],
)
def test_manual_track_gives_the_wrapped_clients_id_for_every_openai_host(
    make: Callable[[], openai.OpenAI], provider: str, tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(make(), customer_id="cus_1")
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions").respond(200, json=payloads.chat_completion())
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert tracker.track(completion, customer_id="cus_1") == [sink.events[0].event_id]
    assert sink.events[0].metadata["provider"] == provider


def test_reused_short_response_ids_are_told_apart_by_their_creation_time(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0),
        customer_id="cus_1",
    )
    bodies = iter(
        [payloads.chat_completion(id="chatcmpl-7", created=created) for created in (100, 101)]
    )
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions").mock(
            side_effect=lambda request: payloads.json_response(next(bodies))
        )
        first = client.chat.completions.create(model="llama3", messages=MESSAGES)  # type: ignore[arg-type]
        client.chat.completions.create(model="llama3", messages=MESSAGES)  # type: ignore[arg-type]
    one, two = sink.events
    assert one.event_id != two.event_id
    assert tracker.track(first, customer_id="cus_1") == [one.event_id]


def test_manual_track_of_each_provider(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    plain_claude = anthropic.Anthropic(api_key="k", max_retries=0)
    message = plain_claude.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    gemini = genai.Client(api_key="k")
    content = gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    plain = openai.OpenAI(api_key="k", max_retries=0)
    response = plain.responses.create(model="m", input="hi")
    with tracker.customer("cus_ctx", metadata={"team": "t"}):
        tracker.track(message)
        tracker.track(content, metadata={"extra": 1})
        tracker.track(response, provider="openrouter")
    assert [e.customer_id for e in sink.events] == ["cus_ctx"] * 3
    assert sink.metadata() == [
        {**payloads.ANTHROPIC_METADATA, "team": "t"},
        {**payloads.GEMINI_METADATA, "team": "t", "extra": 1},
        {**payloads.RESPONSES_METADATA, "provider": "openrouter", "team": "t"},
    ]


def test_manual_track_refuses_bad_input(tracker: LLMTracker) -> None:
    with pytest.raises(TypeError, match="no usage"):
        tracker.track(object(), customer_id="c")
    with pytest.raises(EventValidationError, match="customer_id"):
        tracker.track(object())


# ------------------------------------------------------------------------ customers


def test_customer_scope_overrides_and_merges(
    client: openai.OpenAI, tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    shared = tracker.wrap(
        openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_w", metadata={"a": 1, "b": 1}
    )
    with tracker.customer("cus_ctx", metadata={"b": 2}):
        shared.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        with tracker.customer("cus_inner"):
            shared.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        stream = shared.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    list(stream)  # consumed outside the block: billed to the customer of its creation
    shared.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    got = [(e.customer_id, e.metadata["a"], e.metadata["b"]) for e in sink.events]
    assert got == [("cus_ctx", 1, 2), ("cus_inner", 1, 1), ("cus_ctx", 1, 2), ("cus_w", 1, 1)]


@pytest.mark.anyio
async def test_customer_scope_is_task_local(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    shared = tracker.wrap(anthropic.AsyncAnthropic(api_key="k", max_retries=0))

    async def call(customer: str) -> None:
        async with tracker.customer(customer, metadata={"who": customer}):
            await asyncio.sleep(0)
            await shared.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
            await asyncio.sleep(0)
            await shared.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]

    await asyncio.gather(*(call(f"cus_{i}") for i in range(8)))
    assert len(sink.events) == 16
    assert all(e.metadata["who"] == e.customer_id for e in sink.events)
    assert sorted({e.customer_id for e in sink.events}) == sorted(f"cus_{i}" for i in range(8))


@pytest.mark.anyio
async def test_one_customer_scope_object_reused_by_concurrent_tasks(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    shared = tracker.wrap(anthropic.AsyncAnthropic(api_key="k", max_retries=0))
    internal = tracker.customer("cus_internal")

    async def handler(delay: float) -> None:
        async with tracker.customer("cus_outer"), internal:
            await asyncio.sleep(delay)
            with internal:  # reentrant
                await shared.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
            await shared.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
        assert tracker._context.get() is None

    await asyncio.gather(handler(0.02), handler(0), handler(0.01))
    assert [e.customer_id for e in sink.events] == ["cus_internal"] * 6
    assert tracker._context.get() is None


def test_customer_scope_is_thread_local(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    shared = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0))
    barrier = threading.Barrier(4)

    def work(customer: str) -> None:
        with tracker.customer(customer):
            barrier.wait(timeout=10)
            shared.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]

    threads = [threading.Thread(target=work, args=(f"cus_{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(e.customer_id for e in sink.events) == [f"cus_{i}" for i in range(4)]


# --------------------------------------------------------------------- billing hooks


def test_split_events_per_direction(sink: RecordingSink, provider_mock: respx.MockRouter) -> None:
    tracker = LLMTracker(
        sink,
        split_events=("llm.input_tokens", "llm.output_tokens"),
        request_weights={"gpt-5.4-mini": 3},
        prices={"gpt-5.4": Price(input_per_million="0.25", output_per_million="2")},
    )
    client = tracker.wrap(
        openai.OpenAI(api_key="k", max_retries=0), customer_id="c", metadata={"f": 1}
    )
    client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    inputs, outputs = sink.events
    shared = {
        "provider": "openai",
        "operation": "chat.completions",
        "model": payloads.OPENAI_MODEL,
        "usageSource": "provider",
        "serviceTier": "default",
    }
    assert inputs.event_name == "llm.input_tokens"
    assert inputs.metadata == {
        **shared,
        "f": 1,
        "inputTokens": 1117,
        "cachedInputTokens": 1024,
        "requestCredits": 3,
        "costCents": 0.027925,  # 1117 tokens * $0.25/M = $0.00027925
    }
    assert outputs.event_name == "llm.output_tokens"
    assert outputs.metadata == {
        **shared,
        "f": 1,
        "outputTokens": 46,
        "reasoningTokens": 32,
        "costCents": 0.0092,  # 46 * $2/M
    }
    assert inputs.event_id != outputs.event_id


def test_request_weights_by_model_prefix_and_default(
    sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    tracker = LLMTracker(sink, request_weights={"gpt-5": 2, "gpt-5.4-mini": 0.5, "*": 1})
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    claude = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    claude.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    assert [m["requestCredits"] for m in sink.metadata()] == [0.5, 1]


def test_price_table_cost_in_cents_with_cache_prices(
    sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    sonnet = Price(
        input_per_million=3,
        output_per_million=15,
        cached_input_per_million="0.30",
        cache_creation_input_per_million="3.75",
    )
    tracker = LLMTracker(sink, prices={"claude-sonnet-4": sonnet})
    claude = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    claude.messages.create(model="c", max_tokens=5, messages=MESSAGES)  # type: ignore[arg-type]
    # 12 * 3 + 4096 * 0.30 + 2048 * 3.75 + 58 * 15 = 36 + 1228.8 + 7680 + 870 = 9814.8 $/M
    assert sink.only().metadata["costCents"] == 0.98148


def test_cost_rounding_is_half_even_to_a_millionth_of_a_cent() -> None:
    price = Price(input_per_million="0.15", output_per_million="0.6")
    usage = LLMUsage(provider="p", operation="o", input_tokens=7, output_tokens=3)
    # 7 * 0.15 / 1e6 $ = 1.05e-6 $ (exact Decimal); 3 * 0.6 / 1e6 = 1.8e-6 $
    assert price.input_cost(usage) == Decimal("0.00000105")
    assert price.output_cost(usage) == Decimal("0.0000018")
    assert cost_cents(price.input_cost(usage) + price.output_cost(usage)) == 0.000285
    assert cost_cents(Decimal("0.0000000125")) == 0.000001  # 1.25e-6 cents -> half even -> 1e-6
    assert cost_cents(Decimal("0.0000000135")) == 0.000001  # 1.35e-6 -> 1e-6
    assert cost_cents(Decimal("0.0000000155")) == 0.000002  # 1.55e-6 -> 2e-6


def test_model_table_lookup() -> None:
    table = ModelTable({"gpt-4o": 2, "gpt-4o-mini": 1, "*": 5})
    assert table.get("gpt-4o") == 2
    assert table.get("gpt-4o-2024-08-06") == 2
    assert table.get("gpt-4o-mini-2024-07-18") == 1
    assert table.get("claude") == 5
    assert table.get(None) == 5
    assert ModelTable({"gpt-4o": 2}).get("claude") is None


def test_hook_arguments_are_validated(sink: RecordingSink) -> None:
    with pytest.raises(EventValidationError, match=r"request_weights\.x"):
        LLMTracker(sink, request_weights={"x": -1})
    with pytest.raises(EventValidationError, match=r"prices\.input_per_million"):
        Price(input_per_million="abc", output_per_million=1)
    with pytest.raises(EventValidationError, match=r"prices\.m"):
        LLMTracker(sink, prices={"m": 3})  # type: ignore[dict-item]
    with pytest.raises(EventValidationError, match="split_events"):
        LLMTracker(sink, split_events=("a",))  # type: ignore[arg-type]
    with pytest.raises(EventValidationError, match="event_name"):
        LLMTracker(sink, event_name=" ")
    with pytest.raises(TypeError, match="track"):
        LLMTracker(object())  # type: ignore[arg-type]


def test_usage_metadata_leaves_unknown_counts_out() -> None:
    usage = LLMUsage(provider="p", operation="o", model=None, input_tokens=3, complete=False)
    assert usage.to_metadata() == {
        "provider": "p",
        "operation": "o",
        "inputTokens": 3,
        "status": "incomplete",
        "usageSource": "incomplete",
    }
    assert usage.total_tokens is None


def test_create_llm_tracker_typescript_shape(
    sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    tracker = create_llm_tracker(ingestion=sink, event_name="llm.usage")
    client = tracker.wrap(
        client=openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_ts", metadata={"f": 1}
    )
    client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    event = sink.only()
    assert (event.event_name, event.customer_id, event.metadata["f"]) == ("llm.usage", "cus_ts", 1)
    tracker.close()  # does not own the sink: nothing to close
