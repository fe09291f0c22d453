"""Batch results: one usage record per succeeded line of an OpenAI, Anthropic or Gemini batch.

Batch APIs bill each request of a batch (at the batch rate) but answer through a results
file, not through a call a wrapped client sees. ``LLMTracker.track_batch()`` reads the
results the caller fetched:

- OpenAI: the output file's JSONL (``client.files.content(batch.output_file_id).text``), or
  its lines as dicts: ``{"id": "batch_req_…", "custom_id": …, "response": {"status_code":
  200, "body": {…usage…}}}``;
- Anthropic: ``client.messages.batches.results(batch_id)`` (or its JSONL): lines with
  ``custom_id`` and a ``result`` of type ``succeeded`` carrying the ``message``;
- Gemini: ``batch_job.dest.inlined_responses`` (``InlinedResponse`` objects whose
  ``metadata`` carries ``custom_id``), or the output file's JSONL lines ``{"key": …,
  "response": {…usageMetadata…}}``.

Lines that did not succeed (errors, cancelled or expired requests) are not billed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ._usage import (
    LLMUsage,
    anthropic_usage,
    as_mapping,
    field,
    gemini_usage,
    openai_usage,
    snake_case_keys,
    timestamp,
)

__all__ = ["BatchLine", "batch_lines"]

#: The operation of an OpenAI batch response body, by its ``object``.
_OPENAI_OBJECTS = {
    "chat.completion": "chat.completions",
    "response": "responses",
    "text_completion": "completions",
    "list": "embeddings",
}


@dataclass(slots=True)
class BatchLine:
    """One succeeded request of a batch: its ``custom_id`` and its usage."""

    custom_id: str | None
    usage: LLMUsage


def batch_lines(results: Any, provider: str | None, batch_id: str | None) -> Iterator[BatchLine]:
    """The usage of each succeeded line of ``results`` (JSONL text or bytes, or an iterable
    of lines: dicts or SDK objects). ``batch_id`` makes the ids of lines without a unique
    id of their own (Gemini file lines) unique per batch. Raises ``TypeError`` for a line
    of no known shape, ``ValueError`` for a line that is not JSON."""
    for number, line in enumerate(_lines(results)):
        usage, custom_id = _read(line, provider)
        if usage is None:
            continue
        usage.dimensions = {**(usage.dimensions or {}), "serviceTier": "batch"}
        if usage.response_id is None:  # unique in its batch only: made unique by batch id
            key = custom_id if custom_id is not None else f"line-{number}"
            usage.response_id = f"{batch_id or 'batch'}#{key}"
        yield BatchLine(custom_id, usage)


def _lines(results: Any) -> Iterable[Any]:
    if isinstance(results, bytes):
        results = results.decode()
    if isinstance(results, str):
        return (json.loads(text) for text in results.splitlines() if text.strip())
    if isinstance(results, Iterable):
        return results
    raise TypeError(f"batch results must be JSONL text or lines, got {type(results).__name__}")


def _read(line: Any, provider: str | None) -> tuple[LLMUsage | None, str | None]:
    """The usage of one line (``None`` when it did not succeed) and its custom id."""
    values = as_mapping(line)
    if "result" in values:  # Anthropic
        result = as_mapping(values["result"])
        if result.get("type") != "succeeded":
            return None, values.get("custom_id")
        message = as_mapping(result.get("message"))
        usage = anthropic_usage(
            message.get("usage"),
            provider or "anthropic",
            "messages",
            message.get("model"),
            message.get("id"),
        )
        return usage, values.get("custom_id")
    if "custom_id" in values and "response" in values:  # OpenAI
        response = as_mapping(values.get("response"))
        body = as_mapping(response.get("body"))
        if values.get("error") or response.get("status_code") != 200 or "usage" not in body:
            return None, values.get("custom_id")
        operation = _OPENAI_OBJECTS.get(str(body.get("object")), "chat.completions")
        response_id = body.get("id") if operation != "embeddings" else None
        created = body.get("created")
        usage = openai_usage(
            body.get("usage"),
            provider or "openai",
            operation,
            body.get("model"),
            response_id or values.get("id"),
            True,
            timestamp(created if created is not None else body.get("created_at")),
        )
        return usage, values.get("custom_id")
    if "response" in values or "key" in values:  # Gemini: inlined responses or file lines
        return _gemini(values, provider)
    raise TypeError(f"not a batch result line of a known provider: {type(line).__name__}")


def _gemini(values: Any, provider: str | None) -> tuple[LLMUsage | None, str | None]:
    metadata = as_mapping(values.get("metadata"))
    custom_id = metadata.get("custom_id") or values.get("key")
    response = values.get("response")
    if values.get("error") or response is None:
        return None, custom_id
    if isinstance(response, dict):  # a file line: the API's JSON, camelCase
        raw = response.get("usageMetadata")
        if not isinstance(raw, dict):
            return None, custom_id
        usage_block: Any = snake_case_keys(raw)
        model = response.get("modelVersion")
        response_id = response.get("responseId")
    else:
        usage_block = field(response, "usage_metadata")
        if usage_block is None:
            return None, custom_id
        model = field(response, "model_version")
        response_id = field(response, "response_id")
    usage = gemini_usage(
        usage_block, provider or "google", "generate_content", model, response_id or None
    )
    return usage, custom_id
