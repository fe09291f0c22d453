"""Impossible usage values are never billed: the field is left out and flagged, the rest of the
usage is kept (real SDKs, HTTP mocked by respx)."""

from __future__ import annotations

import json
import logging
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import respx
from google import genai

from dodo_ingest.blueprints.llm import LLMTracker, Price

from . import payloads
from .conftest import RecordingSink

MESSAGES: Any = [{"role": "user", "content": "hi"}]
INT64_MAX = 2**63 - 1


def _raw_json(body: dict[str, Any]) -> httpx2.Response:
    """A JSON body as a lenient server writes it (``NaN``/``Infinity`` literals allowed)."""
    return httpx2.Response(
        200, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )


def _chat(tracker: LLMTracker, usage: dict[str, Any], **extra: Any) -> dict[str, Any]:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_1")
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(
            return_value=_raw_json(payloads.chat_completion(usage=usage, **extra))
        )
        client.chat.completions.create(model="m", messages=MESSAGES)
    metadata: dict[str, Any] = tracker._sink.events[-1].metadata  # type: ignore[attr-defined]
    return metadata


@pytest.mark.parametrize(
    "bad",
    [-5, 12.5, INT64_MAX + 1, 1e30, None],
    ids=["negative", "fractional", "beyond-int64", "huge-float", "null"],
)
def test_an_impossible_input_count_is_left_out_and_flagged(
    bad: object, tracker: LLMTracker, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {**payloads.CHAT_USAGE, "prompt_tokens": bad}
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        metadata = _chat(tracker, usage)
    assert "inputTokens" not in metadata
    assert "totalTokens" not in metadata
    assert metadata["outputTokens"] == 46  # the rest is kept
    assert metadata["cachedInputTokens"] == 1024
    assert metadata["reasoningTokens"] == 32
    if bad is None:  # absent is not impossible: unknown, not flagged
        assert "invalidUsage" not in metadata
        assert tracker.stats.invalid_usage == 0
    else:
        assert metadata["invalidUsage"] == "inputTokens,totalTokens"
        assert tracker.stats.invalid_usage == 1
        assert "impossible usage values for inputTokens" in caplog.text
    assert tracker.stats.failures == 0


@pytest.mark.parametrize("bad", ["12", True, [12], {"n": 12}])
def test_counts_that_are_not_numbers_are_left_out_and_flagged(
    bad: object, tracker: LLMTracker
) -> None:
    """The SDK itself converts its typed fields ("12" -> 12); extras reach the tracker as
    sent (here DeepSeek's ``prompt_cache_hit_tokens``)."""
    usage = {"prompt_tokens": 20, "completion_tokens": 2, "prompt_cache_hit_tokens": bad}
    metadata = _chat(tracker, usage)
    assert "cachedInputTokens" not in metadata
    assert metadata["inputTokens"] == 20 and metadata["totalTokens"] == 22
    assert metadata["invalidUsage"] == "cachedInputTokens"


def test_negative_counts_never_lower_a_meter(tracker: LLMTracker, sink: RecordingSink) -> None:
    usage = {
        **payloads.CHAT_USAGE,
        "completion_tokens": -46,
        "prompt_tokens_details": {"cached_tokens": -1},
        "completion_tokens_details": {"reasoning_tokens": -3},
    }
    metadata = _chat(tracker, usage)
    numbers = [value for value in metadata.values() if isinstance(value, int | float)]
    assert numbers and min(numbers) >= 0
    assert metadata["inputTokens"] == 1117
    assert metadata["invalidUsage"] == "cachedInputTokens,outputTokens,reasoningTokens,totalTokens"


def test_integral_floats_are_counts(tracker: LLMTracker) -> None:
    usage = {"prompt_tokens": 10.0, "completion_tokens": 2.0, "total_tokens": 12.0}
    metadata = _chat(tracker, usage)
    assert metadata["inputTokens"] == 10 and type(metadata["inputTokens"]) is int
    assert metadata["totalTokens"] == 12
    assert "invalidUsage" not in metadata


def test_a_total_beyond_int64_is_left_out_and_the_counts_kept(tracker: LLMTracker) -> None:
    usage = {"prompt_tokens": 2**62, "completion_tokens": 2**62, "total_tokens": 0}
    metadata = _chat(tracker, usage)
    assert metadata["inputTokens"] == metadata["outputTokens"] == 2**62
    assert "totalTokens" not in metadata
    assert metadata["invalidUsage"] == "totalTokens"


@pytest.mark.parametrize("cost", [float("nan"), float("inf"), -0.5, "0.1"])
def test_a_nan_or_infinite_cost_no_longer_drops_the_event(
    cost: object, sink: RecordingSink
) -> None:
    """Regression: a NaN cost made the whole event (tokens included) fail validation."""
    tracker = LLMTracker(sink, prices={"*": Price(input_per_million=1, output_per_million=2)})
    client = tracker.wrap(
        openai.OpenAI(api_key="k", base_url="https://openrouter.ai/api/v1", max_retries=0), "c"
    )
    body = payloads.chat_completion(usage={**payloads.CHAT_USAGE, "cost": cost})
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(return_value=_raw_json(body))
        client.chat.completions.create(model="m", messages=MESSAGES)
    metadata = sink.only().metadata
    assert "costUsd" not in metadata
    assert metadata["invalidUsage"] == "costUsd"
    assert metadata["inputTokens"] == 1117 and metadata["outputTokens"] == 46
    assert metadata["costCents"] == pytest.approx((1117 * 1 + 46 * 2) / 1_000_000 * 100)
    assert tracker.stats.failures == 0 and tracker.stats.events == 1


def test_transcription_duration_must_be_finite(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    body = {"text": "hi", "usage": {"type": "duration", "seconds": float("inf")}}
    with respx.mock() as router:
        router.post(url__regex=r"/audio/transcriptions$").mock(return_value=_raw_json(body))
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"))
    metadata = sink.only().metadata
    assert "audioSeconds" not in metadata
    assert metadata["invalidUsage"] == "audioSeconds"


def test_anthropic_impossible_cache_read_drops_the_input_total_only(
    tracker: LLMTracker, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    body = payloads.anthropic_message()
    body["usage"] = {**payloads.ANTHROPIC_USAGE, "cache_read_input_tokens": -4096}
    with respx.mock() as router, caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        router.post(url__regex=r"/v1/messages$").respond(200, json=body)
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    first, second = sink.metadata()
    assert first == second
    assert "inputTokens" not in first and "cachedInputTokens" not in first
    assert first["outputTokens"] == payloads.ANTHROPIC_USAGE["output_tokens"]
    assert (
        first["cacheCreationInputTokens"] == payloads.ANTHROPIC_USAGE["cache_creation_input_tokens"]
    )
    assert first["invalidUsage"] == "cachedInputTokens,inputTokens,totalTokens"
    assert tracker.stats.invalid_usage == 2
    assert caplog.text.count("impossible usage values") == 1  # once per provider and key


def test_anthropic_impossible_compaction_iteration(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    body = payloads.anthropic_message()
    body["usage"] = {
        "input_tokens": 10,
        "output_tokens": 5,
        "iterations": [
            {"type": "compaction", "input_tokens": 100, "output_tokens": -7},
            {"type": "message", "input_tokens": 10, "output_tokens": 5},
        ],
    }
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages").respond(200, json=body)
        client.beta.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    metadata = sink.only().metadata
    assert metadata["inputTokens"] == 110
    assert "outputTokens" not in metadata
    assert metadata["invalidUsage"] == "outputTokens,totalTokens"


def test_gemini_impossible_thoughts_drop_the_output_total(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="c")
    usage = {**payloads.GEMINI_USAGE, "thoughtsTokenCount": -64}
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(
            200, json=payloads.gemini_response(usage=usage)
        )
        client.models.generate_content(model=payloads.GEMINI, contents="hi")
    metadata = sink.only().metadata
    assert metadata["inputTokens"] == 1080
    assert metadata["cachedInputTokens"] == 1024
    assert "outputTokens" not in metadata and "reasoningTokens" not in metadata
    assert metadata["invalidUsage"] == "outputTokens,reasoningTokens,totalTokens"
