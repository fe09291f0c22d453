"""Batch results billed per line: a full round trip through each real SDK (create, poll, fetch
the results) over respx, then ``tracker.track_batch()``."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import groq
import openai
import pytest
import respx
from anthropic.types.messages import MessageBatchIndividualResponse
from google import genai
from google.genai import types as genai_types
from openai.types.chat import ChatCompletion

from dodo_ingest import EventValidationError
from dodo_ingest.blueprints.llm import LLMTracker, Price

from . import payloads
from .conftest import RecordingSink

BATCH = "batch_6f1c0c2a9d3b4e8fa7b6c5d4"


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _openai_line(number: int, custom_id: str, prompt: int) -> dict[str, Any]:
    usage = {"prompt_tokens": prompt, "completion_tokens": 10, "total_tokens": prompt + 10}
    body = payloads.chat_completion(
        usage=usage, id=f"chatcmpl-B{number:03}q9hQ3nV7rT1sLmP0aZyW4uE", model="gpt-4o-mini"
    )
    ChatCompletion.model_validate(body)
    return {
        "id": f"batch_req_{number:032x}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": f"req_{number:032x}", "body": body},
        "error": None,
    }


def _openai_batch(status: str, output: str | None = None) -> dict[str, Any]:
    batch = {
        "id": BATCH,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": status,
        "created_at": 1767225600,
        "output_file_id": output,
        "request_counts": {"total": 3, "completed": 2, "failed": 1},
    }
    openai.types.Batch.model_validate(batch)
    return batch


def test_openai_batch_round_trip(sink: RecordingSink) -> None:
    tracker = LLMTracker(
        sink,
        prices={
            "gpt-4o-mini": Price(
                input_per_million=1,
                output_per_million=4,
                tiers={"batch": Price(input_per_million="0.5", output_per_million=2)},
            )
        },
    )
    client = tracker.wrap(openai.OpenAI(api_key="k", max_retries=0), customer_id="cus_owner")
    output = [
        _openai_line(1, "cus_acme:q1", 100),
        _openai_line(2, "cus_globex:q2", 200),
        {  # a failed request is not billed
            "id": "batch_req_3",
            "custom_id": "cus_acme:q3",
            "response": {"status_code": 400, "request_id": "req_3", "body": {"error": {}}},
            "error": None,
        },
    ]
    polls = iter([_openai_batch("in_progress"), _openai_batch("completed", "file-out")])
    with respx.mock() as router:
        router.post(url__regex=r"/files$").respond(
            200,
            json={
                "id": "file-in",
                "object": "file",
                "bytes": 10,
                "created_at": 1767225600,
                "filename": "in.jsonl",
                "purpose": "batch",
            },
        )
        router.post(url__regex=r"/batches$").respond(200, json=_openai_batch("validating"))
        router.get(url__regex=rf"/batches/{BATCH}$").mock(
            side_effect=lambda request: payloads.json_response(next(polls))
        )
        router.get(url__regex=r"/files/file-out/content$").respond(200, content=_jsonl(output))
        uploaded = client.files.create(file=("in.jsonl", b"{}"), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        while batch.status != "completed":
            batch = client.batches.retrieve(batch.id)
        assert batch.output_file_id is not None
        text = client.files.content(batch.output_file_id).text
    assert sink.events == []  # managing a batch bills nothing
    ids = tracker.track_batch(text)
    assert [event.customer_id for event in sink.events] == ["cus_acme", "cus_globex"]
    first, second = sink.metadata()
    assert (first["inputTokens"], first["outputTokens"], first["serviceTier"]) == (100, 10, "batch")
    assert first["costCents"] == pytest.approx((100 * 0.5 + 10 * 2) / 10**6 * 100)
    assert second["inputTokens"] == 200
    # idempotent per line: the same results again give the same ids
    assert tracker.track_batch(json.loads(line) for line in text.splitlines()) == ids
    assert len(set(ids)) == 2


def test_anthropic_batch_round_trip(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = tracker.wrap(anthropic.Anthropic(api_key="k", max_retries=0), customer_id="cus_o")
    batch_id = "msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d"

    def batch(status: str) -> dict[str, Any]:
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {
                "processing": 0,
                "succeeded": 2,
                "errored": 1,
                "canceled": 0,
                "expired": 0,
            },
            "ended_at": None,
            "created_at": "2026-12-04T07:00:00Z",
            "expires_at": "2026-12-05T07:00:00Z",
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"https://api.anthropic.com/v1/messages/batches/{batch_id}/results"
            if status == "ended"
            else None,
        }

    def result(custom_id: str, message_id: str) -> dict[str, Any]:
        message = {**payloads.anthropic_message(), "id": message_id}
        message["usage"] = {**payloads.ANTHROPIC_USAGE, "service_tier": "batch"}
        line = {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}
        MessageBatchIndividualResponse.model_validate(line)
        return line

    results = [
        result("req-a", "msg_01Ab3Cd5Ef7Gh9Ij1Kl3MnAA"),
        result("req-b", "msg_01Ab3Cd5Ef7Gh9Ij1Kl3MnBB"),
        {"custom_id": "req-c", "result": {"type": "errored", "error": {"type": "error"}}},
    ]
    polls = iter([batch("in_progress")])  # then ended (results() retrieves it again)
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages/batches$").respond(200, json=batch("in_progress"))
        router.get(url__regex=rf"/v1/messages/batches/{batch_id}$").mock(
            side_effect=lambda request: payloads.json_response(next(polls, batch("ended")))
        )
        router.get(url__regex=rf"/v1/messages/batches/{batch_id}/results$").respond(
            200, content=_jsonl(results)
        )
        created = client.messages.batches.create(
            requests=[
                {"custom_id": f"req-{x}", "params": {"model": "c", "max_tokens": 5, "messages": []}}
                for x in "abc"
            ]
        )
        while client.messages.batches.retrieve(created.id).processing_status != "ended":
            pass
        lines = list(client.messages.batches.results(created.id))
    assert sink.events == []
    owners = {"req-a": "cus_acme", "req-b": "cus_globex", "req-c": "cus_acme"}
    ids = tracker.track_batch(lines, customers=owners, metadata={"job": "nightly"})
    assert [event.customer_id for event in sink.events] == ["cus_acme", "cus_globex"]
    assert all(event.metadata["serviceTier"] == "batch" for event in sink.events)
    assert sink.events[0].metadata["job"] == "nightly"
    assert sink.events[0].metadata["inputTokens"] == payloads.ANTHROPIC_METADATA["inputTokens"]
    assert tracker.track_batch(lines, customers=owners.get, metadata={"job": "nightly"}) == ids


def test_gemini_batch_round_trip(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="cus_o")
    name = "batches/123456"

    def operation(state: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "state": state, "model": "models/gemini"}
        if state == "BATCH_STATE_SUCCEEDED":
            responses = [
                {
                    "response": payloads.gemini_response(response_id=f"bq3uZcK9Dd2Ry8IP7nWv{n}Aa"),
                    "metadata": {"custom_id": f"cus_{n}:r"},
                }
                for n in (1, 2)
            ]
            responses.append({"error": {"code": 3, "message": "bad"}, "metadata": {}})
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
        return {"name": name, "metadata": metadata, "done": state == "BATCH_STATE_SUCCEEDED"}

    polls = iter([operation("BATCH_STATE_RUNNING"), operation("BATCH_STATE_SUCCEEDED")])
    with respx.mock() as router:
        router.post(url__regex=r":batchGenerateContent$").respond(
            200, json=operation("BATCH_STATE_PENDING")
        )
        router.get(url__regex=rf"/{name}$").mock(
            side_effect=lambda request: payloads.json_response(next(polls))
        )
        job = client.batches.create(
            model=payloads.GEMINI,
            src=[
                genai_types.InlinedRequest(contents="hi", metadata={"custom_id": f"cus_{n}:r"})
                for n in (1, 2, 3)
            ],
        )
        assert job.name is not None
        while job.state != genai_types.JobState.JOB_STATE_SUCCEEDED:
            job = client.batches.get(name=job.name)
    assert sink.events == []
    assert job.dest is not None and job.dest.inlined_responses is not None
    tracker.track_batch(job.dest.inlined_responses)
    assert [event.customer_id for event in sink.events] == ["cus_1", "cus_2"]
    assert sink.events[0].metadata["inputTokens"] == payloads.GEMINI_METADATA["inputTokens"]
    assert sink.events[0].metadata["serviceTier"] == "batch"


def test_gemini_file_lines_are_unique_per_batch(tracker: LLMTracker, sink: RecordingSink) -> None:
    line = {"key": "request-1", "response": {**payloads.gemini_response(), "responseId": None}}
    del line["response"]["responseId"]
    first = tracker.track_batch(_jsonl([line]), "cus_1", batch_id="batches/1")
    again = tracker.track_batch([line], "cus_1", batch_id="batches/1")
    other = tracker.track_batch([line], "cus_1", batch_id="batches/2")
    assert first == again and first != other


def test_batch_lines_without_a_customer_are_refused_before_billing(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    lines = [_openai_line(1, "cus_a:1", 10), _openai_line(2, "no-customer", 10)]
    with pytest.raises(EventValidationError, match=r"results\[1\]\.custom_id"):
        tracker.track_batch(lines)
    assert sink.events == []
    with pytest.raises(TypeError, match="batch"):
        tracker.track_batch([{"unrelated": 1}])
    with pytest.raises(TypeError, match="JSONL"):
        tracker.track_batch(42)


def test_groq_batch_output_is_read_like_openai_s(tracker: LLMTracker, sink: RecordingSink) -> None:
    """Groq's batch output file has OpenAI's line format; ``provider`` names the host."""
    client = groq.Groq(api_key="gsk-test", max_retries=0)
    output = _jsonl([_openai_line(1, "cus_a:1", 30), _openai_line(2, "cus_b:2", 40)])
    with respx.mock() as router:
        router.get("https://api.groq.com/openai/v1/files/file_out/content").respond(
            200, content=output
        )
        text = client.files.content("file_out").text()
    ids = tracker.track_batch(text, provider="groq", batch_id="batch_01")
    assert len(ids) == 2
    assert [(e.customer_id, e.metadata["provider"]) for e in sink.events] == [
        ("cus_a", "groq"),
        ("cus_b", "groq"),
    ]
    assert [e.metadata["serviceTier"] for e in sink.events] == ["batch", "batch"]
    assert [e.metadata["inputTokens"] for e in sink.events] == [30, 40]
