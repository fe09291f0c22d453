"""The exactness contract: ``usageSource`` on every event, and the detector for usage fields
the tracker does not know (real SDKs, HTTP mocked by respx; every payload is checked against
the SDK's own response model first)."""

from __future__ import annotations

import copy
import logging
import typing
from typing import Any

import anthropic
import openai
import pydantic
import pytest
import respx
from anthropic.types import Message
from anthropic.types.beta import BetaMessage
from google import genai
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage

from . import payloads
from .conftest import RecordingSink

MESSAGES: Any = [{"role": "user", "content": "hi"}]
NO_CACHE = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def verified(model: type[pydantic.BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """``body``, after checking that the SDK's response model accepts it as it is."""
    model.model_validate(body)
    return body


# ------------------------------------------------------------------------- usageSource


def test_usage_source_of_each_kind_of_record() -> None:
    exact = LLMUsage("openai", "chat.completions", input_tokens=3, output_tokens=1)
    partial = LLMUsage("anthropic", "messages", input_tokens=3, complete=False)
    cut = LLMUsage("openai", "chat.completions", input_tokens=3, complete=False, cut_off=True)
    assert exact.to_metadata()["usageSource"] == "provider"
    assert partial.to_metadata()["usageSource"] == "incomplete"
    assert (cut.to_metadata()["usageSource"], cut.to_metadata()["status"]) == (
        "estimated",
        "cut_off",
    )


def test_every_event_says_where_its_numbers_come_from(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    stream = client.messages.create(model="c", max_tokens=5, messages=MESSAGES, stream=True)
    next(iter(stream))  # message_start only: input known, output never reported
    stream.close()
    complete, incomplete = sink.metadata()
    assert complete["usageSource"] == "provider"
    assert incomplete["usageSource"] == "incomplete"
    assert "outputTokens" not in incomplete


# ---------------------------------------------------------------- unknown usage fields


def test_an_invented_openai_usage_field_is_reported_counted_and_logged_once(
    tracker: LLMTracker, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    usage = {
        **payloads.CHAT_USAGE,
        "prompt_tokens_details": {"cached_tokens": 1024, "video_tokens": 300},
        "surcharge_units": 2,
        "zero_valued_new_field": 0,  # carries no amount: not reported
    }
    body = verified(ChatCompletion, payloads.chat_completion(usage=usage))
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router, caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        router.post(url__regex=r"/chat/completions$").respond(200, json=body)
        client.chat.completions.create(model="m", messages=MESSAGES)
        client.chat.completions.create(model="m", messages=MESSAGES)
    first, second = sink.metadata()
    assert first["unknownUsage"] == "prompt_tokens_details.video_tokens,surcharge_units"
    assert first["inputTokens"] == 1117  # the known counts are billed as before
    assert second == first
    assert tracker.stats.unknown_usage == 2
    assert caplog.text.count("fields the tracker does not know") == 1


def test_known_fields_with_amounts_are_not_reported(
    tracker: LLMTracker, sink: RecordingSink, provider_mock: respx.MockRouter
) -> None:
    openai_client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    openai_client.chat.completions.create(model="m", messages=MESSAGES)
    openai_client.responses.create(model="m", input="hi")
    claude = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    claude.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    gemini = genai.Client(api_key="k")
    tracker.wrap(gemini, customer_id="c")
    gemini.models.generate_content(model=payloads.GEMINI, contents="hi")
    assert len(sink.events) == 4
    assert all("unknownUsage" not in metadata for metadata in sink.metadata())
    assert tracker.stats.unknown_usage == 0


def test_responses_tool_usage_the_tracker_does_not_bill_is_reported(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    image_gen = {
        "input_tokens": 50,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
        "output_tokens": 4160,
        "total_tokens": 4210,
    }
    body = verified(
        Response,
        {
            **payloads.response_object(usage=payloads.RESPONSES_USAGE),
            "tool_usage": {"image_gen": image_gen, "web_search": {"num_requests": 0}},
        },
    )
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/responses$").respond(200, json=body)
        client.responses.create(model="m", input="hi")
    assert sink.only().metadata["unknownUsage"] == "tool_usage.image_gen"


def test_anthropic_invented_server_tool_and_iteration_types(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "server_tool_use": {
            "web_search_requests": 0,
            "web_fetch_requests": 0,
            "code_execution_requests": 2,
        },
        "iterations": [
            {"type": "message", "input_tokens": 10, "output_tokens": 5, **NO_CACHE},
            {
                "type": "advisor_message",
                "model": "claude-opus-4-6",
                "input_tokens": 900,
                "output_tokens": 40,
                **NO_CACHE,
            },
        ],
    }
    body = verified(BetaMessage, {**payloads.anthropic_message(), "usage": usage})
    # an iteration type this SDK does not know yet either (it keeps it as a plain dict)
    usage["iterations"].append({"type": "retrieval", "input_tokens": 3, "output_tokens": 0})
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages").respond(200, json=body)
        client.beta.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    metadata = sink.only().metadata
    assert metadata["unknownUsage"] == (
        "server_tool_use.code_execution_requests,iterations[advisor_message],iterations[retrieval]"
    )
    assert metadata["advisorModel"] == "claude-opus-4-6"  # a price dimension to filter on


def test_anthropic_stream_reports_fields_from_start_and_delta(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    frames = payloads.anthropic_events()
    frames[0]["message"]["usage"]["priority_surcharge_tokens"] = 12
    delta = next(frame for frame in frames if frame["type"] == "message_delta")
    delta["usage"]["geo_surcharge_units"] = 1
    Message.model_validate({**frames[0]["message"], "content": []})
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").mock(
            side_effect=lambda request: payloads.sse_response(frames, named=True)
        )
        for _event in client.messages.create(
            model="c", max_tokens=5, messages=MESSAGES, stream=True
        ):
            pass
    metadata = sink.only().metadata
    assert metadata["unknownUsage"] == "priority_surcharge_tokens,geo_surcharge_units"
    assert metadata["outputTokens"] == 89


def test_gemini_sdk_fields_the_tracker_does_not_know_are_reported(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """google-genai drops undeclared JSON keys itself; the raw body a caller asks for with
    ``should_return_http_response`` keeps them, and the tracker reads usage from it."""
    usage = {**payloads.GEMINI_USAGE, "groundingSurchargeCount": 3, "newZeroCount": 0}
    body = payloads.gemini_response(usage=usage)
    genai_types.GenerateContentResponse._from_response(response=copy.deepcopy(body), kwargs={})
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").respond(200, json=body)
        client.models.generate_content(model=payloads.GEMINI, contents="hi")
        client.models.generate_content(
            model=payloads.GEMINI,
            contents="hi",
            config=genai_types.GenerateContentConfig(should_return_http_response=True),
        )
    parsed, raw = sink.metadata()
    assert "unknownUsage" not in parsed  # the SDK dropped the field before the tracker saw it
    assert raw["unknownUsage"] == "grounding_surcharge_count"
    assert raw["inputTokens"] == parsed["inputTokens"]


def test_an_unknown_field_list_is_cut_to_the_metadata_value_limit(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    usage = {**payloads.CHAT_USAGE, **{f"new_charge_{n:03}": 1 for n in range(100)}}
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").respond(
            200, json=payloads.chat_completion(usage=usage)
        )
        client.chat.completions.create(model="m", messages=MESSAGES)
    listed = sink.only().metadata["unknownUsage"]
    assert len(listed) == 500 and listed.startswith("new_charge_000,new_charge_001")


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    found: list[type[pydantic.BaseModel]] = []
    for arg in typing.get_args(annotation) or (annotation,):
        if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
            found.append(arg)
        elif typing.get_args(arg):
            found += _models_in(arg)
    return found


def _declared_but_unknown(
    model: type[pydantic.BaseModel], table: Any, prefix: str = ""
) -> set[str]:
    found: set[str] = set()
    for name, declared in model.model_fields.items():
        if name not in table:
            found.add(prefix + name)
        elif table[name] is not None:
            for nested in _models_in(declared.annotation):
                found |= _declared_but_unknown(nested, table[name], f"{prefix}{name}.")
    return found


def test_the_tables_know_every_usage_field_the_installed_sdks_declare() -> None:
    """A field an SDK upgrade declares fails this test until it is read, or listed as
    reported on purpose (a charge the tracker does not bill: docs/llm.md names them)."""
    from anthropic.types import MessageDeltaUsage, Usage
    from anthropic.types.beta import BetaMessageDeltaUsage, BetaUsage
    from openai.types import CompletionUsage, CreateEmbeddingResponse, ImagesResponse
    from openai.types.audio import Transcription
    from openai.types.responses import ResponseUsage

    from dodo_ingest.blueprints.llm import _known_fields as known

    openai_blocks = [
        CompletionUsage,
        ResponseUsage,
        *_models_in(CreateEmbeddingResponse.model_fields["usage"].annotation),
        *_models_in(ImagesResponse.model_fields["usage"].annotation),
        *_models_in(Transcription.model_fields["usage"].annotation),
    ]
    reported: dict[str, set[str]] = {}
    for block in openai_blocks:
        assert not _declared_but_unknown(block, known.OPENAI_USAGE_FIELDS), block
    for block in (Usage, MessageDeltaUsage, BetaUsage, BetaMessageDeltaUsage):
        reported[block.__name__] = _declared_but_unknown(block, known.ANTHROPIC_USAGE_FIELDS)
    for block in (genai_types.GenerateContentResponseUsageMetadata, genai_types.UsageMetadata):
        reported[block.__name__] = _declared_but_unknown(block, known.GEMINI_USAGE_FIELDS)
    for block in _models_in(Response.model_fields["tool_usage"].annotation):
        reported["tool_usage"] = _declared_but_unknown(block, known.OPENAI_TOOL_USAGE_FIELDS)
    assert reported == {
        "Usage": set(),
        "MessageDeltaUsage": set(),
        "BetaUsage": {"fallback_credit"},
        "BetaMessageDeltaUsage": {"fallback_credit"},
        "GenerateContentResponseUsageMetadata": set(),
        "UsageMetadata": {"response_token_count", "response_tokens_details"},
        "tool_usage": {"image_gen"},
    }


def test_unknown_field_names_that_are_not_ascii_are_escaped(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    usage = {**payloads.CHAT_USAGE, "coût_unités": 3}
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="c")
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").respond(
            200, json=payloads.chat_completion(usage=usage)
        )
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert sink.only().metadata["unknownUsage"] == "co\\xfbt_unit\\xe9s"
