"""The real openai SDK (HTTP mocked by respx): every billable path, sync and async."""

from __future__ import annotations

import json

import openai
import pydantic
import pytest
import respx

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import RecordingSink

MESSAGES = [{"role": "user", "content": "hi"}]


class Answer(pydantic.BaseModel):
    answer: str


def sent_body(router: respx.MockRouter, index: int = -1) -> dict[str, object]:
    return json.loads(router.calls[index].request.content)  # type: ignore[no-any-return]


@pytest.fixture
def client(tracker: LLMTracker) -> openai.OpenAI:
    return tracker.wrap(
        openai.OpenAI(api_key="sk-test", max_retries=0), customer_id="cus_1", metadata={"f": "x"}
    )


@pytest.fixture
def aclient(tracker: LLMTracker) -> openai.AsyncOpenAI:
    return tracker.wrap(openai.AsyncOpenAI(api_key="sk-test", max_retries=0), customer_id="cus_1")


def test_chat_create_records_exact_usage(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    completion = client.chat.completions.create(model="gpt-5.4-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.usage is not None
    assert completion.usage.total_tokens == 1163
    event = sink.only()
    assert event.customer_id == "cus_1"
    assert event.event_name == "llm.chat_completion"
    assert event.metadata == {**payloads.CHAT_METADATA, "f": "x"}
    assert event.event_id is not None
    assert event.event_id.startswith("llm_")


def test_chat_stream_injects_include_usage_and_hides_the_usage_chunk(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    plain = openai.OpenAI(api_key="sk-test", max_retries=0)
    expected = [
        c.model_dump()
        for c in plain.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    ]
    assert "stream_options" not in sent_body(provider_mock)

    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    seen = [c.model_dump() for c in stream]
    assert sent_body(provider_mock)["stream_options"] == {"include_usage": True}
    assert seen == expected
    assert all(chunk["choices"] for chunk in seen)
    assert sink.only().metadata == {**payloads.STREAM_METADATA, "f": "x"}


def test_chat_stream_keeps_usage_chunk_the_caller_asked_for(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    stream = client.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[call-overload]
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 22
    assert sink.only().metadata["totalTokens"] == 22


def test_stream_options_of_the_caller_are_kept(
    client: openai.OpenAI, provider_mock: respx.MockRouter
) -> None:
    list(
        client.chat.completions.create(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_obfuscation": False},
        )
    )
    assert sent_body(provider_mock)["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }


def test_injection_can_be_turned_off(sink: RecordingSink, provider_mock: respx.MockRouter) -> None:
    tracker = LLMTracker(sink, inject_stream_usage=False)
    client = tracker.wrap(openai.OpenAI(api_key="sk", max_retries=0), customer_id="cus_1")
    list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert "stream_options" not in sent_body(provider_mock)
    assert sink.only().metadata == {
        "provider": "openai",
        "operation": "chat.completions",
        "model": payloads.OPENAI_MODEL,
        "status": "incomplete",
        "usageSource": "incomplete",
    }


def test_chat_parse_is_tracked(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    parsed = client.chat.completions.parse(model="m", messages=MESSAGES, response_format=Answer)  # type: ignore[arg-type]
    assert parsed.choices[0].message.parsed == Answer(answer="Hello")
    assert sink.only().metadata["inputTokens"] == 1117


def test_chat_stream_helper_tracks_once_and_stays_transparent(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:  # type: ignore[arg-type]
        text = "".join(event.delta for event in stream if event.type == "content.delta")
        final = stream.get_final_completion()
    assert text == "Hello there!"
    assert final.usage is None  # as without the tracker: the caller did not ask for usage
    assert sink.only().metadata["totalTokens"] == 22


def test_responses_create_stream_parse_and_helper(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    response = client.responses.create(model="m", input="hi")
    assert response.usage is not None
    assert response.usage.total_tokens == 2348
    events = list(client.responses.create(model="m", input="hi", stream=True))
    assert events[-1].type == "response.completed"
    parsed = client.responses.parse(model="m", input="hi", text_format=Answer)
    assert parsed.output_parsed == Answer(answer="Hello")
    with client.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    assert final.usage is not None
    assert sink.metadata() == [payloads.RESPONSES_METADATA | {"f": "x"}] * 4
    assert len({e.event_id for e in sink.events}) == 1  # one response id, one event id


def test_legacy_completions(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client.completions.create(model="gpt-3.5", prompt="hi")
    chunks = list(client.completions.create(model="gpt-3.5", prompt="hi", stream=True))
    assert all(chunk.choices for chunk in chunks)
    assert sent_body(provider_mock)["stream_options"] == {"include_usage": True}
    expected = {
        "provider": "openai",
        "usageSource": "provider",
        "operation": "completions",
        "model": "gpt-3.5",
        "inputTokens": 5,
        "outputTokens": 2,
        "totalTokens": 7,
        "f": "x",
    }
    assert sink.metadata() == [expected, expected]


def test_embeddings_use_the_request_id(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert len(result.data[0].embedding) == 4
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    first, second = sink.events
    assert first.metadata == {
        "provider": "openai",
        "usageSource": "provider",
        "operation": "embeddings",
        "model": "text-embedding-3-small",
        "inputTokens": 8,
        "outputTokens": 0,
        "totalTokens": 8,
        "f": "x",
    }
    assert first.event_id == second.event_id  # same x-request-id in the mock


def test_images_and_transcriptions(client: openai.OpenAI, sink: RecordingSink) -> None:
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/images/generations").respond(
            200, json=payloads.IMAGES, headers={"x-request-id": "req_img"}
        )
        router.post("https://api.openai.com/v1/audio/transcriptions").respond(
            200, json=payloads.TRANSCRIPTION, headers={"x-request-id": "req_tr"}
        )
        client.images.generate(model="gpt-image-1", prompt="a cat")
        transcript = client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", b"RIFF0000WAVE")
        )
    assert transcript.text == "Hello there."
    assert sink.metadata() == [
        {
            "provider": "openai",
            "usageSource": "provider",
            "operation": "images",
            "model": "gpt-image-1",
            "inputTokens": 50,
            "outputTokens": 4160,
            "totalTokens": 4210,
            "imageInputTokens": 40,  # image input tokens are priced apart
            "imagesGenerated": 1,
            "f": "x",
        },
        {
            "provider": "openai",
            "usageSource": "provider",
            "operation": "audio.transcriptions",
            "model": "gpt-4o-transcribe",
            "inputTokens": 14,
            "outputTokens": 4,
            "totalTokens": 18,
            "audioInputTokens": 14,
            "f": "x",
        },
    ]


def test_with_raw_response_non_stream_and_stream(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.headers["x-request-id"] == "req_chat"
    completion = raw.parse()
    assert completion.usage is not None
    assert completion.usage.total_tokens == 1163
    raw_stream = client.chat.completions.with_raw_response.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw_stream.parse())
    assert chunks[-1].usage is not None
    assert [m["totalTokens"] for m in sink.metadata()] == [1163, 22]


def test_with_streaming_response_tracks_on_parse(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
    ) as response:
        assert sink.events == []
        completion = response.parse()
    assert completion.usage is not None
    assert sink.only().metadata["totalTokens"] == 1163


def test_with_options_copies_stay_tracked(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    copy = client.with_options(timeout=5).copy(max_retries=1)
    assert isinstance(copy, openai.OpenAI)
    copy.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert sink.only().metadata["f"] == "x"


def test_beta_paths(
    client: openai.OpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client.beta.chat.completions.parse(model="m", messages=MESSAGES, response_format=Answer)  # type: ignore[attr-defined,arg-type]
    assert [m["operation"] for m in sink.metadata()] == ["chat.completions"]


def test_non_billable_calls_are_ignored(client: openai.OpenAI, sink: RecordingSink) -> None:
    with respx.mock() as router:
        router.get("https://api.openai.com/v1/models").respond(
            200, json={"object": "list", "data": []}
        )
        router.get(url__regex=r"/v1/chat/completions/chatcmpl-1$").respond(
            200, json=payloads.chat_completion()
        )
        client.models.list()
        client.chat.completions.retrieve("chatcmpl-1")
    assert sink.events == []


def test_azure_client(tracker: LLMTracker, sink: RecordingSink) -> None:
    azure = tracker.wrap(
        openai.AzureOpenAI(
            api_key="k",
            api_version="2025-04-01-preview",
            azure_endpoint="https://acme.openai.azure.com",
            max_retries=0,
        ),
        customer_id="cus_az",
    )
    assert isinstance(azure, openai.AzureOpenAI)
    with respx.mock() as router:
        route = router.post(
            url__regex=r"^https://acme\.openai\.azure\.com/openai/deployments/gpt-4o/chat/completions"
        ).mock(side_effect=payloads.chat_stream_for)
        azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        list(azure.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
        route.mock(side_effect=lambda request: payloads.sse_response(_azure_stream_frames()))
        chunks = list(
            azure.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        )
    assert route.call_count == 3
    assert chunks[0].choices == []  # the prompt-filter chunk reaches the caller; usage does not
    assert all(chunk.usage is None for chunk in chunks)
    assert [(m["provider"], m["totalTokens"]) for m in sink.metadata()] == [
        ("azure_openai", 1163),
        ("azure_openai", 22),
        ("azure_openai", 22),
    ]
    assert sink.events[1].event_id == sink.events[2].event_id  # keyed by the chunk id, not ""


def _azure_stream_frames() -> list[dict[str, object] | str]:
    """Azure starts streams with an id-less, choice-less chunk of prompt filter results."""
    filters = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    return [filters, *payloads.chat_chunks(with_usage=True)]


def test_openrouter_cost_and_cache_writes(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="https://openrouter.ai/api/v1", max_retries=0),
        customer_id="cus_or",
    )
    with respx.mock() as router:
        router.post("https://openrouter.ai/api/v1/chat/completions").respond(
            200, json=payloads.OPENROUTER
        )
        client.chat.completions.create(model="anthropic/claude-sonnet-4.6", messages=MESSAGES)  # type: ignore[arg-type]
    assert sink.only().metadata == {
        "provider": "openrouter",
        "usageSource": "provider",
        "operation": "chat.completions",
        "model": "anthropic/claude-sonnet-4.6",
        "inputTokens": 194,
        "outputTokens": 2,
        "totalTokens": 196,
        "cachedInputTokens": 0,
        "cacheCreationInputTokens": 100,
        "reasoningTokens": 0,
        "costUsd": 0.000612,
    }


def test_groq_usage_in_x_groq_through_the_openai_client(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="https://api.groq.com/openai/v1", max_retries=0),
        customer_id="cus_g",
    )
    with respx.mock() as router:
        router.post("https://api.groq.com/openai/v1/chat/completions").mock(
            side_effect=lambda request: payloads.sse_response(payloads.groq_chunks())
        )
        chunks = list(
            client.chat.completions.create(model="llama", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
        )
    assert len(chunks) == 3
    assert sink.only().metadata == {
        "provider": "groq",
        "usageSource": "provider",
        "operation": "chat.completions",
        "model": payloads.GROQ_MODEL,
        "inputTokens": 41,
        "outputTokens": 3,
        "totalTokens": 44,
    }


def test_compatible_server_sending_running_usage_on_every_chunk_is_not_summed(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="https://api.x.ai/v1", max_retries=0),
        customer_id="cus_x",
    )
    frames: list[dict[str, object] | str] = []
    for n, chunk in enumerate(payloads.chat_chunks(with_usage=False)[:-1], start=1):
        assert isinstance(chunk, dict)
        usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
        frames.append({**chunk, "usage": usage})
    frames.append("[DONE]")
    with respx.mock() as router:
        router.post("https://api.x.ai/v1/chat/completions").mock(
            side_effect=lambda request: payloads.sse_response(frames)
        )
        chunks = list(client.chat.completions.create(model="grok", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert len(chunks) == 4
    assert sink.only().metadata["outputTokens"] == 4
    assert sink.only().metadata["provider"] == "xai"


# ------------------------------------------------------------------------------ async


@pytest.mark.anyio
async def test_async_chat_create_stream_parse_helper(
    aclient: openai.AsyncOpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    await aclient.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    parsed = await aclient.chat.completions.parse(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
        response_format=Answer,
    )
    assert parsed.choices[0].message.parsed == Answer(answer="Hello")
    async with aclient.chat.completions.stream(model="m", messages=MESSAGES) as helper:  # type: ignore[arg-type]
        await helper.get_final_completion()
    assert [m["totalTokens"] for m in sink.metadata()] == [1163, 22, 1163, 22]


@pytest.mark.anyio
async def test_async_responses_embeddings_and_raw(
    aclient: openai.AsyncOpenAI, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    await aclient.responses.create(model="m", input="hi")
    events = [e async for e in await aclient.responses.create(model="m", input="hi", stream=True)]
    assert events[-1].type == "response.completed"
    async with aclient.responses.stream(model="m", input="hi") as stream:
        await stream.get_final_response()
    await aclient.embeddings.create(model="e", input="x")
    raw = await aclient.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.parse().id == payloads.CHAT_ID
    async with aclient.chat.completions.with_streaming_response.create(
        model="m",
        messages=MESSAGES,  # type: ignore[arg-type]
    ) as response:
        await response.parse()
    copy = aclient.with_options(timeout=3)
    await copy.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert [m["operation"] for m in sink.metadata()] == [
        "responses",
        "responses",
        "responses",
        "embeddings",
        "chat.completions",
        "chat.completions",
        "chat.completions",
    ]


def test_background_responses_and_responses_without_usage(
    client: openai.OpenAI,
    tracker: LLMTracker,
    sink: RecordingSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queued = payloads.response_object("queued")
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/responses").respond(200, json=queued)
        router.post("https://api.openai.com/v1/chat/completions").respond(
            200, json={**payloads.chat_completion(), "usage": None}
        )
        assert client.responses.create(model="m", input="hi", background=True).status == "queued"
        assert tracker.stats.failures == 0  # billed later, with tracker.track(), once done
        with caplog.at_level("WARNING", logger="dodo_ingest"):
            for _ in range(2):
                client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert sink.events == []
    assert tracker.stats.failures == 2
    assert caplog.text.count("response without usage") == 1


def test_old_azure_api_versions_get_no_stream_options(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    azure = tracker.wrap(
        openai.AzureOpenAI(
            api_key="k", api_version="2024-06-01", azure_endpoint="https://old.openai.azure.com"
        ),
        customer_id="cus_az",
    )
    with respx.mock() as router:
        router.post(url__regex=r"/openai/deployments/gpt-4o/chat/completions").mock(
            side_effect=payloads.chat_stream_for
        )
        list(azure.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
        assert "stream_options" not in sent_body(router)
    assert sink.only().metadata["status"] == "incomplete"


def test_transcription_stream_image_edit_and_compaction(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    done_usage = {"type": "tokens", "input_tokens": 20, "output_tokens": 5, "total_tokens": 25}
    transcript_events: list[dict[str, object] | str] = [
        {"type": "transcript.text.delta", "delta": "Hello"},
        {"type": "transcript.text.done", "text": "Hello", "usage": done_usage},
    ]
    compacted = {
        "id": "cmp_1",
        "object": "response.compaction",
        "created_at": 1767225900,
        "output": [],
        "usage": payloads.RESPONSES_USAGE,
    }
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/audio/transcriptions").mock(
            side_effect=lambda request: payloads.sse_response(
                transcript_events, headers={"x-request-id": "req_tr_s"}
            )
        )
        router.post("https://api.openai.com/v1/images/edits").respond(200, json=payloads.IMAGES)
        router.post("https://api.openai.com/v1/responses/compact").respond(200, json=compacted)
        events = list(
            client.audio.transcriptions.create(
                model="gpt-4o-transcribe", file=("a.wav", b"RIFF0000WAVE"), stream=True
            )
        )
        client.images.edit(model="gpt-image-1", image=("a.png", b"\x89PNG"), prompt="a hat")
        client.responses.compact(model="gpt-5.4-mini", input="long history")
    assert [event.type for event in events] == ["transcript.text.delta", "transcript.text.done"]
    assert [(m["operation"], m["totalTokens"]) for m in sink.metadata()] == [
        ("audio.transcriptions", 25),
        ("images", 4210),
        ("responses", 2348),
    ]


def test_image_generation_stream(client: openai.OpenAI, sink: RecordingSink) -> None:
    completed = {
        "type": "image_generation.completed",
        "b64_json": "aGVsbG8=",
        "created_at": 1767225800,
        "size": "1024x1024",
        "quality": "low",
        "background": "opaque",
        "output_format": "png",
        "usage": payloads.IMAGES["usage"],
    }
    partial = {
        "type": "image_generation.partial_image",
        "b64_json": "aGk=",
        "created_at": 1767225800,
        "size": "1024x1024",
        "quality": "low",
        "background": "opaque",
        "output_format": "png",
        "partial_image_index": 0,
    }
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/images/generations").mock(
            side_effect=lambda request: payloads.sse_response(
                [partial, completed], named=True, headers={"x-request-id": "req_img_s"}
            )
        )
        events = list(client.images.generate(model="gpt-image-1", prompt="cat", stream=True))
    assert [event.type for event in events] == [
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert sink.only().metadata["totalTokens"] == 4210


def test_parse_that_fails_on_a_truncated_answer_is_still_billed(
    client: openai.OpenAI, sink: RecordingSink
) -> None:
    truncated = payloads.chat_completion()
    truncated["choices"][0]["finish_reason"] = "length"
    truncated["choices"][0]["message"]["content"] = '{"answer": "He'
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/chat/completions").respond(200, json=truncated)
        with pytest.raises(openai.LengthFinishReasonError) as raised:
            client.chat.completions.parse(model="m", messages=MESSAGES, response_format=Answer)  # type: ignore[arg-type]
        raw = client.chat.completions.with_raw_response.parse(
            model="m",
            messages=MESSAGES,  # type: ignore[arg-type]
            response_format=Answer,
        )
        with pytest.raises(openai.LengthFinishReasonError):
            raw.parse()
    assert raised.value.completion.usage is not None
    assert sink.metadata() == [{**payloads.CHAT_METADATA, "f": "x"}] * 2
    cut = payloads.response_object("incomplete", payloads.RESPONSES_USAGE)
    cut["output"][0]["content"][0]["text"] = '{"answer": "He'
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/responses").respond(200, json=cut)
        with pytest.raises(pydantic.ValidationError):
            client.responses.parse(model="m", input="hi", text_format=Answer)
    assert sink.metadata()[2] == {**payloads.RESPONSES_METADATA, "f": "x"}
