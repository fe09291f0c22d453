"""A wrapped client behaves exactly like the original, and tracking never breaks a call."""

from __future__ import annotations

import itertools
import logging
import socket

import anthropic
import httpx2
import openai
import pytest
import respx
from google import genai

from dodo_ingest import EventValidationError
from dodo_ingest.blueprints.llm import LLMTracker, _openai
from dodo_ingest.delivery import Ingestion

from . import payloads
from .conftest import RecordingSink

MESSAGES = [{"role": "user", "content": "hi"}]
CLAUDE_ARGS: dict[str, object] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 8,
    "messages": MESSAGES,
}


def test_wrap_returns_the_same_object_and_type_name(tracker: LLMTracker) -> None:
    for client in (
        openai.OpenAI(api_key="k"),
        openai.AsyncOpenAI(api_key="k"),
        anthropic.Anthropic(api_key="k"),
        anthropic.AsyncAnthropic(api_key="k"),
    ):
        original_type = type(client)
        wrapped = tracker.wrap(client, customer_id="c")
        assert wrapped is client
        assert isinstance(wrapped, original_type)
        assert type(wrapped).__name__ == original_type.__name__
        assert tracker.wrap(wrapped, customer_id="d") is client  # re-wrapping is harmless
        assert type(client).__mro__[1] is original_type
    gemini = genai.Client(api_key="k")
    assert tracker.wrap(gemini, customer_id="c") is gemini
    assert isinstance(gemini.models, genai.models.Models)
    assert isinstance(gemini.aio.models, genai.models.AsyncModels)


class ProjectOpenAI(openai.OpenAI):
    """A client subclass from another library (as observability wrappers ship)."""


