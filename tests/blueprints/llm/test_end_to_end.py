"""The whole path: real provider SDKs (HTTP mocked by respx) -> LLMTracker -> a real Ingestion
-> the dev server over HTTP on 127.0.0.1, read back with DodoClient. For every provider, method,
stream/non-stream and sync/async, the stored events are exactly the ones the tracker emitted,
with the expected metadata."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest
import respx
from google import genai

from dodo_ingest import DodoClient
from dodo_ingest.blueprints.llm import LLMTracker, create_llm_tracker
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer

from . import payloads
from .conftest import Recorded

MESSAGES = [{"role": "user", "content": "hi"}]
CLAUDE: dict[str, Any] = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": MESSAGES}
GEMINI = "gemini-2.5-flash"
_IDS = (
    payloads.CHAT_ID,
    payloads.RESP_ID,
    payloads.MSG_ID,
    payloads.GEMINI_ID,
    payloads.COMPLETION_ID,
    payloads.EMBEDDINGS_REQUEST_ID,
)
_COUNTER = itertools.count()


class Answer(pydantic.BaseModel):
    answer: str


class ForwardingSink:
    """Records what the tracker emits and hands it to the real Ingestion."""

    def __init__(self, ingestion: Ingestion) -> None:
        self.ingestion = ingestion
        self.events: list[Recorded] = []

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        self.events.append(Recorded(customer_id, event_name, dict(metadata or {}), event_id))
        return self.ingestion.track(customer_id, event_name, metadata, event_id=event_id)


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as dev:
        yield dev


@pytest.fixture(scope="module")
def ingestion(server: DevServer) -> Iterator[Ingestion]:
    with Ingestion(api_key="dev_key", base_url=server.base_url, flush_interval=0.02) as pipeline:
        yield pipeline


def _fresh_ids(
    answer: Callable[[httpx2.Request], httpx2.Response],
) -> Callable[[httpx2.Request], httpx2.Response]:
    """Give every mocked provider response its own ids, as the real APIs do."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        response = answer(request)
        n = next(_COUNTER)
        body = response.content
        headers = dict(response.headers)
        for old in _IDS:
            body = body.replace(old.encode(), f"{old}{n}".encode())
            headers = {k: v.replace(old, f"{old}{n}") for k, v in headers.items()}
        headers.pop("content-length", None)
        return httpx2.Response(response.status_code, content=body, headers=headers)

    return respond


@pytest.fixture
def providers() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        openai_routes = {
            "chat/completions": payloads.chat_stream_for,
            "completions": payloads.completion_for,
            "responses": payloads.responses_for,
            "embeddings": lambda r: payloads.json_response(
                payloads.EMBEDDINGS, {"x-request-id": payloads.EMBEDDINGS_REQUEST_ID}
            ),
        }
        for path, answer in openai_routes.items():
            router.post(f"https://api.openai.com/v1/{path}").mock(side_effect=_fresh_ids(answer))
        router.post(url__regex=r"^https://api\.anthropic\.com/v1/messages(\?beta=true)?$").mock(
            side_effect=_fresh_ids(payloads.anthropic_for)
        )
        router.post(url__regex=r":generateContent$").mock(
            side_effect=_fresh_ids(lambda r: payloads.json_response(payloads.gemini_response()))
        )
        router.post(url__regex=r":streamGenerateContent\?alt=sse$").mock(
            side_effect=_fresh_ids(lambda r: payloads.sse_response(list(payloads.gemini_chunks())))
        )
        router.post(url__regex=r":batchEmbedContents$").mock(
            side_effect=lambda r: payloads.json_response(payloads.GEMINI_EMBED)
        )
        yield router


EMBED_OPENAI = {
    "provider": "openai",
    "usageSource": "provider",
    "operation": "embeddings",
    "model": "text-embedding-3-small",
    "inputTokens": 8,
    "outputTokens": 0,
    "totalTokens": 8,
}
EMBED_GOOGLE = {**EMBED_OPENAI, "provider": "google", "operation": "embed_content"}
EMBED_GOOGLE["model"] = "text-embedding-004"
COMPLETIONS = {
    "provider": "openai",
    "usageSource": "provider",
    "operation": "completions",
    "model": "gpt-3.5",
    "inputTokens": 5,
    "outputTokens": 2,
    "totalTokens": 7,
}


def _helper_stream(c: openai.OpenAI) -> None:
    with c.chat.completions.stream(model="m", messages=MESSAGES) as s:  # type: ignore[arg-type]
        s.get_final_completion()


def _responses_helper(c: openai.OpenAI) -> None:
    with c.responses.stream(model="m", input="hi") as s:
        s.get_final_response()


def _claude_helper(c: anthropic.Anthropic) -> None:
    with c.messages.stream(**CLAUDE) as s:
        s.get_final_message()


