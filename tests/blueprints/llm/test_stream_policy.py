"""Abandoned and failed streams, per provider: what is known is recorded, marked incomplete,
exactly once, and the caller sees the same stream and the same exception as without tracking."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx2
import openai
import pytest
import respx
from google import genai

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import RecordingSink

MESSAGES = [{"role": "user", "content": "hi"}]
CLAUDE_ARGS: dict[str, object] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": MESSAGES,
}
CHAT_INCOMPLETE = {
    "provider": "openai",
    "operation": "chat.completions",
    "model": payloads.OPENAI_MODEL,
    "status": "incomplete",
    "usageSource": "incomplete",
}


class BrokenBody(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body that fails after ``good`` bytes, like a connection reset mid-stream."""

    def __init__(self, body: bytes, good: int) -> None:
        self.body = body
        self.good = good

    def __iter__(self) -> Iterator[bytes]:
        yield self.body[: self.good]
        raise httpx2.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[: self.good]
        raise httpx2.ReadError("connection reset by peer")


@pytest.fixture
def oai(tracker: LLMTracker) -> openai.OpenAI:
    return tracker.wrap(openai.OpenAI(api_key="sk", max_retries=0), customer_id="cus_1")


@pytest.fixture
def claude(tracker: LLMTracker) -> anthropic.Anthropic:
    return tracker.wrap(anthropic.Anthropic(api_key="sk", max_retries=0), customer_id="cus_1")


# ------------------------------------------------------------------------------ OpenAI


def test_openai_break_then_close_records_incomplete_once(
    oai: openai.OpenAI, sink: RecordingSink, tracker: LLMTracker, provider_mock: respx.MockRouter
) -> None:
    stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    for _ in stream:
        break
    assert sink.events == []  # a break alone is not final: the caller may resume
    stream.close()
    stream.close()
    assert sink.only().metadata == CHAT_INCOMPLETE
    assert tracker.stats.incomplete == 1


