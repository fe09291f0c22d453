"""Fixtures for the LLM blueprint: a recording event sink and respx routes for the providers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import respx

from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.client import EventInput
from dodo_ingest.client._models import validate_metadata

from . import payloads


@dataclass
class Recorded:
    customer_id: str
    event_name: str | None
    metadata: dict[str, Any]
    event_id: str | None


@dataclass
class RecordingSink:
    """Implements the tracker's ``track`` protocol, validates each event as ``Ingestion.track``
    does (through ``EventInput``) and keeps it."""

    events: list[Recorded] = field(default_factory=list)
    fail_with: BaseException | None = None

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        EventInput(event_id or "generated", customer_id, event_name or "", None, metadata)
        self.events.append(Recorded(customer_id, event_name, dict(metadata or {}), event_id))
        return event_id or "generated"

    def only(self) -> Recorded:
        assert len(self.events) == 1, self.events
        return self.events[0]

    def metadata(self) -> list[dict[str, Any]]:
        return [event.metadata for event in self.events]


def assert_prechecked(
    customer_id: object, event_name: object, metadata: object, event_id: object
) -> None:
    """What a caller of ``Ingestion._track_prechecked`` guarantees: non-empty ``str`` ids and
    name that UTF-8 can encode, a plain ``dict`` of metadata that the API's checks return
    unchanged, value for value and type for type."""
    for text in (customer_id, event_name, event_id):
        assert type(text) is str and text, text
        text.encode()
    assert type(metadata) is dict
    checked = validate_metadata(metadata)
    assert checked == metadata
    assert [type(value) for value in checked.values()] == [
        type(value) for value in metadata.values()
    ]


@dataclass
class PrecheckedSink(RecordingSink):
    """A :class:`RecordingSink` that also offers ``Ingestion``'s trusted entry, which the
    tracker then uses; it checks that every event keeps that entry's contract."""

    prechecked: int = 0

    def _track_prechecked(
        self, customer_id: str, event_name: str, metadata: dict[str, Any], event_id: str
    ) -> str:
        assert_prechecked(customer_id, event_name, metadata, event_id)
        self.prechecked += 1
        return self.track(customer_id, event_name, metadata, event_id=event_id)


@pytest.fixture(autouse=True)
def _genai_over_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """google-genai sends async requests with aiohttp whenever it is installed (the litellm
    extra brings it), which respx cannot mock: keep it on httpx, as without aiohttp."""
    from google.genai import _api_client

    monkeypatch.setattr(_api_client, "has_aiohttp", False)


@pytest.fixture
def sink() -> PrecheckedSink:
    return PrecheckedSink()


@pytest.fixture
def tracker(sink: RecordingSink) -> LLMTracker:
    return LLMTracker(sink, event_name="llm.chat_completion")


@pytest.fixture
def provider_mock() -> Iterator[respx.MockRouter]:
    """respx routes answering like OpenAI, Anthropic and Gemini (default base URLs)."""
    with respx.mock(assert_all_called=False) as router:
        router.post(url__regex=r"^https://api\.openai\.com/v1/chat/completions$").mock(
            side_effect=payloads.chat_stream_for
        )
        router.post(url__regex=r"^https://api\.openai\.com/v1/completions$").mock(
            side_effect=payloads.completion_for
        )
        router.post(url__regex=r"^https://api\.openai\.com/v1/responses(\?.*)?$").mock(
            side_effect=payloads.responses_for
        )
        router.post(url__regex=r"^https://api\.openai\.com/v1/embeddings$").mock(
            side_effect=lambda request: payloads.json_response(
                payloads.EMBEDDINGS, {"x-request-id": payloads.EMBEDDINGS_REQUEST_ID}
            )
        )
        router.post(url__regex=r"^https://api\.anthropic\.com/v1/messages(\?.*)?$").mock(
            side_effect=payloads.anthropic_for
        )
        router.post(url__regex=r":generateContent$").mock(
            side_effect=lambda request: payloads.json_response(payloads.gemini_response())
        )
        router.post(url__regex=r":streamGenerateContent\?alt=sse$").mock(
            side_effect=lambda request: payloads.sse_response(list(payloads.gemini_chunks()))
        )
        router.post(url__regex=r":batchEmbedContents$").mock(
            side_effect=lambda request: payloads.json_response(payloads.GEMINI_EMBED)
        )
        yield router
