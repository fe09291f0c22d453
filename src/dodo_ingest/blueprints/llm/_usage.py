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
from types import MappingProxyType
from typing import Any

from ...client._models import MetadataValue

__all__ = [
    "LLMUsage",
    "anthropic_usage",
    "as_mapping",
    "count",
    "field",
    "gemini_usage",
    "gemini_usage_from_body",
    "openai_usage",
    "request_id_of",
    "timestamp",
]


@dataclass(slots=True)
class LLMUsage:
    """Token usage of one billable LLM request, normalised across providers.

    ``complete`` is False when the provider's final usage was never seen (a stream that was
    abandoned or failed midway); the counts are then what was known at that point, and unknown
    counts stay ``None`` (they are never estimated). The one exception is ``cut_off``: a stream
    the credit gate stopped (``LLMTracker(gate_cutoff=True)``), whose counts the provider did
    not report are estimated from the request and the streamed text (``status: "cut_off"``).
    ``created`` is the creation time an
    OpenAI-shaped response reports (``created``/``created_at``); it is part of the event id,
    so servers that reuse short response ids still give each response its own event.
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
    created: float | None = None
    cut_off: bool = False

    @property
    def total_tokens(self) -> int | None:
        """``input_tokens + output_tokens`` when both are known."""
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def to_metadata(self) -> dict[str, MetadataValue]:
        """The event metadata keys for this usage; keys whose value is unknown are left out."""
        return self.write_metadata({})

    def write_metadata(self, metadata: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        """Add the keys of :meth:`to_metadata` to ``metadata`` and return it."""
        metadata["provider"] = self.provider
        metadata["operation"] = self.operation
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
            metadata["status"] = "cut_off" if self.cut_off else "incomplete"
        return metadata


def field(obj: Any, name: str) -> Any:
    """``obj.name`` or ``obj[name]``; ``None`` when missing (SDK models, extras and dicts).

    Pydantic models are read through their ``__dict__`` and extras: a missing attribute on a
    model goes through its ``__getattr__`` and an exception, which costs microseconds.
    """
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    values = getattr(obj, "__dict__", None)
    if values is None:
        return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    if name in values:
        return values[name]
    if type(obj) in _PYDANTIC_TYPES or hasattr(type(obj), "__pydantic_fields__"):
        _PYDANTIC_TYPES.add(type(obj))
        extra = obj.__pydantic_extra__
        return extra.get(name) if extra else None
    return getattr(obj, name, None)


_PYDANTIC_TYPES: set[type[Any]] = set()
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def as_mapping(obj: Any) -> Mapping[str, Any]:
    """The fields (and pydantic extras) of ``obj`` as a mapping; empty for ``None``.

    Reading a usage block through one mapping is several times faster than attribute access
    with defaults on pydantic models.
    """
    if obj is None:
        return _EMPTY
    if type(obj) is dict:
        return obj
    values = getattr(obj, "__dict__", None)
    if values is None:
        return obj if isinstance(obj, Mapping) else _EMPTY
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**values, **extra} if extra else values


def request_id_of(headers: Mapping[str, str] | None) -> str | None:
    """The provider's request id in response ``headers`` (read only when a stream ends without
    a response id: a header lookup on every stream costs more than it is worth)."""
    if headers is None:
        return None
    return headers.get("x-request-id") or headers.get("request-id")


def count(value: Any) -> int | None:
    """``value`` when it is a token count (an ``int``, not a ``bool``), else ``None``."""
    return value if type(value) is int else None


def timestamp(value: Any) -> float | None:
    """``value`` when it is a creation time (an ``int`` or ``float``, not a ``bool``)."""
    return value if type(value) is int or type(value) is float else None


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
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
    created: float | None = None,
) -> LLMUsage:
    """Normalise an OpenAI-shaped usage block (chat, Responses, embeddings, images, audio).

    Also reads the extras of OpenAI-compatible providers: OpenRouter ``cost``, DeepSeek
    ``prompt_cache_hit_tokens``, Groq's fields (same names as OpenAI's).
    """
    values = as_mapping(usage)
    get = values.get
    input_tokens = get("prompt_tokens")
    if type(input_tokens) is not int:
        input_tokens = count(get("input_tokens"))
    output_tokens = get("completion_tokens")
    if type(output_tokens) is not int:
        output_tokens = count(get("output_tokens"))
        if output_tokens is None and input_tokens is not None and operation == "embeddings":
            output_tokens = 0
    cached = cache_write = reasoning = None
    input_details = get("prompt_tokens_details") or get("input_tokens_details")
    if input_details is not None:
        details = as_mapping(input_details)
        cached = count(details.get("cached_tokens"))
        cache_write = count(details.get("cache_write_tokens"))
    if cached is None:
        cached = count(get("prompt_cache_hit_tokens"))
    output_details = get("completion_tokens_details") or get("output_tokens_details")
    if output_details is not None:
        reasoning = count(as_mapping(output_details).get("reasoning_tokens"))
    cost = get("cost")
    audio_seconds = None
    if get("type") == "duration":
        audio_seconds = _number(get("seconds"))
    return LLMUsage(  # positional (field order): keyword calls cost ~3x on the hot path
        provider,
        operation,
        model,
        input_tokens,
        output_tokens,
        cached,
        cache_write,
        reasoning,
        None if cost is None else _number(cost),
        audio_seconds,
        response_id,
        complete,
        created,
    )


def anthropic_usage(
    usage: Any,
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
    values = as_mapping(usage)
    read = count(values.get("cache_read_input_tokens"))
    created = count(values.get("cache_creation_input_tokens"))
    input_tokens = _add(_add(count(values.get("input_tokens")), read), created)
    output = count(values.get("output_tokens"))
    for iteration in values.get("iterations") or ():
        step = as_mapping(iteration)
        if step.get("type") == "compaction":
            step_input = _add(
                _add(count(step.get("input_tokens")), count(step.get("cache_read_input_tokens"))),
                count(step.get("cache_creation_input_tokens")),
            )
            input_tokens = _add(input_tokens, step_input)
            output = _add(output, count(step.get("output_tokens")))
    thinking = count(as_mapping(values.get("output_tokens_details")).get("thinking_tokens"))
    return LLMUsage(  # positional (field order), as in openai_usage
        provider,
        operation,
        model,
        input_tokens,
        output,
        read,
        created,
        thinking,
        None,
        None,
        response_id,
        complete,
    )


def gemini_usage(
    usage: Any,
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
) -> LLMUsage:
    """Normalise a Gemini usage block: input = prompt + tool-use prompt, output = candidates +
    thoughts (``prompt_token_count`` already includes cached content)."""
    values = as_mapping(usage)
    thoughts = count(values.get("thoughts_token_count"))
    output = _add(count(values.get("candidates_token_count")), thoughts)
    input_tokens = _add(
        count(values.get("prompt_token_count")), count(values.get("tool_use_prompt_token_count"))
    )
    if output is None and input_tokens is not None and operation == "embed_content":
        output = 0
    return LLMUsage(  # positional (field order), as in openai_usage
        provider,
        operation,
        model,
        input_tokens,
        output,
        count(values.get("cached_content_token_count")),
        None,
        thoughts,
        None,
        None,
        response_id,
        complete,
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
