# ruff: noqa: E402  (the framework is imported after the check that it is installed)
"""LiteLLM: the real litellm SDK calling a real HTTP server on 127.0.0.1 that answers like
OpenAI and Anthropic; events checked number by number, ids included."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2
import openai
import pytest

from .conftest import (
    RecordingSink,
    loopback,
    numbered_calls,
    paired,
    provider,
    require,
    stored,
    unique_calls,
)

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-map download
litellm = require("litellm", "litellm")

from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage
from dodo_ingest.blueprints.llm._billed import current_run
from dodo_ingest.blueprints.llm._event_ids import event_id
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer
from dodo_ingest.integrations.litellm import DodoLiteLLMLogger
from tests.blueprints.llm import payloads

NAME = "llm.chat_completion"
MESSAGES = [{"role": "user", "content": "hi"}]
#: LiteLLM passes no service tier on
CHAT = {k: v for k, v in payloads.CHAT_METADATA.items() if k != "serviceTier"}


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with loopback(provider()) as url:
        yield url


_CALLBACK_LISTS = (
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
)


@pytest.fixture
def install() -> Iterator[Callable[[DodoLiteLLMLogger], None]]:
    """Install one logger for the test; LiteLLM copies ``callbacks`` into its per-hook lists
    (keeping one logger per class and settings), so every list is reset around the test."""

    def reset() -> None:
        for name in _CALLBACK_LISTS:
            setattr(litellm, name, [])

    def install(logger: DodoLiteLLMLogger) -> None:
        reset()
        litellm.callbacks = [logger]

    yield install
    reset()


def settle(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) for LiteLLM's logging worker to have called the hook."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the LiteLLM success hook never ran"
        time.sleep(0.01)


def openai_call(api: str, **options: Any) -> Any:
    return litellm.completion(
        model="openai/gpt-5.4-mini",
        api_base=f"{api}/v1",
        api_key="sk-test",
        messages=MESSAGES,
        **options,
    )


def test_sync_completion_billed_to_its_user(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, metadata={"app": "chat"}))
    response = openai_call(api, user="cus_user")
    assert response.usage.prompt_tokens == 1117
    settle(lambda: len(sink.events) == 1)
    event = sink.only()
    assert (event.customer_id, event.event_name) == ("cus_user", NAME)
    assert event.metadata == {"app": "chat", **CHAT}
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225600)
    assert event.event_id == event_id(usage, NAME)
    assert tracker.stats.failures == 0


def test_metadata_customer_wins_over_user(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, customer_id="cus_default"))
    openai_call(api, user="end_user_7", metadata={"customer_id": "cus_meta"})
    openai_call(api)
    settle(lambda: len(sink.events) == 2)
    assert sorted(e.customer_id for e in sink.events) == ["cus_default", "cus_meta"]


def test_async_stream_with_usage_and_scope(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker))

    async def main() -> str:
        async with tracker.customer("cus_scope", metadata={"plan": "pro"}):
            stream = await litellm.acompletion(
                model="openai/gpt-5.4-mini",
                api_base=f"{api}/v1",
                api_key="sk-test",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        for _ in range(500):  # the async hook runs as a task of this loop
            if sink.events:
                break
            await asyncio.sleep(0.01)
        return text

    assert asyncio.run(main()) == "Hello there!"
    event = sink.only()
    assert event.customer_id == "cus_scope"
    assert event.metadata == {
        "plan": "pro",
        "usageSource": "provider",
        "provider": "openai",
        "operation": "chat.completions",
        "model": payloads.OPENAI_MODEL,
        "inputTokens": 19,
        "outputTokens": 3,
        "totalTokens": 22,
        "cachedInputTokens": 0,
        "reasoningTokens": 0,
    }


def test_stream_without_provider_usage_is_not_billed_with_an_estimate(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, customer_id="cus_1"))
    chunks = list(openai_call(api, stream=True))
    assert chunks
    settle(lambda: tracker.stats.failures == 1)
    assert sink.events == []


def _anthropic_with_tools(request: httpx2.Request) -> httpx2.Response:
    message = payloads.anthropic_message()
    message["usage"] = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 4096,
        "cache_creation": {"ephemeral_5m_input_tokens": 1536, "ephemeral_1h_input_tokens": 512},
        "output_tokens": 58,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
    }
    return payloads.json_response(message)


def test_anthropic_cache_writes_and_searches(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, customer_id="cus_1"))
    with loopback(_anthropic_with_tools) as url:
        litellm.completion(
            model="anthropic/claude-sonnet-4-6",
            api_base=url,
            api_key="sk-ant-test",
            messages=MESSAGES,
            max_tokens=64,
        )
    settle(lambda: len(sink.events) == 1)
    metadata = sink.only().metadata
    assert metadata == {
        "usageSource": "provider",
        "provider": "anthropic",
        "operation": "chat.completions",
        "model": payloads.CLAUDE,
        "inputTokens": 12 + 2048 + 4096,
        "outputTokens": 58,
        "totalTokens": 12 + 2048 + 4096 + 58,
        "cachedInputTokens": 4096,
        "cacheCreationInputTokens": 2048,
        "cacheWrite5mTokens": 1536,
        "cacheWrite1hTokens": 512,
        "reasoningTokens": 0,  # LiteLLM reports none as 0
        "webSearchRequests": 2,
    }


def test_embeddings_use_the_call_id(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, customer_id="cus_1"))
    call_id = str(uuid.uuid4())
    litellm.embedding(
        model="openai/text-embedding-3-small",
        api_base=f"{api}/v1",
        api_key="sk-test",
        input=["hello"],
        litellm_call_id=call_id,
    )
    settle(lambda: len(sink.events) == 1)
    event = sink.only()
    assert event.metadata["operation"] == "embeddings"
    assert (event.metadata["inputTokens"], event.metadata["outputTokens"]) == (8, 0)
    assert event.event_id == event_id(LLMUsage("openai", "embeddings", response_id=call_id), NAME)


def test_a_failing_sink_never_reaches_the_call(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    sink.fail_with = RuntimeError("queue full")
    install(DodoLiteLLMLogger(tracker, customer_id="cus_1"))
    response = openai_call(api)
    assert response.choices[0].message.content == '{"answer": "Hello"}'
    settle(lambda: tracker.stats.failures == 1)


def test_logger_and_wrapped_client_bill_one_event(
    api: str, server: DevServer, ingestion: Ingestion, install: Any
) -> None:
    """LiteLLM sending through an OpenAI client wrapped by the same tracker: both paths bill
    the response under one event id, and the API keeps one event."""
    tracker = LLMTracker(ingestion)
    customer = f"cus_ll_{uuid.uuid4().hex[:8]}"
    install(DodoLiteLLMLogger(tracker, customer_id=customer))
    client = tracker.wrap(
        openai.OpenAI(api_key="sk-test", base_url=f"{api}/v1"), customer_id=customer
    )
    openai_call(api, client=client)
    assert current_run.get() is None  # the call's run ended with it
    settle(lambda: tracker.stats.events == 2)
    assert ingestion.flush(timeout=10)
    ((stored_id, metadata),) = stored(server, customer)
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225600)
    assert stored_id == event_id(usage, NAME)
    assert (metadata["inputTokens"], metadata["cachedInputTokens"]) == (1117, 1024)


def _both_paths(
    tracker: LLMTracker, api: str, install: Any, customer: str = "cus_1"
) -> tuple[openai.OpenAI, openai.AsyncOpenAI]:
    """A logger of ``tracker`` installed, and OpenAI clients wrapped by it for ``client=``:
    every call is billed by both paths."""
    install(DodoLiteLLMLogger(tracker, customer_id=customer))
    return (
        tracker.wrap(openai.OpenAI(api_key="sk-test", base_url=f"{api}/v1"), customer_id=customer),
        tracker.wrap(
            openai.AsyncOpenAI(api_key="sk-test", base_url=f"{api}/v1"), customer_id=customer
        ),
    )


STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def _call(api: str, client: Any, **options: Any) -> None:
    """A LiteLLM call through ``client``, streams read to the end."""
    response = openai_call(api, client=client, **options)
    if options.get("stream"):
        assert "".join(c.choices[0].delta.content or "" for c in response if c.choices)


async def _acall(api: str, client: Any, **options: Any) -> None:
    response = await litellm.acompletion(
        model="openai/gpt-5.4-mini",
        api_base=f"{api}/v1",
        api_key="sk-test",
        messages=MESSAGES,
        client=client,
        **options,
    )
    if options.get("stream"):
        assert "".join([c.choices[0].delta.content or "" async for c in response if c.choices])


def test_streams_billed_by_both_paths_are_one_event(
    api: str, server: DevServer, ingestion: Ingestion, install: Any
) -> None:
    """LiteLLM stamps its own ``created`` on streams: the logger takes the wrapped client's
    identity of the call (sync and async), and the API keeps one event."""
    tracker = LLMTracker(ingestion)
    customer = f"cus_ll_{uuid.uuid4().hex[:8]}"
    client, aclient = _both_paths(tracker, api, install, customer)
    _call(api, client, **STREAM)
    settle(lambda: tracker.stats.events == 2)
    assert ingestion.flush(timeout=10)
    ((stored_id, metadata),) = stored(server, customer)
    usage = LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225601)
    assert stored_id == event_id(usage, NAME)
    assert metadata["inputTokens"] == 19
    asyncio.run(_acall(api, aclient, **STREAM))
    settle(lambda: tracker.stats.events == 4)
    assert ingestion.flush(timeout=10)
    assert [event for event, _ in stored(server, customer)] == [stored_id]  # the same response


def test_a_reused_response_id_still_bills_each_call(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    """A server answering every call with one long id (each with its own ``created``):
    each call billed by both paths is one event, none folded into another."""
    with loopback(numbered_calls()) as url:
        client, aclient = _both_paths(tracker, url, install)
        for options in ({}, STREAM, {}, STREAM):
            _call(url, client, **options)

        async def main() -> None:
            await asyncio.gather(_acall(url, aclient), _acall(url, aclient, **STREAM))

        asyncio.run(main())
        settle(lambda: len(sink.events) == 12)
    paired(sink, 6)
    assert sorted({e.metadata["inputTokens"] for e in sink.events}) == [1, 2, 3, 4, 5, 6]


def test_a_stream_read_after_other_calls_is_still_one_event(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    """The wrapped client called directly between a LiteLLM stream call and the end of its
    reading: the stream is one event, the direct call its own."""
    with loopback(numbered_calls()) as url:
        client, _ = _both_paths(tracker, url, install)
        stream = openai_call(url, client=client, **STREAM)
        client.chat.completions.create(model="gpt-5.4-mini", messages=MESSAGES)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        settle(lambda: len(sink.events) == 3)
    direct, *streamed = sink.events
    assert direct.metadata["inputTokens"] == 2  # the second request made
    assert [e.metadata["inputTokens"] for e in streamed] == [1, 1]
    assert streamed[0].event_id == streamed[1].event_id != direct.event_id


def test_a_call_made_between_a_streams_chunks_is_not_litellms(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    """A LiteLLM stream over its own client, read by a loop that calls a wrapped client
    (same counts, its own response id): two calls, two event ids."""
    install(DodoLiteLLMLogger(tracker, customer_id="cus_1"))
    with loopback(unique_calls()) as url:
        direct = tracker.wrap(openai.OpenAI(api_key="sk-test", base_url=f"{url}/v1"), "cus_1")
        for number, _ in enumerate(openai_call(url, **STREAM)):
            if number == 0:
                _call(url, direct, **STREAM)  # through LiteLLM too: a call of its own
                for _ in direct.chat.completions.create(
                    model="gpt-5.4-mini", messages=MESSAGES, **STREAM
                ):
                    pass
        settle(lambda: len(sink.events) == 4)
    assert current_run.get() is None
    by_id = Counter(event.event_id for event in sink.events)
    # the outer stream (logger only), the inner LiteLLM call (logger and client: one id),
    # the direct call (client only)
    assert sorted(by_id.values()) == [1, 1, 2]


def test_concurrent_calls_from_threads_are_one_event_each(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    """Calls from many threads at once: each thread's call is matched with its own bill."""
    with loopback(numbered_calls()) as url:
        client, _ = _both_paths(tracker, url, install)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: _call(url, client, **(STREAM if n % 2 else {})), range(16)))
        settle(lambda: len(sink.events) == 32)
    paired(sink, 16)


