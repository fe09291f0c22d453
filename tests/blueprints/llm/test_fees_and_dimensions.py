"""Tool and server fees, and the dimensions that set a price (service tier, cache lifetime),
as event keys and in ``Price`` (real SDKs, HTTP mocked by respx; payloads checked against the
SDK's own response models)."""

from __future__ import annotations

import copy
import itertools
import warnings
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import respx
from anthropic.types import Message
from google import genai
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from dodo_ingest import EventValidationError
from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage, Price

from . import payloads
from .conftest import RecordingSink
from .test_exactness import verified

MESSAGES: Any = [{"role": "user", "content": "hi"}]
WEB_SEARCH_CALL = {
    "id": "ws_1",
    "type": "web_search_call",
    "status": "completed",
    "action": {"type": "search", "query": "weather"},
}
FILE_SEARCH_CALL = {
    "id": "fs_1",
    "type": "file_search_call",
    "status": "completed",
    "queries": ["refund policy"],
    "results": None,
}
NO_IMAGES = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}
ANTHROPIC_TOOLS_USAGE = {
    "input_tokens": 100,
    "cache_creation_input_tokens": 3000,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    "output_tokens": 50,
    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
    "service_tier": "priority",
    "inference_geo": "us",
}


def _anthropic_body(usage: dict[str, Any]) -> dict[str, Any]:
    return verified(Message, {**payloads.anthropic_message(), "usage": usage})


def test_anthropic_server_tools_cache_lifetimes_and_tier(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").respond(
            200, json=_anthropic_body(ANTHROPIC_TOOLS_USAGE)
        )
        message = client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    metadata = sink.only().metadata
    assert {key: metadata.get(key) for key in FEE_AND_DIMENSION_KEYS} == {
        "webSearchRequests": 3,
        "webFetchRequests": 1,
        "cacheWrite5mTokens": 1000,
        "cacheWrite1hTokens": 2000,
        "cacheCreationInputTokens": 3000,
        "inputTokens": 3100,
        "serviceTier": "priority",
        "inferenceGeo": "us",
        "fileSearchCalls": None,
        "groundingQueries": None,
    }
    assert tracker.track(message, customer_id="c") == [sink.events[0].event_id]
    assert sink.events[1].metadata == metadata  # manual tracking reads the same keys


FEE_AND_DIMENSION_KEYS = (
    "webSearchRequests",
    "webFetchRequests",
    "cacheWrite5mTokens",
    "cacheWrite1hTokens",
    "cacheCreationInputTokens",
    "inputTokens",
    "serviceTier",
    "inferenceGeo",
    "fileSearchCalls",
    "groundingQueries",
)


def test_anthropic_stream_reads_fees_from_message_delta(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    frames = payloads.anthropic_events()
    frames[0]["message"]["usage"]["cache_creation"] = {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 0,
    }
    frames[0]["message"]["usage"]["service_tier"] = "standard"
    delta = next(frame for frame in frames if frame["type"] == "message_delta")
    delta["usage"]["server_tool_use"] = {"web_search_requests": 2, "web_fetch_requests": 0}
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").mock(
            side_effect=lambda request: payloads.sse_response(frames, named=True)
        )
        with client.messages.stream(model="c", max_tokens=5, messages=MESSAGES) as stream:
            final = stream.get_final_message()
    assert final.usage.server_tool_use is not None  # the SDK's own accumulator agrees
    assert final.usage.server_tool_use.web_search_requests == 2
    metadata = sink.only().metadata
    assert metadata["webSearchRequests"] == 2
    assert "webFetchRequests" not in metadata  # zero fees are left out
    assert (metadata["cacheWrite5mTokens"], metadata["serviceTier"]) == (0, "standard")


def _response(*items: dict[str, Any], tool_usage: Any = None, tier: str = "flex") -> Any:
    body = payloads.response_object(usage=payloads.RESPONSES_USAGE)
    body["output"] = [*items, *body["output"]]
    body["service_tier"] = tier
    if tool_usage is not None:
        body["tool_usage"] = tool_usage
    return verified(Response, body)


