"""The normalised usage record and the per-provider rules that produce it.

Providers count tokens differently; every record here follows one convention:

- ``input_tokens`` is every token billed as input: OpenAI ``prompt_tokens``/``input_tokens``
  (cached tokens already included), Anthropic ``input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens``, Gemini ``prompt_token_count + tool_use_prompt_token_count``.
- ``output_tokens`` is every token billed as output: OpenAI ``completion_tokens``/
  ``output_tokens`` (reasoning included), Anthropic ``output_tokens`` (thinking included),
  Gemini ``candidates_token_count + thoughts_token_count``.
- ``cached_input_tokens``, ``cache_creation_input_tokens`` and ``reasoning_tokens`` are subsets
  of those totals, reported where the provider gives them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...client._models import MetadataValue

__all__ = [
    "LLMUsage",
    "anthropic_usage",
    "count",
    "field",
    "gemini_usage",
    "gemini_usage_from_body",
    "openai_usage",
]


@dataclass(frozen=True, slots=True)
class LLMUsage:
    """Token usage of one billable LLM request, normalised across providers.

    ``complete`` is False when the provider's final usage was never seen (a stream that was
    abandoned or failed midway); the counts are then what was known at that point, and unknown
    counts stay ``None`` (they are never estimated).
    """

    provider: str
    operation: str
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost_usd: float | None = None
    audio_seconds: float | None = None
    response_id: str | None = None
    complete: bool = True

    @property
    def total_tokens(self) -> int | None:
        """``input_tokens + output_tokens`` when both are known."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def to_metadata(self) -> dict[str, MetadataValue]:
        """The event metadata keys for this usage; keys whose value is unknown are left out."""
        metadata: dict[str, MetadataValue] = {
            "provider": self.provider,
            "operation": self.operation,
        }
        if self.model:
            metadata["model"] = self.model
        if self.input_tokens is not None:
            metadata["inputTokens"] = self.input_tokens
        if self.output_tokens is not None:
            metadata["outputTokens"] = self.output_tokens
        total = self.total_tokens
        if total is not None:
            metadata["totalTokens"] = total
        if self.cached_input_tokens is not None:
            metadata["cachedInputTokens"] = self.cached_input_tokens
        if self.cache_creation_input_tokens is not None:
            metadata["cacheCreationInputTokens"] = self.cache_creation_input_tokens
        if self.reasoning_tokens is not None:
            metadata["reasoningTokens"] = self.reasoning_tokens
        if self.cost_usd is not None:
            metadata["costUsd"] = self.cost_usd
        if self.audio_seconds is not None:
            metadata["audioSeconds"] = self.audio_seconds
        if not self.complete:
            metadata["status"] = "incomplete"
        return metadata


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; ``None`` when missing (SDK models, extras and dicts)."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def count(value: Any) -> int | None:
    """``value`` when it is a token count (an ``int``, not a ``bool``), else ``None``."""
    return value if type(value) is int else None


def _number(value: Any) -> float | None:
    if type(value) is int or type(value) is float:
        return float(value)
    return None


def _add(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def openai_usage(
    usage: Any,
    *,
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
) -> LLMUsage:
    """Normalise an OpenAI-shaped usage block (chat, Responses, embeddings, images, audio).

    Also reads the extras of OpenAI-compatible providers: OpenRouter ``cost``, DeepSeek
    ``prompt_cache_hit_tokens``, Groq's fields (same names as OpenAI's).
    """
    input_tokens = count(field(usage, "prompt_tokens"))
    if input_tokens is None:
        input_tokens = count(field(usage, "input_tokens"))
    output_tokens = count(field(usage, "completion_tokens"))
    if output_tokens is None:
        output_tokens = count(field(usage, "output_tokens"))
    if output_tokens is None and input_tokens is not None and operation == "embeddings":
        output_tokens = 0
    input_details = field(usage, "prompt_tokens_details") or field(usage, "input_tokens_details")
    cached = count(field(input_details, "cached_tokens"))
    if cached is None:
        cached = count(field(usage, "prompt_cache_hit_tokens"))
    output_details = field(usage, "completion_tokens_details") or field(
        usage, "output_tokens_details"
    )
    audio_seconds = None
    if field(usage, "type") == "duration":
        audio_seconds = _number(field(usage, "seconds"))
    return LLMUsage(
        provider=provider,
        operation=operation,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_input_tokens=cached,
        cache_creation_input_tokens=count(field(input_details, "cache_write_tokens")),
        reasoning_tokens=count(field(output_details, "reasoning_tokens")),
        cost_usd=_number(field(usage, "cost")),
        audio_seconds=audio_seconds,
        response_id=response_id,
        complete=complete,
    )


def anthropic_usage(
    usage: Any,
    *,
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
) -> LLMUsage:
    """Normalise an Anthropic ``Usage``: input = input + cache reads + cache writes.

    Beta ``iterations`` of type ``compaction`` are not part of the top-level counts, so they
    are added.
    """
    read = count(field(usage, "cache_read_input_tokens"))
    created = count(field(usage, "cache_creation_input_tokens"))
    input_tokens = _add(_add(count(field(usage, "input_tokens")), read), created)
    output = count(field(usage, "output_tokens"))
    for iteration in field(usage, "iterations") or ():
        if field(iteration, "type") == "compaction":
            input_tokens = _add(
                input_tokens,
                _add(
                    _add(
                        count(field(iteration, "input_tokens")),
                        count(field(iteration, "cache_read_input_tokens")),
                    ),
                    count(field(iteration, "cache_creation_input_tokens")),
                ),
            )
            output = _add(output, count(field(iteration, "output_tokens")))
    return LLMUsage(
        provider=provider,
        operation=operation,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output,
        cached_input_tokens=read,
        cache_creation_input_tokens=created,
        reasoning_tokens=count(field(field(usage, "output_tokens_details"), "thinking_tokens")),
        response_id=response_id,
        complete=complete,
    )


def gemini_usage(
    usage: Any,
    *,
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
) -> LLMUsage:
    """Normalise a Gemini usage block: input = prompt + tool-use prompt, output = candidates +
    thoughts (``prompt_token_count`` already includes cached content)."""
    thoughts = count(field(usage, "thoughts_token_count"))
    output = _add(count(field(usage, "candidates_token_count")), thoughts)
    input_tokens = _add(
        count(field(usage, "prompt_token_count")),
        count(field(usage, "tool_use_prompt_token_count")),
    )
    if output is None and input_tokens is not None and operation == "embed_content":
        output = 0
    return LLMUsage(
        provider=provider,
        operation=operation,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output,
        cached_input_tokens=count(field(usage, "cached_content_token_count")),
        reasoning_tokens=thoughts,
        response_id=response_id,
        complete=complete,
    )


def gemini_usage_from_body(body: str | None) -> dict[str, Any] | None:
    """The ``usageMetadata`` of a raw Gemini JSON body, with snake_case keys."""
    if not body:
        return None
    data = json.loads(body)
    raw = data.get("usageMetadata") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    return {_snake(key): value for key, value in raw.items()}


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)
