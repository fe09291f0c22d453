# ruff: noqa: E402  (the framework is imported after the check that it is installed)
"""LangChain: the real langchain-core and langchain-openai over an OpenAI client whose HTTP
is mocked; events checked number by number, ids included."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx2
import openai
import pytest

from .conftest import RecordingSink, loopback, openai_api, require, stored

require("langchain_openai", "langchain")
require("langchain_anthropic", "langchain")

import anthropic
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI

from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage
from dodo_ingest.blueprints.llm._event_ids import event_id
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer
from dodo_ingest.integrations.langchain import DodoCallbackHandler
from tests.blueprints.llm import payloads

NAME = "llm.chat_completion"
CHAT = payloads.CHAT_METADATA


def chat_model(transport: httpx2.MockTransport, **options: Any) -> ChatOpenAI:
    root = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport))
    aroot = openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
    )
    return ChatOpenAI(
        model="gpt-5.4-mini",
        api_key="sk-test",
        root_client=root,
        client=root.chat.completions,
        root_async_client=aroot,
        async_client=aroot.chat.completions,
        max_retries=0,
        **options,
    )


def _wrapped_model(
    tracker: LLMTracker, transport: httpx2.MockTransport, customer_id: str, **options: Any
) -> ChatOpenAI:
    root = tracker.wrap(
        openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport)),
        customer_id=customer_id,
    )
    return ChatOpenAI(
        model="gpt-5.4-mini",
        api_key="sk-test",
        root_client=root,
        client=root.chat.completions,
        max_retries=0,
        **options,
    )


def test_chat_completion_billed_from_the_raw_usage(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    handler = DodoCallbackHandler(tracker, customer_id="cus_1", metadata={"feature": "chat"})
    reply = chat_model(openai_api()).invoke("hi", config={"callbacks": [handler]})
    assert reply.usage_metadata is not None
    event = sink.only()
    assert (event.customer_id, event.event_name) == ("cus_1", NAME)
    assert event.metadata == {"feature": "chat", **CHAT}
    # the id derives from the response id, as the tracker's own ids do
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID)
    assert event.event_id == event_id(usage, NAME)
    assert tracker.stats.events == 1
    assert tracker.stats.failures == 0


def _priority_stream(request: httpx2.Request) -> httpx2.Response:
    """A chat stream served at the priority tier, with cache reads and reasoning."""
    body = json.loads(request.content)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    frames: list[dict[str, Any] | str] = []
    for delta, finish in (({"role": "assistant", "content": "Hi"}, None), ({}, "stop")):
        frames.append(
            {
                "id": payloads.CHAT_ID,
                "object": "chat.completion.chunk",
                "created": 1767225601,
                "model": payloads.OPENAI_MODEL,
                "service_tier": "priority",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )
    frames.append(
        {
            "id": payloads.CHAT_ID,
            "object": "chat.completion.chunk",
            "created": 1767225601,
            "model": payloads.OPENAI_MODEL,
            "service_tier": "priority",
            "choices": [],
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": 12,
                "total_tokens": 52,
                "prompt_tokens_details": {"cached_tokens": 32, "cache_write_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 8},
            },
        }
    )
    frames.append("[DONE]")
    return payloads.sse_response(frames)


def test_stream_billed_from_usage_metadata_with_tiered_details(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """LangChain names priority-tier details ``priority_cache_read``…: they are the same
    cache reads, cache writes and reasoning tokens."""
    handler = DodoCallbackHandler(tracker, customer_id="cus_1")
    run_id = uuid.uuid4()
    model = chat_model(openai_api(_priority_stream), stream_usage=True)
    text = "".join(
        str(chunk.content)
        for chunk in model.stream("hi", config={"callbacks": [handler], "run_id": run_id})
    )
    assert text == "Hi"
    event = sink.only()
    assert event.metadata == {
        "usageSource": "provider",
        "serviceTier": "priority",
        "provider": "openai",
        "operation": "chat.completions",
        "model": payloads.OPENAI_MODEL,
        "inputTokens": 40,
        "outputTokens": 12,
        "totalTokens": 52,
        "cachedInputTokens": 32,
        "cacheCreationInputTokens": 4,
        "reasoningTokens": 8,
    }
    # LangChain streams carry no response id: the id derives from the run id
    usage = LLMUsage("openai", "chat.completions", response_id=f"langchain-run:{run_id}:0")
    assert event.event_id == event_id(usage, NAME)


def _impossible_stream(request: httpx2.Request) -> httpx2.Response:
    """A compatible server reporting a negative prompt count."""
    frames: list[dict[str, Any] | str] = payloads.chat_chunks(with_usage=True)
    usage_chunk = frames[-2]
    assert isinstance(usage_chunk, dict)
    usage_chunk["usage"] = {**payloads.STREAM_USAGE, "prompt_tokens": -5}
    return payloads.sse_response(frames)


def test_impossible_counts_are_left_out_and_flagged(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    handler = DodoCallbackHandler(tracker, customer_id="cus_1")
    model = chat_model(openai_api(_impossible_stream), stream_usage=True)
    list(model.stream("hi", config={"callbacks": [handler]}))
    metadata = sink.only().metadata
    assert "inputTokens" not in metadata
    assert "totalTokens" not in metadata
    assert (metadata["outputTokens"], metadata["invalidUsage"]) == (3, "inputTokens,totalTokens")
    assert tracker.stats.invalid_usage == 1


def test_responses_api_billed_with_cache_and_reasoning(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    handler = DodoCallbackHandler(tracker, customer_id="cus_1")
    chat_model(openai_api(), use_responses_api=True).invoke("hi", config={"callbacks": [handler]})
    event = sink.only()
    assert event.metadata == payloads.RESPONSES_METADATA
    usage = LLMUsage("openai", "responses", response_id=payloads.RESP_ID, created=1767225700.0)
    assert event.event_id == event_id(usage, NAME)


def test_customer_from_run_metadata_then_scope_then_default(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    handler = DodoCallbackHandler(tracker, customer_id="cus_default", metadata={"app": "a"})
    model = chat_model(openai_api())
    model.invoke("hi", config={"callbacks": [handler]})
    with tracker.customer("cus_scope", metadata={"plan": "pro"}):
        model.invoke("hi", config={"callbacks": [handler]})
        model.invoke("hi", config={"callbacks": [handler], "metadata": {"customer_id": "cus_run"}})
    assert [(e.customer_id, e.metadata["app"], e.metadata.get("plan")) for e in sink.events] == [
        ("cus_default", "a", None),
        ("cus_scope", "a", "pro"),
        ("cus_run", "a", "pro"),
    ]
    assert all(e.metadata["inputTokens"] == 1117 for e in sink.events)


def test_async_calls_see_their_own_scope(tracker: LLMTracker, sink: RecordingSink) -> None:
    handler = DodoCallbackHandler(tracker)
    model = chat_model(openai_api())

    async def call(customer: str) -> None:
        async with tracker.customer(customer):
            await model.ainvoke("hi", config={"callbacks": [handler]})

    async def main() -> None:
        await asyncio.gather(*(call(f"cus_{n}") for n in range(5)))

    asyncio.run(main())
    assert sorted(e.customer_id for e in sink.events) == [f"cus_{n}" for n in range(5)]
    assert {e.metadata["outputTokens"] for e in sink.events} == {46}


def test_no_customer_and_no_usage_are_counted_not_raised(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    model = chat_model(openai_api(), stream_usage=False)
    model.invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker)]})
    assert tracker.stats.failures == 1  # no customer
    chunks = list(model.stream("hi", config={"callbacks": [DodoCallbackHandler(tracker, "c")]}))
    assert chunks  # the stream reached the caller; it carried no usage
    assert sink.events == []
    assert tracker.stats.failures == 2


def test_provider_errors_reach_the_caller_and_bill_nothing(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    failing = httpx2.MockTransport(
        lambda request: httpx2.Response(500, json={"error": {"message": "boom"}})
    )
    handler = DodoCallbackHandler(tracker, customer_id="cus_1")
    with pytest.raises(openai.InternalServerError):
        chat_model(failing).invoke("hi", config={"callbacks": [handler]})
    assert sink.events == []
    assert tracker.stats.failures == 0
    assert handler._runs == {}


def test_a_failing_sink_never_reaches_the_chain(tracker: LLMTracker, sink: RecordingSink) -> None:
    sink.fail_with = RuntimeError("queue full")
    handler = DodoCallbackHandler(tracker, customer_id="cus_1")
    reply = chat_model(openai_api()).invoke("hi", config={"callbacks": [handler]})
    assert reply.content == '{"answer": "Hello"}'
    assert tracker.stats.failures == 1


def test_handler_and_wrapped_client_bill_one_event(server: DevServer, ingestion: Ingestion) -> None:
    """The same response billed by both paths has one event id: the API keeps one event."""
    tracker = LLMTracker(ingestion)
    customer = f"cus_lc_{uuid.uuid4().hex[:8]}"
    model = _wrapped_model(tracker, openai_api(), customer, use_responses_api=True)
    model.invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker, customer)]})
    assert tracker.stats.events == 2  # one per path
    assert ingestion.flush(timeout=10)
    (event,) = stored(server, customer)
    usage = LLMUsage("openai", "responses", response_id=payloads.RESP_ID, created=1767225700.0)
    assert event[0] == event_id(usage, NAME)
    assert event[1]["inputTokens"] == 2048
    assert event[1]["reasoningTokens"] == 256


@pytest.mark.xfail(
    strict=False,
    reason="the wrapped client hashes the chat completion's `created` into its event id, "
    "which LangChain does not pass on",
)
def test_handler_and_wrapped_chat_completions_client_bill_one_event(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    model = _wrapped_model(tracker, openai_api(), "cus_1")
    model.invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker, "cus_1")]})
    assert len(sink.events) == 2
    assert sink.events[0].event_id == sink.events[1].event_id


CACHE_WRITES = {
    "cache_creation_input_tokens": 2048,
    "cache_creation": {"ephemeral_5m_input_tokens": 1536, "ephemeral_1h_input_tokens": 512},
}
MESSAGE = {
    **payloads.anthropic_message(),
    "usage": {
        **payloads.ANTHROPIC_USAGE,
        **CACHE_WRITES,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
    },
}


def _anthropic(request: httpx2.Request) -> httpx2.Response:
    """Anthropic's API: :data:`MESSAGE`, or a stream writing 2048 tokens to the cache."""
    if not json.loads(request.content).get("stream"):
        return payloads.json_response(MESSAGE)
    events = payloads.anthropic_events()
    events[0]["message"]["usage"].update(CACHE_WRITES)
    events[-2]["usage"].update(CACHE_WRITES)
    return payloads.sse_response(events, named=True)