SYNC_CASES: dict[str, tuple[str, Callable[[Any], object], dict[str, Any]]] = {
    "openai-chat": ("openai", lambda c: c.chat.completions.create(model="m", messages=MESSAGES), payloads.CHAT_METADATA),
    "openai-chat-stream": ("openai", lambda c: list(c.chat.completions.create(model="m", messages=MESSAGES, stream=True)), payloads.STREAM_METADATA),
    "openai-chat-parse": ("openai", lambda c: c.chat.completions.parse(model="m", messages=MESSAGES, response_format=Answer), payloads.CHAT_METADATA),
    "openai-chat-stream-helper": ("openai", _helper_stream, payloads.STREAM_METADATA),
    "openai-responses": ("openai", lambda c: c.responses.create(model="m", input="hi"), payloads.RESPONSES_METADATA),
    "openai-responses-stream": ("openai", lambda c: list(c.responses.create(model="m", input="hi", stream=True)), payloads.RESPONSES_METADATA),
    "openai-responses-parse": ("openai", lambda c: c.responses.parse(model="m", input="hi", text_format=Answer), payloads.RESPONSES_METADATA),
    "openai-responses-stream-helper": ("openai", _responses_helper, payloads.RESPONSES_METADATA),
    "openai-completions": ("openai", lambda c: c.completions.create(model="x", prompt="hi"), COMPLETIONS),
    "openai-completions-stream": ("openai", lambda c: list(c.completions.create(model="x", prompt="hi", stream=True)), COMPLETIONS),
    "openai-embeddings": ("openai", lambda c: c.embeddings.create(model="e", input="x"), EMBED_OPENAI),
    "anthropic-create": ("anthropic", lambda c: c.messages.create(**CLAUDE), payloads.ANTHROPIC_METADATA),
    "anthropic-create-stream": ("anthropic", lambda c: list(c.messages.create(**CLAUDE, stream=True)), payloads.ANTHROPIC_STREAM_METADATA),
    "anthropic-stream-helper": ("anthropic", _claude_helper, payloads.ANTHROPIC_STREAM_METADATA),
    "anthropic-parse": ("anthropic", lambda c: c.messages.parse(**CLAUDE, output_format=Answer), payloads.ANTHROPIC_METADATA),
    "anthropic-beta": ("anthropic", lambda c: c.beta.messages.create(**CLAUDE), payloads.ANTHROPIC_METADATA),
    "google-generate": ("google", lambda c: c.models.generate_content(model=GEMINI, contents="hi"), payloads.GEMINI_METADATA),
    "google-generate-stream": ("google", lambda c: list(c.models.generate_content_stream(model=GEMINI, contents="hi")), payloads.GEMINI_STREAM_METADATA),
    "google-embed": ("google", lambda c: c.models.embed_content(model="text-embedding-004", contents=["a"]), EMBED_GOOGLE),
    "google-chat": ("google", lambda c: c.chats.create(model=GEMINI).send_message("hi"), payloads.GEMINI_METADATA),
}  # fmt: skip


async def _collect(awaitable: Awaitable[Any]) -> list[Any]:
    return [item async for item in await awaitable]


async def _ahelper_stream(c: openai.AsyncOpenAI) -> None:
    async with c.chat.completions.stream(model="m", messages=MESSAGES) as s:  # type: ignore[arg-type]
        await s.get_final_completion()


async def _aresponses_helper(c: openai.AsyncOpenAI) -> None:
    async with c.responses.stream(model="m", input="hi") as s:
        await s.get_final_response()


async def _aclaude_helper(c: anthropic.AsyncAnthropic) -> None:
    async with c.messages.stream(**CLAUDE) as s:
        await s.get_final_message()