def test_openai_responses_hosted_tool_calls(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    second_search = {**WEB_SEARCH_CALL, "id": "ws_2"}
    bodies = iter(
        [
            _response(WEB_SEARCH_CALL, second_search, FILE_SEARCH_CALL),
            # tool_usage counts billable searches only (opening a page is not one)
            _response(
                WEB_SEARCH_CALL,
                second_search,
                tool_usage={"web_search": {"num_requests": 1}, "image_gen": NO_IMAGES},
                tier="priority",
            ),
        ]
    )
    with respx.mock() as router:
        router.post(url__regex=r"/responses$").mock(
            side_effect=lambda request: payloads.json_response(next(bodies))
        )
        client.responses.create(model="m", input="hi")
        client.responses.create(model="m", input="hi")
    first, second = sink.metadata()
    assert (first["webSearchRequests"], first["fileSearchCalls"], first["serviceTier"]) == (
        2,
        1,
        "flex",
    )
    assert (second["webSearchRequests"], second["serviceTier"]) == (1, "priority")
    assert "fileSearchCalls" not in second


def test_openai_responses_stream_reads_the_terminal_response(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    frames = payloads.responses_events()
    terminal = frames[-1]
    assert isinstance(terminal, dict)
    terminal["response"]["output"].insert(0, WEB_SEARCH_CALL)
    terminal["response"]["service_tier"] = "default"
    Response.model_validate(terminal["response"])
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/responses$").mock(
            side_effect=lambda request: payloads.sse_response(frames, named=True)
        )
        for _event in client.responses.create(model="m", input="hi", stream=True):
            pass
    metadata = sink.only().metadata
    assert (metadata["webSearchRequests"], metadata["serviceTier"]) == (1, "default")


def test_openai_chat_service_tier_streamed_or_not(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    body = verified(ChatCompletion, payloads.chat_completion(service_tier="flex"))

    def stream(request: Any) -> Any:
        chunks = payloads.chat_chunks(with_usage=True)
        for chunk in chunks:
            if isinstance(chunk, dict):
                chunk["service_tier"] = "priority"
        return payloads.sse_response(chunks)

    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(
            side_effect=lambda request: (
                stream(request)
                if b'"stream":true' in request.content
                else payloads.json_response(body)
            )
        )
        client.chat.completions.create(model="m", messages=MESSAGES)
        for _chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            pass
    assert [m["serviceTier"] for m in sink.metadata()] == ["flex", "priority"]


def _grounded(queries: list[str]) -> dict[str, Any]:
    body = payloads.gemini_response(usage={**payloads.GEMINI_USAGE, "trafficType": "ON_DEMAND"})
    body["candidates"][0]["groundingMetadata"] = {
        "webSearchQueries": queries,
        "searchEntryPoint": {"renderedContent": "<div></div>"},
    }
    genai_types.GenerateContentResponse._from_response(response=copy.deepcopy(body), kwargs={})
    return body


def test_gemini_grounding_queries_and_traffic_type(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="c")
    body = _grounded(["weather paris", "weather lyon"])
    chunk = _grounded(["weather paris"])
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(200, json=body)
        router.post(url__regex=r":streamGenerateContent\?alt=sse$").mock(
            side_effect=lambda request: payloads.sse_response([chunk])
        )
        response = client.models.generate_content(model=payloads.GEMINI, contents="hi")
        for _chunk in client.models.generate_content_stream(model=payloads.GEMINI, contents="hi"):
            pass
    plain, streamed = sink.metadata()
    assert (plain["groundingQueries"], plain["trafficType"]) == (2, "ON_DEMAND")
    assert streamed["groundingQueries"] == 1
    assert tracker.track(response, customer_id="c") == [sink.events[0].event_id]
    assert sink.events[2].metadata["groundingQueries"] == 2


# ----------------------------------------------------------------------------- Price


def _usage(**values: Any) -> LLMUsage:
    usage = LLMUsage("anthropic", "messages", "claude", **values)
    return usage


def test_price_bills_cache_lifetimes_fees_and_tiers_in_decimal() -> None:
    price = Price(
        input_per_million="3",
        output_per_million="15",
        cached_input_per_million="0.30",
        cache_creation_input_per_million="3.75",
        cache_write_1h_input_per_million="6",
        per_request="0.001",
        web_search_per_request="0.01",
        web_fetch_per_request="0.002",
        file_search_per_request="0.0025",
        grounding_per_query="0.014",
        tiers={"batch": Price(input_per_million="1.5", output_per_million="7.5")},
    )
    usage = _usage(
        input_tokens=3100,
        output_tokens=50,
        cache_creation_input_tokens=3000,
        cache_writes={"cacheWrite5mTokens": 1000, "cacheWrite1hTokens": 2000},
        fees={
            "webSearchRequests": 3,
            "webFetchRequests": 1,
            "fileSearchCalls": 2,
            "groundingQueries": 1,
        },
    )
    tokens = (100 * Decimal(3) + 1000 * Decimal("3.75") + 2000 * Decimal(6)) / 1_000_000
    fees = Decimal("0.001") + 3 * Decimal("0.01") + Decimal("0.002") + Decimal("0.005")
    fees += Decimal("0.014")
    assert price.input_cost(usage) == tokens + fees
    assert price.output_cost(usage) == 50 * Decimal(15) / 1_000_000
    usage.dimensions = {"serviceTier": "batch"}
    assert price.input_cost(usage) == 3100 * Decimal("1.5") / 1_000_000
    assert price.output_cost(usage) == 50 * Decimal("7.5") / 1_000_000
    usage.dimensions = {"serviceTier": "standard"}  # not in tiers: the model's own price
    assert price.input_cost(usage) == tokens + fees


def test_cost_cents_include_fees_and_the_tier_price(sink: RecordingSink) -> None:
    tracker = LLMTracker(
        sink,
        prices={
            "*": Price(
                input_per_million=3,
                output_per_million=15,
                cache_creation_input_per_million="3.75",
                cache_write_1h_input_per_million=6,
                web_search_per_request="0.01",
                tiers={"priority": Price(input_per_million=6, output_per_million=30)},
            )
        },
    )
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    standard = {**ANTHROPIC_TOOLS_USAGE, "service_tier": "standard"}
    bodies = iter([_anthropic_body(standard), _anthropic_body(ANTHROPIC_TOOLS_USAGE)])
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").mock(
            side_effect=lambda request: payloads.json_response(next(bodies))
        )
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    on_standard, on_priority = (m["costCents"] for m in sink.metadata())
    # 100 x 3 + 1000 x 3.75 + 2000 x 6 + 50 x 15 per million, + 3 searches x 0.01, in cents
    assert on_standard == pytest.approx(float((Decimal("16800") / 10**6 + Decimal("0.03")) * 100))
    # priority: every input token at 6, output at 30, no search fee in that price
    assert on_priority == pytest.approx(float(Decimal(3100 * 6 + 50 * 30) / 10**6 * 100))


def test_price_arguments_are_validated() -> None:
    with pytest.raises(EventValidationError, match="web_search_per_request"):
        Price(1, 1, web_search_per_request="-1")
    with pytest.raises(EventValidationError, match=r"tiers\.flex"):
        Price(1, 1, tiers={"flex": 0.5})  # type: ignore[dict-item]
    flex = Price(1, 1, tiers={"flex": Price("0.5", "0.5")})
    assert flex == Price(1, 1, tiers={"flex": Price("0.5", "0.5")})
    assert flex != Price(1, 1)
    assert len({flex, Price(1, 1, tiers={"flex": Price("0.5", "0.5")})}) == 1
    assert "tiers={'flex': Price(" in repr(flex)


def test_an_event_with_many_usage_keys_keeps_them_and_drops_the_last_user_keys(
    sink: RecordingSink,
) -> None:
    tracker = LLMTracker(sink, request_weights={"*": 1}, prices={"*": Price(1, 1)})
    user = {f"k{n:02}": n for n in range(36)}
    client = tracker.wrap(
        anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c", metadata=user
    )
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").respond(
            200, json=_anthropic_body(ANTHROPIC_TOOLS_USAGE)
        )
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    metadata = sink.only().metadata
    assert len(metadata) == 50
    assert all(key in metadata for key in ("webSearchRequests", "costCents", "requestCredits"))
    kept = [key for key in user if key in metadata]
    assert kept == list(user)[: len(kept)] and len(kept) == 50 - 17
    assert tracker.stats.failures == 1