def _claude(url: str) -> ChatAnthropic:
    return ChatAnthropic(model=payloads.CLAUDE, base_url=url, api_key="sk-ant-test", max_retries=0)


def test_anthropic_result_billed_as_a_wrapped_client_bills_it(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """LangChain passes Anthropic's raw usage and message id: the handler's event is the one
    the tracker makes of the same response (same id, same metadata)."""
    with loopback(_anthropic) as url:
        _claude(url).invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker, "cus_1")]})
    tracker.track(anthropic.types.Message.model_validate(MESSAGE), customer_id="cus_1")
    handler_event, own_event = sink.events
    assert handler_event.event_id == own_event.event_id
    assert (
        handler_event.metadata
        == own_event.metadata
        == {
            **payloads.ANTHROPIC_METADATA,
            "cacheWrite5mTokens": 1536,
            "cacheWrite1hTokens": 512,
            "webSearchRequests": 2,
        }
    )


def test_anthropic_stream_cache_writes_by_lifetime(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """LangChain leaves lifetime-split cache writes out of its ``cache_creation`` (0): they
    are billed as the whole cache write and its split."""
    run_id = uuid.uuid4()
    with loopback(_anthropic) as url:
        chunks = list(
            _claude(url).stream(
                "hi", config={"callbacks": [DodoCallbackHandler(tracker, "c")], "run_id": run_id}
            )
        )
    assert "".join(str(chunk.content) for chunk in chunks) == "Hello there!"
    event = sink.only()
    assert event.metadata == {
        **payloads.ANTHROPIC_STREAM_METADATA,
        "inputTokens": 472 + 1024 + 2048,
        "totalTokens": 472 + 1024 + 2048 + 89,
        "cacheCreationInputTokens": 2048,
        "cacheWrite5mTokens": 1536,
        "cacheWrite1hTokens": 512,
    }
    usage = LLMUsage("anthropic", "messages", response_id=f"langchain-run:{run_id}:0")
    assert event.event_id == event_id(usage, NAME)
