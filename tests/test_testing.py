"""MockLLMTransport answers the real provider SDKs with deterministic usage."""

from __future__ import annotations

import httpx2
import pytest
from anthropic import Anthropic, AsyncAnthropic
from google import genai
from openai import AsyncOpenAI, OpenAI

from dodo_ingest.testing import MockLLMTransport, count_tokens

PROMPT = "How many tokens is this prompt?"  # 31 characters: 8 tokens
REPLY = "one two three four"  # 4 words: 4 tokens


@pytest.fixture
def transport() -> MockLLMTransport:
    return MockLLMTransport(reply=REPLY)


def test_count_tokens() -> None:
    assert count_tokens(PROMPT) == 8
    assert count_tokens("") == 1


def test_openai_chat_plain_and_streamed(transport: MockLLMTransport) -> None:
    client = OpenAI(api_key="sk-offline", http_client=httpx2.Client(transport=transport))
    messages = [{"role": "user", "content": PROMPT}]
    done = client.chat.completions.create(model="gpt-4o", messages=messages)  # type: ignore[arg-type]
    assert done.choices[0].message.content == REPLY
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (8, 4)
    assert done.id != client.chat.completions.create(model="gpt-4o", messages=messages).id  # type: ignore[arg-type]

    chunks = list(client.chat.completions.create(model="gpt-4o", messages=messages, stream=True))  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(c.usage is None for c in chunks)  # no usage unless asked, like the real API
    with_usage = list(
        client.chat.completions.create(
            model="gpt-4o",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.total_tokens == 12


def test_openai_embeddings_and_responses(transport: MockLLMTransport) -> None:
    client = OpenAI(api_key="sk-offline", http_client=httpx2.Client(transport=transport))
    assert client.embeddings.create(model="e", input=PROMPT).usage.prompt_tokens == 8
    response = client.responses.create(model="gpt-4o", input=PROMPT)
    assert response.output_text == REPLY
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (8, 4)


def test_anthropic_plain_and_streamed(transport: MockLLMTransport) -> None:
    client = Anthropic(api_key="sk-offline", http_client=httpx2.Client(transport=transport))
    messages = [{"role": "user", "content": PROMPT}]
    message = client.messages.create(model="claude", max_tokens=64, messages=messages)  # type: ignore[arg-type]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, 4)
    with client.messages.stream(model="claude", max_tokens=64, messages=messages) as stream:  # type: ignore[arg-type]
        assert "".join(stream.text_stream) == REPLY
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, 4)


def test_gemini_plain_and_streamed(transport: MockLLMTransport) -> None:
    client = genai.Client(api_key="offline", http_options={"client_args": {"transport": transport}})
    response = client.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert response.text == REPLY
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 4
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT))
    assert "".join(c.text or "" for c in chunks) == REPLY
    last = chunks[-1].usage_metadata
    assert last is not None
    assert (last.prompt_token_count, last.candidates_token_count) == (8, 4)


@pytest.mark.anyio
async def test_async_clients(transport: MockLLMTransport) -> None:
    openai = AsyncOpenAI(api_key="sk", http_client=httpx2.AsyncClient(transport=transport))
    done = await openai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],  # type: ignore[list-item]
    )
    assert done.usage is not None
    assert done.usage.total_tokens == 12
    claude = AsyncAnthropic(api_key="sk", http_client=httpx2.AsyncClient(transport=transport))
    message = await claude.messages.create(
        model="claude",
        max_tokens=64,
        messages=[{"role": "user", "content": PROMPT}],  # type: ignore[list-item]
    )
    assert message.usage.output_tokens == 4
    assert transport.requests == 2


def test_unknown_routes_are_404(transport: MockLLMTransport) -> None:
    with httpx2.Client(transport=transport) as http:
        assert http.post("http://mock/v1/unknown", json={}).status_code == 404


def test_response_ids_are_unique_across_transports() -> None:
    ids = set()
    for _ in range(2):
        transport = MockLLMTransport(reply=REPLY)
        with httpx2.Client(transport=transport) as http:
            answer = http.post("http://mock/v1/chat/completions", json={"messages": []})
            ids.add(answer.json()["id"])
            ids.add(answer.headers["x-request-id"])
    assert len(ids) == 4


def test_gemini_embeddings_and_async_client(transport: MockLLMTransport) -> None:
    import asyncio

    client = genai.Client(
        api_key="offline",
        http_options={
            "client_args": {"transport": transport},
            "async_client_args": {"transport": transport},
        },
    )
    embedded = client.models.embed_content(model="text-embedding-004", contents=["a", "b"])
    assert embedded.embeddings is not None
    assert len(embedded.embeddings) == 2

    async def generate() -> int | None:
        response = await client.aio.models.generate_content(
            model="gemini-2.5-flash", contents=PROMPT
        )
        return response.usage_metadata.candidates_token_count if response.usage_metadata else None

    assert asyncio.run(generate()) == 4


def test_multipart_uploads_get_a_404(transport: MockLLMTransport) -> None:
    with httpx2.Client(transport=transport) as http:
        answer = http.post(
            "http://mock/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}
        )
    assert answer.status_code == 404