def test_embeddings_billed_by_both_paths_are_one_event(
    tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    """An embeddings response has no id: the wrapped client bills under OpenAI's request id,
    the logger (which would use LiteLLM's call id) takes the wrapped client's identity."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        headers = {"x-request-id": payloads.EMBEDDINGS_REQUEST_ID}
        return payloads.json_response(payloads.EMBEDDINGS, headers)

    with loopback(answer) as url:
        client, _ = _both_paths(tracker, url, install)
        litellm.embedding(
            model="openai/text-embedding-3-small",
            api_base=f"{url}/v1",
            api_key="sk-test",
            input=["hello"],
            client=client,
        )
        settle(lambda: len(sink.events) == 2)
    paired(sink, 1)
    usage = LLMUsage("openai", "embeddings", response_id=payloads.EMBEDDINGS_REQUEST_ID)
    assert sink.events[0].event_id == event_id(usage, NAME)


def test_calls_noted_are_forgotten_on_failure_and_bounded(
    tracker: LLMTracker, install: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed call's run is dropped; runs whose hooks never come are kept up to a bound,
    the oldest dropped first."""
    logger = DodoLiteLLMLogger(tracker, customer_id="cus_1")
    install(logger)
    opened: list[int] = []
    pre_call = logger.log_pre_api_call

    def counting(model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        pre_call(model, messages, kwargs)
        opened.append(len(logger._calls))

    monkeypatch.setattr(logger, "log_pre_api_call", counting)
    failing = loopback(lambda request: httpx2.Response(500, json={"error": {"message": "x"}}))
    with failing as url, pytest.raises(litellm.InternalServerError):
        openai_call(url, num_retries=0)
    assert opened == [1]  # the call's run was noted
    assert current_run.get() is None  # and is no longer current
    settle(lambda: not logger._calls)
    monkeypatch.setattr("dodo_ingest.integrations.litellm._CALLS_KEPT", 3)
    for n in range(5):
        logger.log_pre_api_call("gpt", [], {"litellm_call_id": f"call-{n}"})
    assert list(logger._calls) == ["call-2", "call-3", "call-4"]
    assert current_run.get() is logger._calls["call-4"]
    current_run.set(None)


def test_request_body_is_untouched(tracker: LLMTracker, install: Any) -> None:
    """The logger observes; LiteLLM's request to the provider is what it would be without it."""
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        bodies.append(json.loads(request.content))
        return payloads.chat_stream_for(request)

    with loopback(answer) as url:
        openai_call(url, user="cus_1")
        install(DodoLiteLLMLogger(tracker))
        openai_call(url, user="cus_1")
    assert bodies[0] == bodies[1]


def test_sync_call_in_a_customer_scope(
    api: str, tracker: LLMTracker, sink: RecordingSink, install: Any
) -> None:
    install(DodoLiteLLMLogger(tracker, customer_id="cus_default"))
    with tracker.customer("cus_scope"):
        openai_call(api)
    settle(lambda: len(sink.events) == 1)
    assert sink.only().customer_id == "cus_scope"
