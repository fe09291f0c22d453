"""The real google-genai SDK (HTTP mocked by respx): generate, stream, embed, chats, AFC; sync
and async."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest
import respx
from google import genai
from google.genai import types

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import RecordingSink

MODEL = "gemini-2.5-flash"


@pytest.fixture
def client(tracker: LLMTracker) -> Iterator[genai.Client]:
    wrapped = tracker.wrap(genai.Client(api_key="g-key"), customer_id="cus_g")
    yield wrapped  # the test holds the Client: its __del__ closes the HTTP client
    wrapped.close()


def test_generate_content_normalises_thoughts_and_tool_use(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    response = client.models.generate_content(model=MODEL, contents="hi")
    assert response.text == "Hello there!"
    event = sink.only()
    assert event.customer_id == "cus_g"
    assert event.metadata == payloads.GEMINI_METADATA


def test_stream_takes_the_last_running_total(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    texts = [c.text for c in client.models.generate_content_stream(model=MODEL, contents="hi")]
    assert texts == ["Hello", " there", "!"]
    assert sink.only().metadata == payloads.GEMINI_STREAM_METADATA


def test_embed_content(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    result = client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    assert result.embeddings is not None
    assert len(result.embeddings) == 2
    client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    first, second = sink.events
    assert first.metadata == {
        "provider": "google",
        "usageSource": "provider",
        "operation": "embed_content",
        "model": "text-embedding-004",
        "inputTokens": 8,
        "outputTokens": 0,
        "totalTokens": 8,
    }
    assert first.event_id != second.event_id  # no response id: each call gets its own id


def test_chats_go_through_the_wrapped_models(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    chat = client.chats.create(model=MODEL)
    chat.send_message("hi")
    "".join(chunk.text or "" for chunk in chat.send_message_stream("again"))
    assert sink.metadata() == [payloads.GEMINI_METADATA, payloads.GEMINI_STREAM_METADATA]


def get_weather(city: str) -> str:
    """Return the weather of a city."""
    return f"sunny in {city}"


def test_automatic_function_calling_bills_every_request(
    client: genai.Client, sink: RecordingSink
) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    first = payloads.gemini_response(
        parts=[call],
        usage={"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 110},
        response_id="afc-step-1",
    )
    second = payloads.gemini_response(
        text="It is sunny in Paris.",
        usage={"promptTokenCount": 130, "candidatesTokenCount": 8, "totalTokenCount": 138},
        response_id="afc-step-2",
    )
    answers = iter([first, second])
    with respx.mock() as router:
        route = router.post(url__regex=r":generateContent$").mock(
            side_effect=lambda request: httpx2.Response(200, json=next(answers))
        )
        response = client.models.generate_content(
            model=MODEL,
            contents="weather in Paris?",
            config=types.GenerateContentConfig(tools=[get_weather]),
        )
    assert route.call_count == 2
    assert response.text == "It is sunny in Paris."
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 130  # the SDK shows the last request only
    assert [(m["inputTokens"], m["outputTokens"]) for m in sink.metadata()] == [(100, 10), (130, 8)]
    assert len({e.event_id for e in sink.events}) == 2


def test_raw_http_response_mode_is_parsed_from_the_body(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    response = client.models.generate_content(
        model=MODEL,
        contents="hi",
        config=types.GenerateContentConfig(should_return_http_response=True),
    )
    assert response.usage_metadata is None
    assert sink.only().metadata["inputTokens"] == 1080


def test_vertex_client_is_named_google_vertex(tracker: LLMTracker, sink: RecordingSink) -> None:
    vertex = tracker.wrap(
        genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            credentials=_Credentials(),  # type: ignore[arg-type]
        ),
        customer_id="cus_v",
    )
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(200, json=payloads.gemini_response())
        vertex.models.generate_content(model=MODEL, contents="hi")
        assert "/publishers/google/models/" in str(router.calls[0].request.url)
        assert json.loads(router.calls[0].request.content)["contents"][0]["parts"] == [
            {"text": "hi"}
        ]
    assert sink.only().metadata["provider"] == "google_vertex"


class _Credentials:
    """Just enough of google.auth credentials for the SDK to send a request."""

    token = "vertex-token"
    valid = True
    expired = False
    quota_project_id = None

    def refresh(self, request: object) -> None:
        pass

    def before_request(self, request: object, method: str, url: str, headers: dict) -> None:  # type: ignore[type-arg]
        headers["authorization"] = "Bearer vertex-token"


@pytest.mark.anyio
async def test_async_twins(
    client: genai.Client, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    await client.aio.models.generate_content(model=MODEL, contents="hi")
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="hi")
    texts = [chunk.text async for chunk in stream]
    await client.aio.models.embed_content(model="text-embedding-004", contents=["a"])
    chat = client.aio.chats.create(model=MODEL)
    await chat.send_message("hi")
    assert texts == ["Hello", " there", "!"]
    assert [m["operation"] for m in sink.metadata()] == [
        "generate_content",
        "generate_content",
        "embed_content",
        "generate_content",
    ]
    assert sink.metadata()[1] == payloads.GEMINI_STREAM_METADATA


@pytest.mark.anyio
async def test_wrapping_only_the_async_surface(tracker: LLMTracker, sink: RecordingSink) -> None:
    full = genai.Client(api_key="g-key")
    aio = tracker.wrap(full.aio, customer_id="cus_aio")
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(200, json=payloads.gemini_response())
        await aio.models.generate_content(model=MODEL, contents="hi")
        full.models.generate_content(model=MODEL, contents="hi")
    assert [e.customer_id for e in sink.events] == ["cus_aio"]
