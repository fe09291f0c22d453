# ruff: noqa: E402  (the framework is imported after the check that it is installed)
"""LangChain: the real langchain-core and langchain-openai over an OpenAI client whose HTTP
is mocked; events checked number by number, ids included."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from typing import Any

import httpx2
import openai
import pytest

from .conftest import (
    RecordingSink,
    loopback,
    numbered_calls,
    openai_api,
    paired,
    require,
    stored,
    unique_calls,
)

require("langchain_openai", "langchain")
require("langchain_anthropic", "langchain")

import anthropic
from langchain_anthropic import ChatAnthropic
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_openai import ChatOpenAI

from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage
from dodo_ingest.blueprints.llm._billed import current_run
from dodo_ingest.blueprints.llm._event_ids import event_id
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer
from dodo_ingest.integrations.langchain import DodoCallbackHandler
from tests.blueprints.llm import payloads

NAME = "llm.chat_completion"
CHAT = payloads.CHAT_METADATA


def chat_model(
    transport: httpx2.MockTransport,
    wrapped_by: LLMTracker | None = None,
    customer: str = "cus_1",
    **options: Any,
) -> ChatOpenAI:
    """A ChatOpenAI over sync and async OpenAI clients answered by ``transport``; clients
    wrapped by ``wrapped_by`` (billed to ``customer``) when given."""
    root = openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport))
    aroot = openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)
    )
    if wrapped_by is not None:
        wrapped_by.wrap(root, customer_id=customer)
        wrapped_by.wrap(aroot, customer_id=customer)
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
    assert (handler._runs, handler._waiting) == ({}, {})
    assert current_run.get() is None  # the failed run ended


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
    model = chat_model(openai_api(), tracker, customer, use_responses_api=True)
    model.invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker, customer)]})
    assert tracker.stats.events == 2  # one per path
    assert ingestion.flush(timeout=10)
    (event,) = stored(server, customer)
    usage = LLMUsage("openai", "responses", response_id=payloads.RESP_ID, created=1767225700.0)
    assert event[0] == event_id(usage, NAME)
    assert event[1]["inputTokens"] == 2048
    assert event[1]["reasoningTokens"] == 256


def test_handler_and_wrapped_chat_completions_client_bill_one_event(
    server: DevServer, ingestion: Ingestion
) -> None:
    """LangChain passes no ``created`` on: the handler takes the wrapped client's identity
    of the same response, and the API keeps one event."""
    tracker = LLMTracker(ingestion)
    customer = f"cus_lc_{uuid.uuid4().hex[:8]}"
    model = chat_model(openai_api(), tracker, customer)
    model.invoke("hi", config={"callbacks": [DodoCallbackHandler(tracker, customer)]})
    assert tracker.stats.events == 2  # one per path
    assert ingestion.flush(timeout=10)
    ((stored_id, metadata),) = stored(server, customer)
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225600)
    assert stored_id == event_id(usage, NAME)
    assert (metadata["inputTokens"], metadata["cachedInputTokens"]) == (1117, 1024)


def _both_paths(
    tracker: LLMTracker, transport: httpx2.MockTransport, **options: Any
) -> tuple[ChatOpenAI, DodoCallbackHandler]:
    """A ChatOpenAI over clients wrapped by ``tracker``, and a handler of the same tracker:
    every call is billed by both paths."""
    return chat_model(transport, tracker, **options), DodoCallbackHandler(tracker, "cus_1")


def test_stream_billed_by_both_paths_is_one_event(tracker: LLMTracker, sink: RecordingSink) -> None:
    """A LangChain stream's result carries no response id: the handler takes the identity of
    the wrapped client's bill made during its run (sync ``stream`` and streamed ``invoke``)."""
    model, handler = _both_paths(tracker, openai_api(), stream_usage=True)
    assert "".join(str(c.content) for c in model.stream("hi", config={"callbacks": [handler]}))
    paired(sink, 1)
    client_event = sink.events[0]
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225601)
    assert client_event.event_id == event_id(usage, NAME)
    streaming, handler = _both_paths(tracker, openai_api(), streaming=True, stream_usage=True)
    streaming.invoke("hi", config={"callbacks": [handler]})
    assert tracker.stats.events == 4
    assert {e.event_id for e in sink.events} == {client_event.event_id}  # the same response
    responses, handler = _both_paths(tracker, openai_api(), use_responses_api=True)
    list(responses.stream("hi", config={"callbacks": [handler]}))
    usage = LLMUsage("openai", "responses", response_id=payloads.RESP_ID, created=1767225700.0)
    assert [e.event_id for e in sink.events[4:]] == [event_id(usage, NAME)] * 2


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_a_reused_response_id_still_bills_each_call(
    tracker: LLMTracker, sink: RecordingSink, stream: bool
) -> None:
    """Each call billed by both paths is matched once: three calls sharing a response id
    are three events, none folded into another."""
    model, handler = _both_paths(tracker, httpx2.MockTransport(numbered_calls()), stream_usage=True)
    for _ in range(3):
        if stream:
            list(model.stream("hi", config={"callbacks": [handler]}))
        else:
            model.invoke("hi", config={"callbacks": [handler]})
    paired(sink, 3)
    assert sorted({e.metadata["inputTokens"] for e in sink.events}) == [1, 2, 3]


