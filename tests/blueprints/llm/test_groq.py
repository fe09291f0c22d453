"""The real groq SDK (a Stainless client on legacy httpx, aliased to httpx2 in tests)."""

from __future__ import annotations

from collections.abc import Iterator

import groq
import pytest
import respx

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import RecordingSink

MESSAGES = [{"role": "user", "content": "hi"}]
GROQ_METADATA = {
    "provider": "groq",
    "usageSource": "provider",
    "operation": "chat.completions",
    "model": payloads.GROQ_MODEL,
    "inputTokens": 41,
    "outputTokens": 3,
    "totalTokens": 44,
}
#: Groq states its service tier on non-stream completions only.
GROQ_COMPLETION_METADATA = {**GROQ_METADATA, "serviceTier": "on_demand"}


def _completion() -> dict[str, object]:
    usage = {"prompt_tokens": 41, "completion_tokens": 3, "total_tokens": 44, "queue_time": 0.02}
    return payloads.chat_completion(
        usage,
        id=payloads.GROQ_ID,
        model=payloads.GROQ_MODEL,
        created=payloads.GROQ_CREATED,
        service_tier="on_demand",
    )


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock() as mock:
        mock.post("https://api.groq.com/openai/v1/chat/completions").mock(
            side_effect=lambda request: (
                payloads.sse_response(payloads.groq_chunks())
                if b'"stream":true' in request.content.replace(b" ", b"")
                else payloads.json_response(_completion())
            )
        )
        yield mock


def test_groq_client_create_and_stream(
    tracker: LLMTracker, sink: RecordingSink, router: respx.MockRouter
) -> None:
    client = tracker.wrap(groq.Groq(api_key="gsk_test", max_retries=0), customer_id="cus_q")
    assert isinstance(client, groq.Groq)
    completion = client.chat.completions.create(model="llama", messages=MESSAGES)  # type: ignore[arg-type]
    assert completion.id == payloads.GROQ_ID
    chunks = list(client.chat.completions.create(model="llama", messages=MESSAGES, stream=True))  # type: ignore[arg-type]
    assert len(chunks) == 3
    assert sink.metadata() == [GROQ_COMPLETION_METADATA, GROQ_METADATA]
    assert sink.events[0].event_id == sink.events[1].event_id  # same response id and time


@pytest.mark.anyio
async def test_async_groq_client(
    tracker: LLMTracker, sink: RecordingSink, router: respx.MockRouter
) -> None:
    client = tracker.wrap(groq.AsyncGroq(api_key="gsk_test", max_retries=0), customer_id="cus_q")
    await client.chat.completions.create(model="llama", messages=MESSAGES)  # type: ignore[arg-type]
    stream = await client.chat.completions.create(model="llama", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert len([chunk async for chunk in stream]) == 3
    assert sink.metadata() == [GROQ_COMPLETION_METADATA, GROQ_METADATA]
