"""The tracker's trusted path into the pipeline (``Ingestion._track_prechecked``): it hands
over only values it has checked, and what it delivers is what ``track()`` delivers for the
same inputs (real SDKs with HTTP mocked by respx, real ``Ingestion`` pipelines)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import respx
from google import genai

from dodo_ingest import EventValidationError
from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage, Price
from dodo_ingest.blueprints.llm._tracker import Scope
from dodo_ingest.delivery import Ingestion

from . import payloads
from .conftest import PrecheckedSink, RecordingSink

MESSAGES: Any = [{"role": "user", "content": "hi"}]
INT64_MAX = 2**63 - 1


class CapturingTransport:
    """Keeps every batch body the pipeline sends and acknowledges all its events."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, body: bytes) -> int:
        self.bodies.append(body)
        return len(json.loads(body)["events"])

    def close(self) -> None:
        pass


class TrackOnly:
    """Forwards to ``Ingestion.track()``, the public, validating entry (no trusted entry)."""

    def __init__(self, ingestion: Ingestion) -> None:
        self.ingestion = ingestion

    def track(
        self,
        customer_id: str,
        event_name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        return self.ingestion.track(customer_id, event_name, metadata, event_id=event_id)


def _without_timestamps(bodies: list[bytes]) -> list[bytes]:
    return [re.sub(rb'"timestamp":\s*"[^"]*"', b'"timestamp":""', body) for body in bodies]


def _chat(body: dict[str, Any]) -> Callable[[LLMTracker], None]:
    def call(tracker: LLMTracker) -> None:
        client = tracker.wrap(openai.OpenAI(api_key="sk-test", max_retries=0), "cus_1", {"a": 1})
        with respx.mock() as router:
            router.post(url__regex=r"/chat/completions$").mock(
                return_value=httpx2.Response(200, content=json.dumps(body).encode())
            )
            with tracker.customer("cus_2", metadata={"plan": "pro", "seats": 2.5}):
                client.chat.completions.create(model="m", messages=MESSAGES)

    return call


def _claude(tracker: LLMTracker) -> None:
    usage = {**payloads.ANTHROPIC_USAGE, "server_tool_use": {"web_search_requests": 3}}
    message = {**payloads.anthropic_message(), "usage": usage}
    client = tracker.wrap(anthropic.Anthropic(api_key="sk-test", max_retries=0), "cus_1")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages").mock(return_value=payloads.json_response(message))
        client.messages.create(model=payloads.CLAUDE, max_tokens=64, messages=MESSAGES)


def _gemini(tracker: LLMTracker) -> None:
    usage = {
        **payloads.GEMINI_USAGE,
        "promptTokensDetails": [{"modality": "AUDIO", "tokenCount": 70}],
        "trafficType": "ON_DEMAND",
    }
    client = tracker.wrap(genai.Client(api_key="sk-test"), "cus_1", {"feature": "é"})
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").mock(
            return_value=payloads.json_response(payloads.gemini_response(usage=usage))
        )
        client.models.generate_content(model=payloads.GEMINI, contents="hi")


CASES: dict[str, Callable[[LLMTracker], None]] = {
    "openai chat": _chat(payloads.chat_completion()),
    "over-long model name": _chat(payloads.chat_completion(model="m" * 700)),
    "non-ASCII model name": _chat(payloads.chat_completion(model="modèle-ß")),
    "model name with a lone surrogate": _chat(payloads.chat_completion(model="m\ud800x")),
    "impossible counts": _chat(
        payloads.chat_completion(usage={**payloads.CHAT_USAGE, "prompt_tokens": -4})
    ),
    "anthropic fees and dimensions": _claude,
    "gemini modalities": _gemini,
}
TRACKERS: dict[str, dict[str, Any]] = {
    "one event": {},
    "split, weights and prices": {
        "split_events": ("llm.in", "llm.out"),
        "request_weights": {"*": "2.5"},
        "prices": {"*": Price(input_per_million="0.15", output_per_million=2, per_request=1)},
    },
}


@pytest.fixture
def pipelines() -> Iterator[tuple[Ingestion, Ingestion, CapturingTransport, CapturingTransport]]:
    trusted, public = CapturingTransport(), CapturingTransport()
    with (
        Ingestion(api_key="k", event_name="e", transport=trusted) as first,
        Ingestion(api_key="k", event_name="e", transport=public) as second,
    ):
        yield first, second, trusted, public


