"""Fixtures for the framework integrations: a recording sink, an OpenAI answered over
mocked HTTP (the payloads of the LLM blueprint's tests), and the dev server."""

from __future__ import annotations

import importlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import httpx2
import pytest

from dodo_ingest import DodoClient
from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer
from tests._loopback import loopback
from tests.blueprints.llm import payloads
from tests.blueprints.llm.conftest import Recorded, RecordingSink


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``; skip (locally) or fail (in CI) when the extra is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        reason = f"{module} is not installed (pip install -e '.[{extra},dev]')"
        if os.environ.get("CI"):
            pytest.fail(f"integration tests must run in CI: {reason}")
        pytest.skip(reason, allow_module_level=True)


Answer = Callable[[httpx2.Request], httpx2.Response]


def provider(chat: Answer = payloads.chat_stream_for) -> Answer:
    """Answers like OpenAI (chat completions: ``chat``, by default ``payloads.CHAT_USAGE``,
    streams ``payloads.STREAM_USAGE`` when asked for usage; Responses:
    ``payloads.RESPONSES_USAGE``; embeddings: ``payloads.EMBEDDINGS``) and Anthropic
    (``/v1/messages``: ``payloads.anthropic_message()``)."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path.endswith("/chat/completions"):
            return chat(request)
        if path.endswith("/responses"):
            return payloads.responses_for(request)
        if path.endswith("/embeddings"):
            return payloads.json_response(payloads.EMBEDDINGS)
        if path.endswith("/v1/messages"):
            return payloads.anthropic_for(request)
        return httpx2.Response(404, json={"error": {"message": "no route"}})

    return answer


def openai_api(chat: Answer = payloads.chat_stream_for) -> httpx2.MockTransport:
    """:func:`provider` as an ``httpx2`` transport."""
    return httpx2.MockTransport(provider(chat))


def numbered_calls() -> Answer:
    """A server whose every chat completion (streamed or not) has the same long id, each
    with its own ``created`` and prompt count: calls that must stay distinct events."""
    calls = itertools.count(1)

    def answer(request: httpx2.Request) -> httpx2.Response:
        call = next(calls)
        created = 1767225600 + call
        body = json.loads(request.content)
        if not body.get("stream"):
            usage = {**payloads.CHAT_USAGE, "prompt_tokens": call, "total_tokens": call + 46}
            return payloads.json_response(payloads.chat_completion(usage, created=created))
        frames = payloads.chat_chunks(with_usage=True)
        for frame in frames:
            if isinstance(frame, dict):
                frame["created"] = created
                if frame.get("usage"):
                    usage = {"prompt_tokens": call, "total_tokens": call + 3}
                    frame["usage"] = {**payloads.STREAM_USAGE, **usage}
        return payloads.sse_response(frames)

    return answer


def unique_calls() -> Answer:
    """A server whose every chat completion (streamed or not) has its own long id and the
    same token counts: calls that only their ids tell apart."""
    calls = itertools.count(1)

    def answer(request: httpx2.Request) -> httpx2.Response:
        response_id = f"chatcmpl-UniqueCall{next(calls):04d}xYzAbCdEfGhIj"
        if not json.loads(request.content).get("stream"):
            return payloads.json_response(payloads.chat_completion(id=response_id))
        frames = payloads.chat_chunks(with_usage=True)
        for frame in frames:
            if isinstance(frame, dict):
                frame["id"] = response_id
        return payloads.sse_response(frames)

    return answer


def paired(sink: RecordingSink, calls: int) -> None:
    """``calls`` calls, each billed by both paths under one event id: ``calls`` distinct ids,
    each twice with the same token counts."""
    assert len(sink.events) == 2 * calls
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in sink.events:
        by_id.setdefault(event.event_id, []).append(event.metadata)
    assert len(by_id) == calls
    for handler_and_client in by_id.values():
        assert len(handler_and_client) == 2
        first, second = (
            {k: v for k, v in metadata.items() if k.endswith("Tokens")}
            for metadata in handler_and_client
        )
        assert first == second


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def tracker(sink: RecordingSink) -> LLMTracker:
    return LLMTracker(sink, event_name="llm.chat_completion")


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as dev:
        yield dev


@pytest.fixture
def ingestion(server: DevServer) -> Iterator[Ingestion]:
    with Ingestion(api_key="dev_key", base_url=server.base_url, flush_interval=0.02) as pipeline:
        yield pipeline


def stored(server: DevServer, customer_id: str) -> list[tuple[str, dict[str, object]]]:
    """The events the dev server keeps for ``customer_id``: (event id, metadata)."""
    with DodoClient(api_key="dev_key", base_url=server.base_url) as dodo:
        return [
            (e.event_id, dict(e.metadata or {})) for e in dodo.events.list(customer_id=customer_id)
        ]


__all__ = [
    "Recorded",
    "RecordingSink",
    "loopback",
    "numbered_calls",
    "openai_api",
    "paired",
    "provider",
    "require",
    "stored",
    "unique_calls",
]