def test_two_streams_read_in_turns_are_one_event_each(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """Two LangChain streams read chunk by chunk in turns from one thread: each wrapped
    stream keeps the run it was created in, whichever run started last."""
    model, handler = _both_paths(tracker, httpx2.MockTransport(numbered_calls()), stream_usage=True)
    first = model.stream("hi", config={"callbacks": [handler]})
    second = model.stream("hi", config={"callbacks": [handler]})
    for chunks in itertools.zip_longest(first, second):
        assert chunks != (None, None)
    paired(sink, 2)


def _short_ids(request: httpx2.Request) -> httpx2.Response:
    """An Ollama-like server: the same short id (not trusted as unique) for every call."""
    if json.loads(request.content).get("stream"):
        frames = payloads.chat_chunks(with_usage=True)
        for frame in frames:
            if isinstance(frame, dict):
                frame["id"] = "chatcmpl-7"
        return payloads.sse_response(frames)
    return payloads.json_response(payloads.chat_completion(id="chatcmpl-7"))


def test_short_ids_billed_by_both_paths_are_one_event_per_call(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """Ids that are not unique are hashed with a key per call: the handler takes the wrapped
    client's key, and two calls stay two events."""
    model, handler = _both_paths(tracker, openai_api(_short_ids), stream_usage=True)
    model.invoke("hi", config={"callbacks": [handler]})
    list(model.stream("hi", config={"callbacks": [handler]}))
    paired(sink, 2)


def test_async_streams_and_batches_bill_one_event_per_call(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """``astream``, ``ainvoke``, ``batch`` and ``abatch``: each call runs in its own context
    (tasks, executor threads), and each is one event."""
    server = httpx2.MockTransport(numbered_calls())
    model, handler = _both_paths(tracker, server, stream_usage=True)
    config: Any = {"callbacks": [handler]}

    async def main() -> None:
        async def stream() -> None:
            async for _ in model.astream("hi", config=config):
                pass

        await asyncio.gather(stream(), stream(), model.ainvoke("hi", config=config))
        await model.abatch(["a", "b"], config=config)

    asyncio.run(main())
    model.batch(["c", "d", "e"], config=config)
    streaming, handler = _both_paths(tracker, server, streaming=True, stream_usage=True)
    streaming.batch(["f", "g"], config={"callbacks": [handler]})
    paired(sink, 10)


def _wrapped_client(tracker: LLMTracker, transport: httpx2.MockTransport) -> openai.OpenAI:
    return tracker.wrap(
        openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport)),
        customer_id="cus_1",
    )


def _direct_stream(client: openai.OpenAI) -> None:
    """A call of the caller's own through a wrapped client (same prompt, same counts as the
    model's)."""
    for _ in client.chat.completions.create(
        model="gpt-5.4-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        pass


def _distinct_calls(sink: RecordingSink) -> Counter[str | None]:
    """The number of events of each event id."""
    return Counter(event.event_id for event in sink.events)


@pytest.mark.parametrize("model_wrapped", [False, True], ids=["plain-model", "wrapped-model"])
def test_a_call_made_between_a_streams_chunks_is_not_the_models(
    tracker: LLMTracker, sink: RecordingSink, model_wrapped: bool
) -> None:
    """The caller's code runs between a stream's chunks in the run's context: a wrapped
    client's call made there (same counts, its own response id) keeps its own event id,
    whether the model's client is wrapped too or not (two ids for two calls, never one)."""
    transport = httpx2.MockTransport(unique_calls())
    model = chat_model(transport, tracker if model_wrapped else None, stream_usage=True)
    handler = DodoCallbackHandler(tracker, "cus_1")
    direct = _wrapped_client(tracker, transport)
    for number, _ in enumerate(model.stream("hi", config={"callbacks": [handler]})):
        if number == 0:
            _direct_stream(direct)
    counts = _distinct_calls(sink)
    assert len(counts) == 2  # each call its own id
    # the model's call billed by the handler (and by its wrapped client): one id
    assert sorted(counts.values()) == ([1, 2] if model_wrapped else [1, 1])
    assert {e.metadata["inputTokens"] for e in sink.events} == {19}  # the same counts


def test_a_task_spawned_between_async_stream_chunks_is_not_the_models(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """A task spawned between ``astream`` chunks copies the run's context: its wrapped call
    is still the caller's own."""
    transport = httpx2.MockTransport(unique_calls())
    model = chat_model(transport, stream_usage=True)
    handler = DodoCallbackHandler(tracker, "cus_1")
    aclient = tracker.wrap(
        openai.AsyncOpenAI(api_key="sk-test", http_client=httpx2.AsyncClient(transport=transport)),
        customer_id="cus_1",
    )

    async def direct() -> None:
        async for _ in await aclient.chat.completions.create(
            model="gpt-5.4-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            pass

    async def main() -> None:
        spawned = False
        async for _ in model.astream("hi", config={"callbacks": [handler]}):
            if not spawned:  # the task's call ends before the stream does
                spawned = True
                await asyncio.create_task(direct())

    asyncio.run(main())
    assert len(sink.events) == 2
    assert len(_distinct_calls(sink)) == 2


@pytest.mark.parametrize("server", [unique_calls, numbered_calls], ids=["ids", "reused-id"])
def test_generate_over_several_prompts_bills_each_call_once(
    tracker: LLMTracker, sink: RecordingSink, server: Any
) -> None:
    """``generate()`` starts every prompt's run before the first call: the runs share the
    wrapped client's bills, and each result takes its own (by response id and counts), sync
    and async."""
    model, handler = _both_paths(tracker, httpx2.MockTransport(server()))
    prompts: list[list[BaseMessage]] = [[HumanMessage(p)] for p in ("a", "b", "c")]
    model.generate(prompts, callbacks=[handler])
    asyncio.run(model.agenerate(prompts[:2], callbacks=[handler]))
    paired(sink, 5)
    assert current_run.get() is None


def test_a_wrapped_call_from_a_token_callback_in_generate_is_never_taken_for_the_model(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """``generate()`` over two streamed prompts shares one run; a callback on the first
    prompt's first token calls a wrapped client while the second prompt still waits. A
    streamed result carries no response id, so in a shared run it never takes a bill: three
    calls, three distinct ids (before, the second result took the callback's call's id and
    one call's usage was lost)."""
    transport = httpx2.MockTransport(unique_calls())
    direct = tracker.wrap(
        openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport)),
        customer_id="cus_1",
    )

    class OnFirstToken(BaseCallbackHandler):
        called = False

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if not self.called:
                self.called = True
                stream = direct.chat.completions.create(
                    model=payloads.OPENAI_MODEL,
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
                for _ in stream:
                    pass

    callback = OnFirstToken()
    model = chat_model(transport, streaming=True, stream_usage=True)
    model.generate(
        [[HumanMessage("a")], [HumanMessage("b")]],
        callbacks=[DodoCallbackHandler(tracker, "cus_1"), callback],
    )
    assert callback.called
    assert len(sink.events) == 3
    assert len(_distinct_calls(sink)) == 3


def test_generate_over_streams_with_equal_counts_bills_twice_never_once(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """Two streamed results with the same counts and no response id: which bill is whose is
    not guessed; each call is billed by both paths under distinct ids (billed twice, never
    folded into the other call)."""
    model, handler = _both_paths(
        tracker, httpx2.MockTransport(unique_calls()), streaming=True, stream_usage=True
    )
    model.generate([[HumanMessage("a")], [HumanMessage("b")]], callbacks=[handler])
    assert len(sink.events) == 4
    assert len(_distinct_calls(sink)) == 4


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


def test_anthropic_stream_and_message_billed_by_both_paths_are_one_event_each(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """ChatAnthropic's own clients wrapped by the tracker: the streamed results (no message id
    in LangChain's result) take the wrapped client's id, the message's handler event is the
    wrapped client's (this server answers every call with one message id, which Anthropic
    ids hash alone: one event for all, as the wrapped client alone gives)."""
    handler = DodoCallbackHandler(tracker, "cus_1")
    with loopback(_anthropic) as url:
        claude = _claude(url)
        tracker.wrap(claude._client, customer_id="cus_1")
        tracker.wrap(claude._async_client, customer_id="cus_1")
        list(claude.stream("hi", config={"callbacks": [handler]}))
        claude.invoke("hi", config={"callbacks": [handler]})

        async def astream() -> None:
            async for _ in claude.astream("hi", config={"callbacks": [handler]}):
                pass

        asyncio.run(astream())
    assert len(sink.events) == 6
    message_id = event_id(LLMUsage("anthropic", "messages", response_id=payloads.MSG_ID), NAME)
    assert {e.event_id for e in sink.events} == {message_id}
    assert sink.events[0].metadata == sink.events[1].metadata  # the stream's usage, twice