ASYNC_CASES: dict[str, tuple[str, Callable[[Any], Awaitable[object]], dict[str, Any]]] = {
    "openai-chat": ("openai", lambda c: c.chat.completions.create(model="m", messages=MESSAGES), payloads.CHAT_METADATA),
    "openai-chat-stream": ("openai", lambda c: _collect(c.chat.completions.create(model="m", messages=MESSAGES, stream=True)), payloads.STREAM_METADATA),
    "openai-chat-parse": ("openai", lambda c: c.chat.completions.parse(model="m", messages=MESSAGES, response_format=Answer), payloads.CHAT_METADATA),
    "openai-chat-stream-helper": ("openai", _ahelper_stream, payloads.STREAM_METADATA),
    "openai-responses": ("openai", lambda c: c.responses.create(model="m", input="hi"), payloads.RESPONSES_METADATA),
    "openai-responses-stream": ("openai", lambda c: _collect(c.responses.create(model="m", input="hi", stream=True)), payloads.RESPONSES_METADATA),
    "openai-responses-parse": ("openai", lambda c: c.responses.parse(model="m", input="hi", text_format=Answer), payloads.RESPONSES_METADATA),
    "openai-responses-stream-helper": ("openai", _aresponses_helper, payloads.RESPONSES_METADATA),
    "openai-completions": ("openai", lambda c: c.completions.create(model="x", prompt="hi"), COMPLETIONS),
    "openai-completions-stream": ("openai", lambda c: _collect(c.completions.create(model="x", prompt="hi", stream=True)), COMPLETIONS),
    "openai-embeddings": ("openai", lambda c: c.embeddings.create(model="e", input="x"), EMBED_OPENAI),
    "anthropic-create": ("anthropic", lambda c: c.messages.create(**CLAUDE), payloads.ANTHROPIC_METADATA),
    "anthropic-create-stream": ("anthropic", lambda c: _collect(c.messages.create(**CLAUDE, stream=True)), payloads.ANTHROPIC_STREAM_METADATA),
    "anthropic-stream-helper": ("anthropic", _aclaude_helper, payloads.ANTHROPIC_STREAM_METADATA),
    "anthropic-parse": ("anthropic", lambda c: c.messages.parse(**CLAUDE, output_format=Answer), payloads.ANTHROPIC_METADATA),
    "anthropic-beta": ("anthropic", lambda c: c.beta.messages.create(**CLAUDE), payloads.ANTHROPIC_METADATA),
    "google-generate": ("google", lambda c: c.aio.models.generate_content(model=GEMINI, contents="hi"), payloads.GEMINI_METADATA),
    "google-generate-stream": ("google", lambda c: _collect(c.aio.models.generate_content_stream(model=GEMINI, contents="hi")), payloads.GEMINI_STREAM_METADATA),
    "google-embed": ("google", lambda c: c.aio.models.embed_content(model="text-embedding-004", contents=["a"]), EMBED_GOOGLE),
    "google-chat": ("google", lambda c: c.aio.chats.create(model=GEMINI).send_message("hi"), payloads.GEMINI_METADATA),
}  # fmt: skip


def _client(provider: str, asynchronous: bool) -> Any:
    if provider == "openai":
        cls: Any = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(api_key="sk-test", max_retries=0)
    if provider == "anthropic":
        cls = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        return cls(api_key="sk-ant", max_retries=0)
    return genai.Client(api_key="g-key")


def _check_stored(
    server: DevServer, ingestion: Ingestion, sink: ForwardingSink, customer: str, expected: dict
) -> None:
    assert ingestion.flush(timeout=10)
    assert len(sink.events) == 1, sink.events
    emitted = sink.events[0]
    assert emitted.metadata == expected
    with DodoClient(api_key="dev_key", base_url=server.base_url) as dodo:
        stored = list(dodo.events.list(customer_id=customer))
    assert [(e.event_id, e.event_name, e.customer_id, e.metadata) for e in stored] == [
        (emitted.event_id, "llm.chat_completion", customer, {**expected, "case": customer})
    ]
    assert emitted.event_id is not None
    assert emitted.event_id.startswith("llm_")


@pytest.mark.parametrize("case", sorted(SYNC_CASES))
def test_sync_matrix_reaches_the_dev_server(
    case: str, server: DevServer, ingestion: Ingestion, providers: respx.MockRouter
) -> None:
    provider, call, expected = SYNC_CASES[case]
    sink = ForwardingSink(ingestion)
    customer = f"cus_sync_{case}"
    client = LLMTracker(sink).wrap(
        _client(provider, False), customer_id=customer, metadata={"case": customer}
    )
    call(client)
    expected_with_case = {**expected, "case": customer}
    _check_stored(server, ingestion, sink, customer, expected_with_case)


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(ASYNC_CASES))
async def test_async_matrix_reaches_the_dev_server(
    case: str, server: DevServer, ingestion: Ingestion, providers: respx.MockRouter
) -> None:
    provider, call, expected = ASYNC_CASES[case]
    sink = ForwardingSink(ingestion)
    customer = f"cus_async_{case}"
    client = LLMTracker(sink).wrap(
        _client(provider, True), customer_id=customer, metadata={"case": customer}
    )
    await call(client)
    expected_with_case = {**expected, "case": customer}
    _check_stored(server, ingestion, sink, customer, expected_with_case)


def test_create_llm_tracker_owns_its_ingestion(
    server: DevServer, providers: respx.MockRouter
) -> None:
    with create_llm_tracker(api_key="dev_key", base_url=server.base_url) as tracker:
        client = tracker.wrap(
            client=openai.OpenAI(api_key="sk-test", max_retries=0), customer_id="cus_ts_shape"
        )
        client.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    # leaving the block flushed and closed the Ingestion the tracker created
    with DodoClient(api_key="dev_key", base_url=server.base_url) as dodo:
        stored = list(dodo.events.list(customer_id="cus_ts_shape"))
    assert [e.metadata for e in stored] == [payloads.CHAT_METADATA]