def test_a_message_batch_result_tracked_by_hand_carries_the_batch_tier(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    from anthropic.types.messages import MessageBatchIndividualResponse

    line = MessageBatchIndividualResponse.model_validate(
        {
            "custom_id": "cus_7:req_1",
            "result": {
                "type": "succeeded",
                "message": _anthropic_body({**ANTHROPIC_TOOLS_USAGE, "service_tier": "batch"}),
            },
        }
    )
    assert line.result.type == "succeeded"
    tracker.track(line.result.message, customer_id="cus_7")
    metadata = sink.only().metadata
    assert (metadata["serviceTier"], metadata["usageSource"]) == ("batch", "provider")


def test_openai_cache_writes_by_lifetime_and_their_price(sink: RecordingSink) -> None:
    tracker = LLMTracker(
        sink,
        prices={
            "*": Price(
                input_per_million=1,
                output_per_million=4,
                cache_creation_input_per_million="1.25",
                cache_write_12h_input_per_million=2,
            )
        },
    )
    usage = {
        **payloads.RESPONSES_USAGE,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 1500,
            "cache_write_tokens_details": {"ttl_30m_tokens": 500, "ttl_12h_tokens": 1000},
        },
    }
    body = verified(Response, payloads.response_object(usage=usage))
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/responses$").respond(200, json=body)
        client.responses.create(model="m", input="hi")
    metadata = sink.only().metadata
    assert (metadata["cacheWrite30mTokens"], metadata["cacheWrite12hTokens"]) == (500, 1000)
    assert "unknownUsage" not in metadata
    plain = usage["input_tokens"] - 1500
    expected = (
        plain * Decimal(1) + 500 * Decimal("1.25") + 1000 * Decimal(2) + usage["output_tokens"] * 4
    ) / 10**6
    assert metadata["costCents"] == pytest.approx(float(expected * 100))