def test_subclasses_of_sdk_clients_are_supported(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(ProjectOpenAI(api_key="k", max_retries=0), customer_id="c")
    assert isinstance(client, ProjectOpenAI)
    client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert sink.only().metadata["provider"] == "openai"


def test_unsupported_client_is_refused(tracker: LLMTracker) -> None:
    with pytest.raises(TypeError, match="supports openai"):
        tracker.wrap(httpx2.Client())


def test_stream_identity_context_manager_and_response(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    assert type(stream) is openai.Stream
    assert isinstance(stream.response, httpx2.Response)
    assert stream.response.headers["x-request-id"] == "req_s"
    with stream as entered:
        assert entered is stream
        chunks = list(entered)
    assert len(chunks) == 4
    assert list(stream) == []  # single pass, as the SDK's own stream
    assert len(sink.events) == 1


def test_results_are_identical_to_an_unwrapped_client(
    tracker: LLMTracker, provider_mock: respx.MockRouter
) -> None:
    plain = openai.OpenAI(api_key="k", max_retries=0)
    wrapped = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    for client_call in (
        lambda c: c.chat.completions.create(model="m", messages=MESSAGES).model_dump(),
        lambda c: [x.model_dump() for x in c.responses.create(model="m", input="x", stream=True)],
        lambda c: c.embeddings.create(model="e", input="x").model_dump(),
    ):
        assert client_call(wrapped) == client_call(plain)
    plain_claude = anthropic.Anthropic(api_key="k", max_retries=0)
    claude = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with (
        claude.messages.stream(**CLAUDE_ARGS) as a,
        plain_claude.messages.stream(**CLAUDE_ARGS) as b,
    ):  # type: ignore[arg-type]
        assert [e.model_dump() for e in a] == [e.model_dump() for e in b]


def test_failing_sink_never_reaches_the_caller(
    sink: RecordingSink,
    tracker: LLMTracker,
    provider_mock: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink.fail_with = RuntimeError("queue exploded")
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    claude = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    gemini = tracker.wrap(genai.Client(api_key="k"), customer_id="c")
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        completion = client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
        with claude.messages.stream(**CLAUDE_ARGS) as stream:  # type: ignore[arg-type]
            text = "".join(stream.text_stream)
        response = gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert completion.id == payloads.CHAT_ID
    assert len(chunks) == 4
    assert text == "Hello there!"
    assert response.text == "Hello there!"
    assert tracker.stats.failures == 4
    assert tracker.stats.events == 0
    assert "queue exploded" in caplog.text


def test_a_failing_stream_reader_leaves_the_stream_untouched(
    tracker: LLMTracker,
    sink: RecordingSink,
    provider_mock: respx.MockRouter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: object, chunk: object) -> bool:
        raise KeyError("unexpected chunk shape")

    monkeypatch.setattr(_openai.ChatStreamUsage, "observe", broken)
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert [len(chunk.choices) for chunk in chunks] == [1, 1, 1, 1]  # usage chunk still hidden
    assert sink.events == []
    assert tracker.stats.failures == 1


def test_a_call_without_customer_succeeds_and_is_counted(
    tracker: LLMTracker, provider_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0))
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        completion = client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.id == payloads.CHAT_ID
    assert tracker.stats.failures == 2
    assert caplog.text.count("without a customer") == 1  # logged once per client


def test_provider_errors_reach_the_caller_unchanged(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/chat/completions").respond(
            429, json={"error": {"message": "slow down", "type": "rate_limit"}}
        )
        with pytest.raises(openai.RateLimitError, match="slow down"):
            client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert sink.events == []
    assert tracker.stats.failures == 0


def test_metadata_is_validated_at_wrap_and_customer(tracker: LLMTracker) -> None:
    client = openai.OpenAI(api_key="k")
    with pytest.raises(EventValidationError, match=r"metadata\.nested"):
        tracker.wrap(client, customer_id="c", metadata={"nested": {"a": 1}})
    with pytest.raises(EventValidationError, match=r"metadata\.inputTokens: reserved"):
        tracker.wrap(client, customer_id="c", metadata={"inputTokens": 1})
    with pytest.raises(EventValidationError, match="customer_id"):
        tracker.wrap(client, customer_id="")
    with pytest.raises(EventValidationError, match=r"metadata\.k"):
        tracker.customer("c", metadata={"k": "x" * 501})
    with pytest.raises(EventValidationError, match="at most 36 keys"):
        tracker.customer("c", metadata={f"k{i}": i for i in range(37)})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unique_ids(request: httpx2.Request) -> httpx2.Response:
    """Chat answers whose response id changes with every call (as the real API's do)."""
    response = payloads.chat_stream_for(request)
    body = response.content.replace(
        payloads.CHAT_ID.encode(), f"chatcmpl-{next(_COUNTER)}".encode()
    )
    return httpx2.Response(200, content=body, headers=response.headers)


_COUNTER = itertools.count()


def test_billing_api_down_llm_calls_still_succeed_unchanged() -> None:
    ingestion = Ingestion(
        api_key="dodo_test_key",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        flush_interval=0.05,
        timeout=0.5,
    )
    with respx.mock() as router:
        router.route(host="127.0.0.1").pass_through()
        router.post("https://api.openai.com/v1/chat/completions").mock(side_effect=_unique_ids)
        _calls_against_a_dead_billing_api(ingestion)


def _calls_against_a_dead_billing_api(ingestion: Ingestion) -> None:
    try:
        tracker = LLMTracker(ingestion)
        plain = openai.OpenAI(api_key="k", max_retries=0)
        client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_1")
        for _ in range(3):
            wrapped = client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            expected = plain.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            assert wrapped.model_dump(exclude={"id"}) == expected.model_dump(exclude={"id"})
            wrapped_chunks = list(
                client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
            )
            plain_chunks = list(
                plain.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
            )
            assert [c.model_dump(exclude={"id"}) for c in wrapped_chunks] == [
                c.model_dump(exclude={"id"}) for c in plain_chunks
            ]
        assert tracker.stats.events == 6
        assert tracker.stats.failures == 0
        assert ingestion.flush(timeout=0.3) is False  # nothing could be delivered
        assert ingestion.stats.enqueued == 6
        assert ingestion.stats.delivered == 0
    finally:
        ingestion.close(timeout=0.2)


def test_wrap_and_customer_metadata_beyond_the_limit(
    tracker: LLMTracker,
    sink: RecordingSink,
    provider_mock: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    customer_keys = {f"c{i}": i for i in range(30)}
    early = tracker.customer("cus_2", metadata=customer_keys)  # no wrapped client yet
    client = tracker.wrap(
        openai.OpenAI(api_key="k", max_retries=0),
        customer_id="cus_1",
        metadata={f"w{i}": i for i in range(30)},
    )
    with pytest.raises(EventValidationError, match="the merge would have 60"):
        tracker.customer("cus_2", metadata=customer_keys)
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        with early:
            for _ in range(2):
                client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(EventValidationError, match="the merge has 60"), early:
            tracker.track(
                openai.types.chat.ChatCompletion.model_validate(payloads.chat_completion()),
                metadata={f"w{i}": i for i in range(30)},
            )
    first, second = sink.metadata()
    assert first == second
    assert {k: v for k, v in first.items() if k in payloads.CHAT_METADATA} == (
        payloads.CHAT_METADATA
    )
    assert len(first) == len(payloads.CHAT_METADATA) + 36
    assert tracker.stats.failures == 2
    assert caplog.text.count("the extra keys were left out") == 1
