"""The real anthropic SDK (HTTP mocked by respx): messages, streams, helpers, beta; sync and async."""

from __future__ import annotations

import json

import anthropic
import pydantic
import pytest
import respx

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import RecordingSink

ARGS: dict[str, object] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


class Answer(pydantic.BaseModel):
    answer: str


@pytest.fixture
def client(tracker: LLMTracker) -> anthropic.Anthropic:
    return tracker.wrap(anthropic.Anthropic(api_key="sk-ant", max_retries=0), customer_id="cus_a")


@pytest.fixture
def aclient(tracker: LLMTracker) -> anthropic.AsyncAnthropic:
    return tracker.wrap(anthropic.AsyncAnthropic(api_key="sk-ant", max_retries=0))


def test_create_counts_cache_reads_and_writes_as_input(
    client: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    message = client.messages.create(**ARGS)  # type: ignore[call-overload]
    assert message.usage.input_tokens == 12  # the caller's object is untouched
    event = sink.only()
    assert event.customer_id == "cus_a"
    assert event.metadata == payloads.ANTHROPIC_METADATA


def test_stream_takes_input_from_start_and_output_from_last_delta(
    client: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with client.messages.create(**ARGS, stream=True) as stream:  # type: ignore[call-overload]
        assert isinstance(stream, anthropic.Stream)
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert sink.only().metadata == payloads.ANTHROPIC_STREAM_METADATA


def test_stream_helper_text_stream_and_final_message(
    client: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with client.messages.stream(**ARGS) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there!"
    assert final.usage.output_tokens == 89
    assert stream.request_id == "req_ant_1"
    assert sink.only().metadata == payloads.ANTHROPIC_STREAM_METADATA


def test_parse_beta_and_raw_response(
    client: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    parsed = client.messages.parse(**ARGS, output_format=Answer)  # type: ignore[arg-type]
    assert parsed.parsed_output == Answer(answer="Hello")
    client.beta.messages.create(**ARGS, betas=["context-1m-2025-08-07"])  # type: ignore[call-overload]
    assert provider_mock.calls[-1].request.headers["anthropic-beta"] == "context-1m-2025-08-07"
    raw = client.messages.with_raw_response.create(**ARGS)  # type: ignore[call-overload]
    assert raw.parse().id == payloads.MSG_ID
    with client.messages.with_streaming_response.create(**ARGS) as response:  # type: ignore[call-overload]
        response.parse()
    copy = client.with_options(timeout=9)
    copy.messages.create(**ARGS)  # type: ignore[call-overload]
    assert sink.metadata() == [payloads.ANTHROPIC_METADATA] * 5


def test_count_tokens_is_not_billed(client: anthropic.Anthropic, sink: RecordingSink) -> None:
    with respx.mock() as router:
        router.post("https://api.anthropic.com/v1/messages/count_tokens").respond(
            200, json={"input_tokens": 10}
        )
        client.messages.count_tokens(model="claude-sonnet-4-6", messages=ARGS["messages"])  # type: ignore[arg-type]
    assert sink.events == []


def test_beta_compaction_iterations_are_added(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    message = payloads.anthropic_message()
    message["usage"] = {
        "input_tokens": 100,
        "output_tokens": 20,
        "iterations": [
            {"type": "compaction", "input_tokens": 5000, "output_tokens": 300},
            {"type": "message", "input_tokens": 100, "output_tokens": 20},
        ],
    }
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages(\?beta=true)?$").respond(200, json=message)
        client.beta.messages.create(**ARGS)  # type: ignore[call-overload]
    metadata = sink.only().metadata
    assert (metadata["inputTokens"], metadata["outputTokens"]) == (5100, 320)


def test_stream_with_cache_counts_only_on_message_delta(
    client: anthropic.Anthropic, sink: RecordingSink
) -> None:
    events = payloads.anthropic_events()
    start_usage = events[0]["message"]["usage"]  # type: ignore[index]
    start_usage.pop("cache_read_input_tokens")  # some gateways report cache use only at the end
    with respx.mock() as router:
        router.post("https://api.anthropic.com/v1/messages").mock(
            side_effect=lambda request: payloads.sse_response(list(events), named=True)
        )
        list(client.messages.create(**ARGS, stream=True))  # type: ignore[call-overload]
    assert sink.only().metadata == payloads.ANTHROPIC_STREAM_METADATA


@pytest.mark.anyio
async def test_async_create_stream_helper_parse(
    aclient: anthropic.AsyncAnthropic,
    tracker: LLMTracker,
    sink: RecordingSink,
    provider_mock: respx.MockRouter,
) -> None:
    async with tracker.customer("cus_async", metadata={"team": "a"}):
        await aclient.messages.create(**ARGS)  # type: ignore[call-overload]
        stream = await aclient.messages.create(**ARGS, stream=True)  # type: ignore[call-overload]
        async with stream:
            assert isinstance(stream, anthropic.AsyncStream)
            [event async for event in stream]
        async with aclient.messages.stream(**ARGS) as helper:  # type: ignore[arg-type]
            text = "".join([t async for t in helper.text_stream])
        await aclient.messages.parse(**ARGS, output_format=Answer)  # type: ignore[arg-type]
        await aclient.beta.messages.create(**ARGS)  # type: ignore[call-overload]
    assert text == "Hello there!"
    assert {e.customer_id for e in sink.events} == {"cus_async"}
    assert [e.metadata for e in sink.events] == [
        {**payloads.ANTHROPIC_METADATA, "team": "a"},
        {**payloads.ANTHROPIC_STREAM_METADATA, "team": "a"},
        {**payloads.ANTHROPIC_STREAM_METADATA, "team": "a"},
        {**payloads.ANTHROPIC_METADATA, "team": "a"},
        {**payloads.ANTHROPIC_METADATA, "team": "a"},
    ]
    assert json.loads(provider_mock.calls[1].request.content)["stream"] is True


def test_raw_response_stream(
    client: anthropic.Anthropic, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    raw = client.messages.with_raw_response.create(**ARGS, stream=True)  # type: ignore[call-overload]
    assert raw.headers["request-id"] == "req_ant_1"
    assert [event.type for event in raw.parse()][-1] == "message_stop"
    assert sink.only().metadata == payloads.ANTHROPIC_STREAM_METADATA


@pytest.mark.anyio
async def test_parse_of_a_truncated_answer_is_billed_and_raises_unchanged(
    tracker: LLMTracker,
    client: anthropic.Anthropic,
    aclient: anthropic.AsyncAnthropic,
    sink: RecordingSink,
) -> None:
    truncated = {**payloads.anthropic_message('{"answer": "He'), "stop_reason": "max_tokens"}
    with respx.mock() as router:
        router.post(url__regex=r"^https://api\.anthropic\.com/v1/messages").respond(
            200, json=truncated
        )
        with pytest.raises(pydantic.ValidationError):
            client.messages.parse(**ARGS, output_format=Answer)  # type: ignore[arg-type]
        with pytest.raises(pydantic.ValidationError):
            async with tracker.customer("cus_1"):
                await aclient.messages.parse(**ARGS, output_format=Answer)  # type: ignore[arg-type]
    assert sink.metadata() == [payloads.ANTHROPIC_METADATA] * 2