def test_audio_and_image_tokens_are_priced_at_their_rates(sink: RecordingSink) -> None:
    """gpt-image: text and image input priced apart, image output; gpt-4o-audio: audio in
    and out. The split keys are subsets of the totals and only written when non-zero."""
    tracker = LLMTracker(
        sink,
        prices={
            "gpt-image": Price(
                input_per_million=5,
                output_per_million=10,
                image_input_per_million=10,
                image_output_per_million=40,
            ),
            "gpt-4o-audio": Price(
                input_per_million="2.5",
                output_per_million=10,
                audio_input_per_million=40,
                audio_output_per_million=80,
            ),
        },
    )
    images = {
        "created": 1767225800,
        "data": [{"b64_json": "aGVsbG8="}],
        "usage": {
            "input_tokens": 50,
            "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
            "output_tokens": 4200,
            "output_tokens_details": {"image_tokens": 4160, "text_tokens": 40},
            "total_tokens": 4250,
        },
    }
    verified(openai.types.ImagesResponse, images)
    audio_usage = {
        "prompt_tokens": 120,
        "completion_tokens": 300,
        "total_tokens": 420,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 250},
    }
    chat = verified(
        ChatCompletion, payloads.chat_completion(usage=audio_usage, model="gpt-4o-audio-preview")
    )
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/images/generations$").respond(
            200, json=images, headers={"x-request-id": payloads.EMBEDDINGS_REQUEST_ID}
        )
        router.post(url__regex=r"/chat/completions$").respond(200, json=chat)
        client.images.generate(model="gpt-image-1", prompt="a cat")
        client.chat.completions.create(model="gpt-4o-audio-preview", messages=MESSAGES)
    image_event, audio_event = sink.metadata()
    assert (image_event["imageInputTokens"], image_event["imageOutputTokens"]) == (40, 4160)
    assert "audioInputTokens" not in image_event
    image_cost = (10 * 5 + 40 * 10 + 40 * 10 + 4160 * 40) / 10**6
    assert image_event["costCents"] == pytest.approx(image_cost * 100)
    assert (audio_event["audioInputTokens"], audio_event["audioOutputTokens"]) == (100, 250)
    audio_cost = (20 * Decimal("2.5") + 100 * 40 + 50 * 10 + 250 * 80) / 10**6
    assert audio_event["costCents"] == pytest.approx(float(audio_cost * 100))