def test_openai_with_block_exit_after_break_records_incomplete(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with oai.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:  # type: ignore[call-overload]
        first = next(stream)
    assert first.choices[0].delta.role == "assistant"
    assert sink.only().metadata == CHAT_INCOMPLETE


def test_openai_resumed_stream_after_break_is_complete(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    for _ in stream:
        break
    rest = list(stream)
    assert len(rest) == 3
    assert sink.only().metadata == payloads.STREAM_METADATA


def test_openai_stream_helpers_exited_early_record_incomplete_at_exit(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with oai.chat.completions.stream(model="m", messages=MESSAGES) as chat:  # type: ignore[arg-type]
        for event in chat:
            if event.type == "content.delta":
                break
    assert sink.metadata() == [CHAT_INCOMPLETE]
    with oai.responses.stream(model="m", input="hi") as responses:
        for event in responses:
            if event.type == "response.output_text.delta":
                break
    assert sink.metadata()[1]["status"] == "incomplete"
    assert len(sink.events) == 2


def test_openai_abandoned_stream_is_recorded_when_collected(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    next(stream)
    del stream
    gc.collect()
    assert sink.only().metadata == CHAT_INCOMPLETE


def test_openai_error_event_mid_stream(oai: openai.OpenAI, sink: RecordingSink) -> None:
    frames = payloads.chat_chunks(with_usage=True)[:2]
    frames.append({"error": {"message": "server overloaded", "type": "server_error"}})
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/chat/completions").mock(
            side_effect=lambda request: payloads.sse_response(frames)
        )
        stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        received = []
        with pytest.raises(openai.APIError, match="server overloaded"):
            received.extend(stream)
    assert len(received) == 2
    assert sink.only().metadata == CHAT_INCOMPLETE


def test_openai_connection_reset_mid_stream(oai: openai.OpenAI, sink: RecordingSink) -> None:
    body = payloads.sse_response(payloads.chat_chunks(with_usage=True)).content
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/chat/completions").mock(
            side_effect=lambda request: httpx2.Response(200, stream=BrokenBody(body, 700))
        )
        stream = oai.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        with pytest.raises(openai.APIConnectionError):
            list(stream)
    assert sink.only().metadata == CHAT_INCOMPLETE


def test_openai_responses_break_before_terminal_event(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with oai.responses.create(model="m", input="hi", stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    event = sink.only()
    assert event.metadata == {
        "provider": "openai",
        "operation": "responses",
        "model": payloads.OPENAI_MODEL,
        "status": "incomplete",
        "usageSource": "incomplete",
    }


def test_background_response_closed_early_leaves_its_id_to_the_final_bill(
    oai: openai.OpenAI, sink: RecordingSink, tracker: LLMTracker, provider_mock: respx.MockRouter
) -> None:
    with oai.responses.create(model="m", input="hi", stream=True, background=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                break
    done = openai.types.responses.Response.model_validate(
        payloads.response_object("completed", payloads.RESPONSES_USAGE)
    )
    ids = tracker.track(done, customer_id="cus_1")
    incomplete, billed = sink.events
    assert incomplete.metadata["status"] == "incomplete"
    assert billed.metadata == payloads.RESPONSES_METADATA
    assert ids == [billed.event_id]
    assert billed.event_id != incomplete.event_id
    assert tracker.track(done, customer_id="cus_1") == ids  # the final bill stays idempotent


def test_openai_responses_incomplete_terminal_event_is_billed_in_full(
    oai: openai.OpenAI, sink: RecordingSink
) -> None:
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/responses").mock(
            side_effect=lambda request: payloads.sse_response(
                payloads.responses_events(terminal="response.incomplete"), named=True
            )
        )
        list(oai.responses.create(model="m", input="hi", stream=True))
    assert sink.only().metadata == payloads.RESPONSES_METADATA


@pytest.mark.anyio
async def test_openai_async_break_then_aclose(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(openai.AsyncOpenAI(api_key="sk", max_retries=0), customer_id="cus_1")
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    async for _ in stream:
        break
    assert sink.events == []
    await stream.aclose()
    assert sink.only().metadata == CHAT_INCOMPLETE
    async with client.chat.completions.stream(model="m", messages=MESSAGES) as helper:  # type: ignore[arg-type]
        async for _ in helper:
            break
    assert sink.metadata() == [CHAT_INCOMPLETE, CHAT_INCOMPLETE]


# --------------------------------------------------------------------------- Anthropic

ANTHROPIC_INCOMPLETE = {
    "provider": "anthropic",
    "operation": "messages",
    "model": payloads.CLAUDE,
    "inputTokens": 1496,
    "cachedInputTokens": 1024,
    "cacheCreationInputTokens": 0,
    "status": "incomplete",
    "usageSource": "incomplete",
}


def test_anthropic_break_after_message_start_never_uses_the_placeholder(
    claude: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with claude.messages.create(**CLAUDE_ARGS, stream=True) as stream:  # type: ignore[call-overload]
        for event in stream:
            if event.type == "content_block_delta":
                break
    assert sink.only().metadata == ANTHROPIC_INCOMPLETE


def test_anthropic_stream_helper_exited_early(
    claude: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with claude.messages.stream(**CLAUDE_ARGS) as stream:  # type: ignore[arg-type]
        for text in stream.text_stream:
            assert text == "Hello"
            break
    assert sink.only().metadata == ANTHROPIC_INCOMPLETE


@pytest.mark.anyio
async def test_anthropic_async_stream_helper_exited_early(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(anthropic.AsyncAnthropic(api_key="sk", max_retries=0), customer_id="c")
    async with client.messages.stream(**CLAUDE_ARGS) as stream:  # type: ignore[arg-type]
        async for _ in stream.text_stream:
            break
    assert sink.only().metadata == ANTHROPIC_INCOMPLETE


def test_anthropic_error_event_mid_stream(claude: anthropic.Anthropic, sink: RecordingSink) -> None:
    with respx.mock() as router:
        router.post("https://api.anthropic.com/v1/messages").mock(
            side_effect=lambda request: payloads.sse_response(
                list(payloads.anthropic_events(error_after_start=True)), named=True
            )
        )
        with (
            pytest.raises(anthropic.APIStatusError, match="busy"),
            claude.messages.stream(**CLAUDE_ARGS) as stream,  # type: ignore[arg-type]
        ):
            stream.get_final_message()
    assert sink.only().metadata == ANTHROPIC_INCOMPLETE


def test_anthropic_abandoned_stream_is_recorded_when_dropped(
    claude: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    stream = claude.messages.create(**CLAUDE_ARGS, stream=True)  # type: ignore[call-overload]
    next(stream)
    del stream
    gc.collect()
    assert sink.only().metadata == ANTHROPIC_INCOMPLETE


# ------------------------------------------------------------------------------ Gemini

GEMINI_INCOMPLETE = {
    "provider": "google",
    "operation": "generate_content",
    "model": payloads.GEMINI,
    "inputTokens": 9,
    "outputTokens": 64,
    "totalTokens": 73,
    "reasoningTokens": 64,
    "status": "incomplete",
    "usageSource": "incomplete",
}


def test_gemini_break_records_the_last_running_total(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(genai.Client(api_key="k"), customer_id="cus_1")
    for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
        assert chunk.text == "Hello"
        break
    assert sink.only().metadata == GEMINI_INCOMPLETE


def test_gemini_connection_reset_mid_stream(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(genai.Client(api_key="k"), customer_id="cus_1")
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in payloads.gemini_chunks())
    good = body.index(b"data:", 10)
    with respx.mock() as router:
        router.post(url__regex=r":streamGenerateContent").mock(
            side_effect=lambda request: httpx2.Response(200, stream=BrokenBody(body, good))
        )
        received = []
        with pytest.raises(httpx2.ReadError):
            received.extend(
                client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
            )
    assert len(received) == 1
    assert sink.only().metadata == GEMINI_INCOMPLETE


@pytest.mark.anyio
async def test_gemini_async_break(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(genai.Client(api_key="k"), customer_id="cus_1")
    stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="x")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(10):  # asyncio finalises the inner async generator on a later loop turn
        if sink.events:
            break
        await asyncio.sleep(0)
    assert sink.only().metadata == GEMINI_INCOMPLETE


def test_raw_response_streams_are_not_modified(
    oai: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    assert "stream_options" not in json.loads(provider_mock.calls[-1].request.content)
    assert len(list(raw.parse())) == 4
    assert sink.only().metadata == CHAT_INCOMPLETE  # the caller did not ask for usage
