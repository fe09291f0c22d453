"""The usage fields the tracker knows, per API shape, and the detector for the ones it does not.

A provider that starts charging for something new usually says so with a new key in its
usage block (or, for Anthropic, a new ``iterations`` entry type). Every usage block is
checked against these tables; a key the tables do not know that carries an amount (anything
but ``None``, ``0``, ``False``, ``""`` or an empty block) is reported by its dotted path
(``prompt_tokens_details.video_tokens``, ``iterations[advisor_message]``), so the event can
say that part of the request may have gone unbilled.

"Known" means read and billed, or known not to change the bill (timings, subsets already
inside a billed total, informational flags).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from . import _usage

__all__ = [
    "ANTHROPIC_ITERATION_TYPES",
    "ANTHROPIC_USAGE_FIELDS",
    "GEMINI_USAGE_FIELDS",
    "OPENAI_TOOL_USAGE_FIELDS",
    "OPENAI_USAGE_FIELDS",
    "unknown_fields",
    "unknown_iterations",
]

#: Field name -> ``None`` (a value) or the table of a nested block.
Known = Mapping[str, Union["Known", None]]

_IMAGE_TEXT: Known = {"image_tokens": None, "text_tokens": None}

#: OpenAI-shaped usage (chat, legacy completions, Responses, embeddings, images,
#: transcriptions) and the extras of the compatible servers the tracker reads.
OPENAI_USAGE_FIELDS: Known = {
    "prompt_tokens": None,
    "completion_tokens": None,
    "input_tokens": None,
    "output_tokens": None,
    "total_tokens": None,
    "prompt_tokens_details": {
        "cached_tokens": None,
        "cache_write_tokens": None,
        "audio_tokens": None,
        "image_tokens": None,
        "text_tokens": None,
    },
    "input_tokens_details": {
        "cached_tokens": None,
        "cache_write_tokens": None,
        "cache_write_tokens_details": {"ttl_30m_tokens": None, "ttl_12h_tokens": None},
        "audio_tokens": None,
        "image_tokens": None,
        "text_tokens": None,
    },
    "input_token_details": {"audio_tokens": None, "text_tokens": None},
    "completion_tokens_details": {
        "reasoning_tokens": None,
        "audio_tokens": None,
        "accepted_prediction_tokens": None,
        "rejected_prediction_tokens": None,
        "text_tokens": None,
    },
    "output_tokens_details": {"reasoning_tokens": None, **_IMAGE_TEXT},
    # transcriptions billed by duration
    "type": None,
    "seconds": None,
    # OpenRouter: its own cost figure (costUsd) and how it was made up
    "cost": None,
    "is_byok": None,
    "cost_details": None,
    # DeepSeek: cache hits (cachedInputTokens) and misses (the rest of the input)
    "prompt_cache_hit_tokens": None,
    "prompt_cache_miss_tokens": None,
    # Groq timings
    "queue_time": None,
    "prompt_time": None,
    "completion_time": None,
    "total_time": None,
}

#: OpenAI Responses ``tool_usage``: hosted tools billed apart from ``usage``.
OPENAI_TOOL_USAGE_FIELDS: Known = {"web_search": {"num_requests": None}}

_ANTHROPIC_CACHE_CREATION: Known = {
    "ephemeral_5m_input_tokens": None,
    "ephemeral_1h_input_tokens": None,
}

#: Anthropic ``Usage``/``BetaUsage``/``MessageDeltaUsage`` (``iterations`` checked apart).
ANTHROPIC_USAGE_FIELDS: Known = {
    "input_tokens": None,
    "output_tokens": None,
    "cache_creation_input_tokens": None,
    "cache_read_input_tokens": None,
    "cache_creation": _ANTHROPIC_CACHE_CREATION,
    "output_tokens_details": {"thinking_tokens": None},
    "server_tool_use": {"web_search_requests": None, "web_fetch_requests": None},
    "service_tier": None,
    "inference_geo": None,
    "speed": None,
    "iterations": None,
}

#: ``iterations`` entry types whose billing the tracker knows: ``message`` entries are
#: inside the top-level counts, ``compaction`` entries are added to them. Advisor and fallback
#: entries may be billed at another model's price: they are reported.
ANTHROPIC_ITERATION_TYPES = frozenset({"message", "compaction"})

#: google-genai ``GenerateContentResponseUsageMetadata`` and ``UsageMetadata`` (the SDK drops
#: fields it does not declare itself, so only its own new fields can show up here).
GEMINI_USAGE_FIELDS: Known = {
    "prompt_token_count": None,
    "candidates_token_count": None,
    "thoughts_token_count": None,
    "tool_use_prompt_token_count": None,
    "cached_content_token_count": None,
    "total_token_count": None,
    "prompt_tokens_details": None,
    "candidates_tokens_details": None,
    "cache_tokens_details": None,
    "tool_use_prompt_tokens_details": None,
    "traffic_type": None,
    "service_tier": None,
}


def unknown_fields(block: Any, known: Known, prefix: str = "") -> list[str]:
    """Dotted paths of the keys of the usage block ``block`` (an SDK model or a mapping) that
    ``known`` does not list and that carry an amount; nested blocks are checked against their
    own tables.

    An SDK model whose declared fields are all known and that has no extras only has its
    nested blocks checked (the answer per model type is cached)."""
    if block is None:
        return []
    cls = type(block)
    entry = _PLAIN.get(cls)
    if entry is None or entry[0] is not known:
        declared = getattr(cls, "__pydantic_fields__", None)
        entry = (known, None if declared is None else _plain_nested(declared, known))
        if len(_PLAIN) < _PLAIN_KEPT:
            _PLAIN[cls] = entry
    nested = entry[1]
    if nested is not None and not block.__pydantic_extra__:
        if not nested:
            return []
        found: list[str] = []
        values = block.__dict__
        for name, table in nested:
            value = values.get(name)
            if value is not None:
                found += unknown_fields(value, table, f"{prefix}{name}.")
        return found
    found = []
    for name, value in _usage.as_mapping(block).items():
        if name not in known:
            if _carries(value):
                found.append(prefix + name)
        else:
            block_table = known[name]
            if block_table is not None and value is not None:
                found += unknown_fields(value, block_table, f"{prefix}{name}.")
    return found


#: Usage block type -> (the table it was last checked against, the nested blocks to check
#: when it is an SDK model type declaring only fields of that table, else ``None``).
_PLAIN: dict[type[Any], tuple[Known, tuple[tuple[str, Known], ...] | None]] = {}
_PLAIN_KEPT = 1024


def _plain_nested(
    declared: Mapping[str, Any], known: Known
) -> tuple[tuple[str, Known], ...] | None:
    """For a model type declaring ``declared``: ``None`` when it declares a field ``known``
    does not list, else the declared fields that are nested blocks, with their tables."""
    if not declared.keys() <= known.keys():
        return None
    return tuple((name, table) for name in declared if (table := known[name]) is not None)


def unknown_iterations(iterations: Any) -> list[str]:
    """``iterations[<type>]`` for each Anthropic iteration type the tracker does not know."""
    found: list[str] = []
    for iteration in iterations or ():
        kind = _usage.as_mapping(iteration).get("type")
        if kind not in ANTHROPIC_ITERATION_TYPES:
            name = f"iterations[{kind}]"
            if name not in found:
                found.append(name)
    return found


def _carries(value: Any) -> bool:
    """True when ``value`` may be an amount: anything but nothing, zero, or blocks of those."""
    if value is None or value is False or value == 0 or value == "":
        return False
    if isinstance(value, (list, tuple)):
        return any(_carries(item) for item in value)
    if isinstance(value, (str, int, float)):
        return True
    return any(_carries(item) for item in _usage.as_mapping(value).values())