def test_gemini_audio_tokens_from_the_modality_details(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    usage = {
        **payloads.GEMINI_USAGE,
        "promptTokensDetails": [
            {"modality": "TEXT", "tokenCount": 50},
            {"modality": "AUDIO", "tokenCount": 1000},
        ],
        "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 4}],
    }
    body = payloads.gemini_response(usage=usage)
    genai_types.GenerateContentResponse._from_response(response=copy.deepcopy(body), kwargs={})
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(200, json=body)
        client.models.generate_content(model=payloads.GEMINI, contents="hi")
        client.models.generate_content(  # read from the raw body (camelCase entries)
            model=payloads.GEMINI,
            contents="hi",
            config=genai_types.GenerateContentConfig(should_return_http_response=True),
        )
    parsed, raw = sink.metadata()
    assert parsed["audioInputTokens"] == raw["audioInputTokens"] == 1000
    assert "imageInputTokens" not in parsed and "audioOutputTokens" not in parsed


def test_long_context_price_above_the_threshold() -> None:
    pro = Price(
        input_per_million="1.25",
        output_per_million=10,
        long_context_threshold=200_000,
        long_context=Price(input_per_million="2.5", output_per_million=15),
    )
    short = _usage(input_tokens=200_000, output_tokens=1000)
    long = _usage(input_tokens=200_001, output_tokens=1000)
    assert pro.input_cost(short) == 200_000 * Decimal("1.25") / 10**6
    assert pro.output_cost(short) == 1000 * Decimal(10) / 10**6
    assert pro.input_cost(long) == 200_001 * Decimal("2.5") / 10**6
    assert pro.output_cost(long) == 1000 * Decimal(15) / 10**6
    with pytest.raises(EventValidationError, match="go together"):
        Price(1, 1, long_context_threshold=10)
    with pytest.raises(EventValidationError, match="long_context_threshold"):
        Price(1, 1, long_context_threshold=-1, long_context=Price(2, 2))
    assert "long_context_threshold=200000" in repr(pro)
    assert "audio_input_per_million" not in repr(pro)  # still the input price


def test_split_events_with_many_usage_keys_keep_them(sink: RecordingSink) -> None:
    tracker = LLMTracker(
        sink,
        split_events=("llm.in", "llm.out"),
        request_weights={"*": 1},
        prices={"*": Price(1, 1)},
    )
    user = {f"k{n:02}": n for n in range(36)}
    client = tracker.wrap(
        anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c", metadata=user
    )
    usage = {
        **ANTHROPIC_TOOLS_USAGE,
        "speed": "fast",
        "output_tokens_details": {"thinking_tokens": 9},
    }
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").respond(200, json=_anthropic_body(usage))
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    inputs, outputs = sink.metadata()
    assert len(inputs) == 50 and len(outputs) < 50
    assert inputs["webSearchRequests"] == 3 and inputs["speed"] == "fast"
    assert outputs["reasoningTokens"] == 9 and len([k for k in outputs if k in user]) == 36
    assert tracker.stats.failures == 1


def _speech_mock(router: respx.MockRouter) -> None:
    numbers = itertools.count()
    router.post(url__regex=r"/audio/speech$").mock(
        side_effect=lambda request: httpx2.Response(
            200,
            content=b"ID3\x00fake-mp3",
            headers={"content-type": "audio/mpeg", "x-request-id": f"req_{next(numbers):032x}"},
        )
    )


def test_text_to_speech_is_billed_per_character_however_the_audio_is_read(
    sink: RecordingSink, tmp_path: Any
) -> None:
    tracker = LLMTracker(sink, prices={"tts-1": Price(0, 0, characters_per_million=15)})
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    text = "Hello, how can I help you today?"
    args: Any = {"model": "tts-1", "voice": "alloy", "input": text}
    with respx.mock() as router:
        _speech_mock(router)
        audio = client.audio.speech.create(**args)
        raw = client.audio.speech.with_raw_response.create(**args)
        with client.audio.speech.with_streaming_response.create(**args) as streamed:
            streamed.stream_to_file(tmp_path / "out.mp3")
    assert audio.content == b"ID3\x00fake-mp3" == raw.parse().content
    assert (tmp_path / "out.mp3").read_bytes() == b"ID3\x00fake-mp3"
    assert len(sink.events) == 3
    metadata = sink.events[0].metadata
    assert metadata["inputCharacters"] == len(text)
    assert metadata["operation"] == "audio.speech"
    assert metadata["costCents"] == pytest.approx(len(text) * 15 / 10**6 * 100)
    assert "inputTokens" not in metadata
    assert len({event.event_id for event in sink.events}) == 3  # by x-request-id


@pytest.mark.anyio
async def test_async_text_to_speech(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(openai.AsyncOpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        _speech_mock(router)
        audio = await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi")
    assert audio.content.startswith(b"ID3")
    assert sink.only().metadata["inputCharacters"] == 2


def test_dall_e_images_and_whisper_durations_without_usage_blocks(sink: RecordingSink) -> None:
    tracker = LLMTracker(sink, prices={"dall-e-3": Price(0, 0, per_image="0.08")})
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    images = {
        "created": 1767225800,
        "data": [{"url": "https://example.test/1.png"}, {"url": "https://example.test/2.png"}],
        "size": "1024x1024",
        "quality": "high",
    }
    verified(openai.types.ImagesResponse, images)
    verbose = {"text": "Bonjour.", "language": "french", "duration": 12.5, "segments": []}
    verified(openai.types.audio.TranslationVerbose, verbose)
    with respx.mock() as router:
        router.post(url__regex=r"/images/generations$").respond(
            200, json=images, headers={"x-request-id": payloads.EMBEDDINGS_REQUEST_ID}
        )
        router.post(url__regex=r"/audio/translations$").respond(
            200, json=verbose, headers={"x-request-id": "req_" + "7" * 32}
        )
        client.images.generate(model="dall-e-3", prompt="a cat", n=2)
        with warnings.catch_warnings():  # the SDK marks translations deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            client.audio.translations.create(
                model="whisper-1", file=("a.wav", b"RIFF"), response_format="verbose_json"
            )
    image_event, translation = sink.metadata()
    assert (image_event["imagesGenerated"], image_event["imageSize"]) == (2, "1024x1024")
    assert image_event["imageQuality"] == "high"
    assert image_event["costCents"] == pytest.approx(16.0)
    assert "inputTokens" not in image_event
    assert (translation["operation"], translation["audioSeconds"]) == ("audio.translations", 12.5)
    assert tracker.stats.failures == 0


def test_the_model_that_served_a_fallback_is_a_dimension(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    from anthropic.types.beta import BetaMessage

    no_cache = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    usage = {
        "input_tokens": 30,
        "output_tokens": 8,
        "iterations": [
            {"type": "message", "input_tokens": 10, "output_tokens": 0, **no_cache},
            {
                "type": "fallback_message",
                "model": "claude-haiku-4-5",
                "input_tokens": 20,
                "output_tokens": 8,
                **no_cache,
            },
        ],
    }
    body = verified(BetaMessage, {**payloads.anthropic_message(), "usage": usage})
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages").respond(200, json=body)
        client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=MESSAGES)
    metadata = sink.only().metadata
    assert metadata["fallbackModel"] == "claude-haiku-4-5"
    assert metadata["unknownUsage"] == "iterations[fallback_message]"
    assert (metadata["inputTokens"], metadata["outputTokens"]) == (30, 8)


def test_a_dimension_no_event_can_carry_is_left_out(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """A compatible server's odd service tier (non-ASCII, too long) must not make the event
    invalid: the dimension is left out, the usage billed."""
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0), "c"
    )
    bodies = iter(
        [
            payloads.chat_completion(service_tier="priorité"),
            payloads.chat_completion(service_tier="x" * 101),
        ]
    )
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(
            side_effect=lambda request: payloads.json_response(next(bodies))
        )
        client.chat.completions.create(model="m", messages=MESSAGES)
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert len(sink.events) == 2
    assert all("serviceTier" not in m and m["inputTokens"] == 1117 for m in sink.metadata())
    assert tracker.stats.failures == 0