@pytest.mark.parametrize("settings", TRACKERS.values(), ids=TRACKERS.keys())
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_trusted_path_delivers_what_track_delivers(
    case: Callable[[LLMTracker], None],
    settings: dict[str, Any],
    pipelines: tuple[Ingestion, Ingestion, CapturingTransport, CapturingTransport],
) -> None:
    direct, public, trusted_transport, public_transport = pipelines
    trusted = LLMTracker(direct, "llm.chat", **settings)
    checked = LLMTracker(TrackOnly(public), "llm.chat", **settings)
    prechecked = getattr(Ingestion, "_track_prechecked", None)
    if prechecked is not None:  # the delivery pipeline offers its trusted entry
        assert getattr(trusted._prechecked, "__func__", None) is prechecked
    case(trusted)
    case(checked)
    assert direct.flush(timeout=10) and public.flush(timeout=10)
    assert trusted.stats.failures == checked.stats.failures == 0
    bodies = trusted_transport.bodies
    assert bodies and _without_timestamps(bodies) == _without_timestamps(public_transport.bodies)
    events = [event for body in bodies for event in json.loads(body)["events"]]
    assert len(events) == (2 if "split_events" in settings else 1)


def test_a_sink_with_a_trusted_entry_gets_every_event_through_it(
    sink: PrecheckedSink, tracker: LLMTracker
) -> None:
    plain = RecordingSink()
    for target in (tracker, LLMTracker(plain, "llm.chat_completion")):
        for case in CASES.values():
            case(target)
    assert sink.prechecked == len(sink.events) == len(CASES)
    assert [e.metadata for e in sink.events] == [e.metadata for e in plain.events]
    assert [e.event_id for e in sink.events] == [e.event_id for e in plain.events]


def test_provider_strings_an_event_cannot_carry_are_fitted(
    sink: PrecheckedSink, tracker: LLMTracker
) -> None:
    _chat(payloads.chat_completion(model="m" * 700))(tracker)
    _chat(payloads.chat_completion(model="m\ud800x"))(tracker)
    _chat(payloads.chat_completion(model=["not", "a", "name"]))(tracker)
    long, surrogate, listed = sink.metadata()
    assert long["model"] == "m" * 500  # cut to the API's 500 characters, still billed
    assert surrogate["model"] == "m\\ud800x"  # escaped: UTF-8 cannot carry it
    assert "model" not in listed
    assert long["inputTokens"] == surrogate["inputTokens"] == listed["inputTokens"] == 1117
    assert tracker.stats.failures == 0


def test_a_usage_record_built_elsewhere_with_an_impossible_value_is_not_trusted(
    sink: PrecheckedSink, tracker: LLMTracker
) -> None:
    """A framework integration builds its own records: a value the API refuses goes to the
    sink's checking entry, whose error is counted, never raised into the call."""
    usage = LLMUsage("openai", "chat.completions", "m", 1, 2, modalities={"x": INT64_MAX + 1})
    tracker.record(usage, Scope("cus_1", {}))
    assert sink.prechecked == 0 and sink.events == []
    assert tracker.stats.failures == 1
    tracker.record(LLMUsage("openai", "chat.completions", "m", 1, 2), Scope("cus_1", {}))
    assert sink.prechecked == 1


def test_gemini_modality_counts_summing_beyond_int64_are_left_out(
    sink: PrecheckedSink, tracker: LLMTracker
) -> None:
    usage = {
        **payloads.GEMINI_USAGE,
        "promptTokensDetails": [
            {"modality": "AUDIO", "tokenCount": INT64_MAX},
            {"modality": "AUDIO", "tokenCount": 5},
            {"modality": "IMAGE", "tokenCount": 7},
        ],
    }
    client = tracker.wrap(genai.Client(api_key="sk-test"), "cus_1")
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").mock(
            return_value=payloads.json_response(payloads.gemini_response(usage=usage))
        )
        client.models.generate_content(model=payloads.GEMINI, contents="hi")
    metadata = sink.only().metadata
    assert "audioInputTokens" not in metadata
    assert metadata["imageInputTokens"] == 7
    assert metadata["invalidUsage"] == "audioInputTokens"
    assert metadata["inputTokens"] == 1080


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda t: t.wrap(openai.OpenAI(api_key="sk-test"), "cus_\ud800"), "customer_id"),
        (lambda t: t.customer("cus_\udfff"), "customer_id"),
        (lambda t: LLMTracker(RecordingSink(), "llm.\ud800"), "event_name"),
        (lambda t: LLMTracker(RecordingSink(), request_weights={"*": 2**63}), "request_weights.*"),
        (
            lambda t: t.track(
                openai.types.chat.ChatCompletion.model_validate(payloads.chat_completion()),
                "cus_1",
                provider="p" * 501,
            ),
            "provider",
        ),
    ],
    ids=["wrap customer", "scope customer", "event name", "weight", "track provider"],
)
def test_what_the_trusted_path_relies_on_is_refused_when_given(
    build: Callable[[LLMTracker], object], field: str, tracker: LLMTracker
) -> None:
    with pytest.raises(EventValidationError) as refused:
        build(tracker)
    assert refused.value.field == field
