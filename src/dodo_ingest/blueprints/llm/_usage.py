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

A value no count can have (negative, fractional, not a number, beyond int64; a cost or a
duration that is negative or not finite) is never billed: the field is left out and named in
``invalid`` (``invalidUsage`` on the event). A total built from such a value (Anthropic's
input, Gemini's output, ``totalTokens``) is left out with it; every other field is kept.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeGuard

from ...client._models import MAX_METADATA_VALUE_LENGTH, MetadataValue
from ._known_fields import (
    ANTHROPIC_USAGE_FIELDS,
    GEMINI_USAGE_FIELDS,
    OPENAI_USAGE_FIELDS,
    unknown_fields,
    unknown_iterations,
)

__all__ = [
    "INT64_MAX",
    "LLMUsage",
    "anthropic_usage",
    "as_mapping",
    "carried_text",
    "checked_count",
    "count",
    "field",
    "gemini_usage",
    "gemini_usage_from_body",
    "is_dimension",
    "openai_usage",
    "request_id_of",
    "snake_case_keys",
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
    OpenAI-shaped response reports (``created``/``created_at``); it is part of the event id.
    ``call_key`` is set when ``response_id`` is not known to be unique (see
    ``_event_ids``): a key of the response object (or stream) that makes its event id unique
    per call. ``invalid`` names the metadata keys left out because the provider reported an
    impossible value for them; ``unknown`` the usage fields the tracker does not know that
    carried an amount (see ``_known_fields``). ``cache_writes`` splits
    ``cache_creation_input_tokens`` by cache lifetime, by metadata key
    (``cacheWrite5mTokens``/``cacheWrite1hTokens``: Anthropic; ``cacheWrite30mTokens``/
    ``cacheWrite12hTokens``: OpenAI Responses). ``fees`` counts per-request charges by metadata key (``webSearchRequests``,
    ``webFetchRequests``, ``fileSearchCalls``, ``groundingQueries``); ``dimensions`` holds
    what else sets the price (``serviceTier``, ``speed``, ``inferenceGeo``, ``trafficType``);
    ``modalities`` the non-zero audio and image token counts inside the totals
    (``audioInputTokens``, ``imageInputTokens``, ``audioOutputTokens``,
    ``imageOutputTokens``). ``characters`` is the input text of a request billed per
    character (``audio.speech``: ``inputCharacters``).
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
    call_key: str | None = None
    invalid: tuple[str, ...] | None = None
    unknown: tuple[str, ...] | None = None
    cache_writes: dict[str, int] | None = None
    fees: dict[str, int] | None = None
    dimensions: dict[str, str] | None = None
    modalities: dict[str, int] | None = None
    characters: int | None = None

    @property
    def source(self) -> str:
        """Where the counts come from: ``provider`` (read from the response), ``incomplete``
        (what the provider reported before the stream ended early) or ``estimated`` (a
        stream the credit gate cut off: the counts the provider never sent are estimated)."""
        if self.cut_off:
            return "estimated"
        return "provider" if self.complete else "incomplete"

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
        provider = self.provider
        if type(provider) is str and len(provider) <= 100 and provider.isascii():
            metadata["provider"] = provider
        else:  # a framework's own provider name
            carried = carried_text(provider)
            if carried is not None:
                metadata["provider"] = carried
        metadata["operation"] = self.operation
        model = self.model
        if model:
            if type(model) is str and len(model) <= MAX_METADATA_VALUE_LENGTH and model.isascii():
                metadata["model"] = model
            else:
                carried = carried_text(model)
                if carried:
                    metadata["model"] = carried
        if self.input_tokens is not None:
            metadata["inputTokens"] = self.input_tokens
        if self.output_tokens is not None:
            metadata["outputTokens"] = self.output_tokens
        total = self.total_tokens
        if total is not None and total <= INT64_MAX:
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
        if self.cache_writes:
            metadata.update(self.cache_writes)
        if self.fees:
            metadata.update(self.fees)
        if self.dimensions:
            metadata.update(self.dimensions)
        if self.modalities:
            metadata.update(self.modalities)
        if self.characters is not None:
            metadata["inputCharacters"] = self.characters
        if not self.complete:
            metadata["status"] = "cut_off" if self.cut_off else "incomplete"
        metadata["usageSource"] = (
            "provider" if self.complete else "estimated" if self.cut_off else "incomplete"
        )
        if self.unknown:
            listed = ",".join(self.unknown)
            if not listed.isascii():  # a server's own key names: escaped, never invalid
                listed = listed.encode("ascii", "backslashreplace").decode()
            metadata["unknownUsage"] = listed[:MAX_METADATA_VALUE_LENGTH]
        invalid = self.invalid
        total_lost = total is not None and total > INT64_MAX
        if invalid or total_lost:
            names = set(invalid or ())
            if total_lost or "inputTokens" in names or "outputTokens" in names:
                names.add("totalTokens")
            metadata["invalidUsage"] = ",".join(sorted(names))
        return metadata


def carried_text(value: object) -> str | None:
    """A provider's string as an event can carry it: cut to 500 characters, lone surrogates
    (which UTF-8 cannot encode) escaped; ``None`` for anything but a string."""
    if not isinstance(value, str):
        return None
    value = str.__str__(value)[:MAX_METADATA_VALUE_LENGTH]
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-8", "backslashreplace").decode()[:MAX_METADATA_VALUE_LENGTH]
    return value


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


#: The largest count an event can carry (the API's integers are int64).
INT64_MAX = 2**63 - 1


def count(value: Any) -> int | None:
    """``value`` when it is a token count (an ``int`` from 0 to int64, not a ``bool``), else
    ``None``."""
    return value if type(value) is int and 0 <= value <= INT64_MAX else None


def is_dimension(value: Any) -> TypeGuard[str]:
    """True when ``value`` can be a price-dimension value on an event: a non-empty ASCII
    string of at most 100 characters (anything else a server sends is left out rather than
    making the event invalid)."""
    return type(value) is str and 0 < len(value) <= 100 and value.isascii()


def checked_count(value: Any, key: str, invalid: list[str]) -> int | None:
    """The count in ``value`` (``None`` when absent); an impossible value (negative,
    fractional, not a number, beyond int64) gives ``None`` and appends ``key`` (the metadata
    key it would have filled) to ``invalid``. Integral floats (``12.0``) count as integers."""
    if type(value) is int:
        if 0 <= value <= INT64_MAX:
            return value
    elif value is None:
        return None
    elif type(value) is float and value.is_integer() and 0 <= value <= INT64_MAX:
        return int(value)
    invalid.append(key)
    return None


def timestamp(value: Any) -> float | None:
    """``value`` when it is a creation time (a finite ``int`` or ``float``, not a ``bool``)."""
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    return None


def _amount(value: Any, key: str, invalid: list[str]) -> float | None:
    """A cost or a duration: a finite number >= 0; anything else is left out and flagged."""
    if value is None:
        return None
    if (type(value) is int or type(value) is float) and 0 <= value < math.inf:
        try:
            return float(value)
        except OverflowError:  # an int beyond the range of floats
            pass
    invalid.append(key)
    return None


def _total(key: str, invalid: list[str], mark: int, *parts: int | None) -> int | None:
    """The sum of the known ``parts``; ``None`` (``key`` flagged) when one of the parts read
    since ``len(invalid) == mark`` was impossible, or when the sum is beyond int64."""
    if len(invalid) > mark:
        if key not in invalid:
            invalid.append(key)
        return None
    total: int | None = None
    for part in parts:
        if part is not None:
            total = part if total is None else total + part
    if total is not None and total > INT64_MAX:
        invalid.append(key)
        return None
    return total


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
    invalid: list[str] = []
    raw = get("prompt_tokens")
    if raw is None:
        raw = get("input_tokens")
    # ints in range inline (the common case), everything else through checked_count
    input_tokens = (
        raw
        if type(raw) is int and 0 <= raw <= INT64_MAX
        else checked_count(raw, "inputTokens", invalid)
    )
    raw = get("completion_tokens")
    if raw is None:
        raw = get("output_tokens")
    output_tokens = (
        raw
        if type(raw) is int and 0 <= raw <= INT64_MAX
        else checked_count(raw, "outputTokens", invalid)
    )
    if (
        output_tokens is None
        and input_tokens is not None
        and operation == "embeddings"
        and "outputTokens" not in invalid
    ):
        output_tokens = 0
    cached = cache_write = reasoning = writes = modalities = None
    input_details = get("prompt_tokens_details") or get("input_tokens_details")
    if input_details is not None:
        details = as_mapping(input_details)
        cached = checked_count(details.get("cached_tokens"), "cachedInputTokens", invalid)
        cache_write = checked_count(
            details.get("cache_write_tokens"), "cacheCreationInputTokens", invalid
        )
        ttl = details.get("cache_write_tokens_details")
        if ttl is not None:
            writes = cache_writes(as_mapping(ttl), _OPENAI_CACHE_WRITES, invalid)
        if details.get("audio_tokens") or details.get("image_tokens"):
            modalities = _modalities(details, _INPUT_MODALITIES, modalities, invalid)
    else:
        transcribed = get("input_token_details")  # transcriptions billed by tokens
        if transcribed is not None:
            details = as_mapping(transcribed)
            if details.get("audio_tokens"):
                modalities = _modalities(details, _INPUT_MODALITIES, modalities, invalid)
    if cached is None and "cachedInputTokens" not in invalid:
        cached = checked_count(get("prompt_cache_hit_tokens"), "cachedInputTokens", invalid)
    output_details = get("completion_tokens_details") or get("output_tokens_details")
    if output_details is not None:
        details = as_mapping(output_details)
        reasoning = checked_count(details.get("reasoning_tokens"), "reasoningTokens", invalid)
        if details.get("audio_tokens") or details.get("image_tokens"):
            modalities = _modalities(details, _OUTPUT_MODALITIES, modalities, invalid)
    cost = get("cost")
    if cost is not None:
        cost = _amount(cost, "costUsd", invalid)
    audio_seconds = None
    if get("type") == "duration":
        audio_seconds = _amount(get("seconds"), "audioSeconds", invalid)
    normalised = LLMUsage(  # positional (field order): keyword calls cost ~3x on the hot path
        provider,
        operation,
        model,
        input_tokens,
        output_tokens,
        cached,
        cache_write,
        reasoning,
        cost,
        audio_seconds,
        response_id,
        complete,
        created,
        False,
        None,
        tuple(invalid) if invalid else None,
    )
    if writes is not None:
        normalised.cache_writes = writes
    if modalities:
        normalised.modalities = modalities
    unknown = unknown_fields(usage, OPENAI_USAGE_FIELDS)
    if unknown:
        normalised.unknown = tuple(unknown)
    return normalised


def anthropic_usage(
    usage: Any,
    provider: str,
    operation: str,
    model: str | None,
    response_id: str | None,
    complete: bool = True,
    *,
    check_fields: bool = True,
) -> LLMUsage:
    """Normalise an Anthropic ``Usage``: input = input + cache reads + cache writes.

    Beta ``iterations`` of type ``compaction`` are not part of the top-level counts, so they
    are added. ``check_fields=False`` leaves the unknown-field check of ``usage`` itself to
    the caller (its ``iterations`` types are still checked).
    """
    values = as_mapping(usage)
    invalid: list[str] = []
    plain = values.get("input_tokens")
    read = values.get("cache_read_input_tokens")
    created = values.get("cache_creation_input_tokens")
    output = values.get("output_tokens")
    if (  # the common case inline: every count an int in range (or absent)
        (plain is None or (type(plain) is int and 0 <= plain <= INT64_MAX))
        and (read is None or (type(read) is int and 0 <= read <= INT64_MAX))
        and (created is None or (type(created) is int and 0 <= created <= INT64_MAX))
        and (output is None or (type(output) is int and 0 <= output <= INT64_MAX))
    ):
        input_tokens = _total("inputTokens", invalid, 0, plain, read, created)
    else:
        read = checked_count(read, "cachedInputTokens", invalid)
        created = checked_count(created, "cacheCreationInputTokens", invalid)
        plain = checked_count(plain, "inputTokens", invalid)
        input_tokens = _total("inputTokens", invalid, 0, plain, read, created)
        output = checked_count(output, "outputTokens", invalid)
    iterations = values.get("iterations")
    for iteration in iterations or ():
        step = as_mapping(iteration)
        if step.get("type") != "compaction":
            continue
        mark = len(invalid)
        step_input = _total(
            "inputTokens",
            invalid,
            mark,
            checked_count(step.get("input_tokens"), "inputTokens", invalid),
            checked_count(step.get("cache_read_input_tokens"), "inputTokens", invalid),
            checked_count(step.get("cache_creation_input_tokens"), "inputTokens", invalid),
        )
        step_output = checked_count(step.get("output_tokens"), "outputTokens", invalid)
        if "inputTokens" in invalid:
            input_tokens = None
        else:
            input_tokens = _total("inputTokens", invalid, len(invalid), input_tokens, step_input)
        if "outputTokens" in invalid:
            output = None
        else:
            output = _total("outputTokens", invalid, len(invalid), output, step_output)
    details = values.get("output_tokens_details")
    thinking = (
        None
        if details is None
        else checked_count(as_mapping(details).get("thinking_tokens"), "reasoningTokens", invalid)
    )
    normalised = LLMUsage(  # positional (field order), as in openai_usage
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
    split = values.get("cache_creation")
    if split is not None:
        normalised.cache_writes = cache_writes(as_mapping(split), _ANTHROPIC_CACHE_WRITES, invalid)
    tools = values.get("server_tool_use")
    if tools is not None:
        requests = as_mapping(tools)
        fees = {}
        for name, key in _ANTHROPIC_FEES:
            number = checked_count(requests.get(name), key, invalid)
            if number:
                fees[key] = number
        normalised.fees = fees or None
    dimensions = None
    for name, key in _ANTHROPIC_DIMENSIONS:
        value = values.get(name)
        if is_dimension(value):
            if dimensions is None:
                dimensions = {}
            dimensions[key] = value
    normalised.dimensions = dimensions
    if invalid:
        normalised.invalid = tuple(dict.fromkeys(invalid))
    unknown = unknown_fields(usage, ANTHROPIC_USAGE_FIELDS) if check_fields else []
    if iterations:
        unknown += unknown_iterations(iterations)
        served = _served_by(iterations)
        if served:
            normalised.dimensions = {**(normalised.dimensions or {}), **served}
    if unknown:
        normalised.unknown = tuple(unknown)
    return normalised


#: Anthropic iteration types served by another model than the message's, and the key that
#: names it.
_SERVING_ITERATIONS = {"fallback_message": "fallbackModel", "advisor_message": "advisorModel"}


def _served_by(iterations: Any) -> dict[str, str]:
    """The models that served a fallback or advisor step of an Anthropic message (names
    joined by ``,`` when several steps used different ones)."""
    served: dict[str, list[str]] = {}
    for iteration in iterations:
        step = as_mapping(iteration)
        key = _SERVING_ITERATIONS.get(step.get("type"))  # type: ignore[arg-type]
        model = step.get("model")
        if key is not None and is_dimension(model):
            models = served.setdefault(key, [])
            if model not in models:
                models.append(model)
    return {key: ",".join(models)[:MAX_METADATA_VALUE_LENGTH] for key, models in served.items()}


_INPUT_MODALITIES = (("audio_tokens", "audioInputTokens"), ("image_tokens", "imageInputTokens"))
_OUTPUT_MODALITIES = (("audio_tokens", "audioOutputTokens"), ("image_tokens", "imageOutputTokens"))


def _modalities(
    details: Mapping[str, Any],
    names: tuple[tuple[str, str], ...],
    found: dict[str, int] | None,
    invalid: list[str],
) -> dict[str, int] | None:
    """``found`` with the non-zero audio and image counts of a token-details block."""
    for name, key in names:
        number = checked_count(details.get(name), key, invalid)
        if number:
            found = {**(found or {}), key: number}
    return found


#: Gemini's per-modality details and the keys of their audio and image counts.
_GEMINI_MODALITIES = (
    ("prompt_tokens_details", "audioInputTokens", "imageInputTokens"),
    ("candidates_tokens_details", "audioOutputTokens", "imageOutputTokens"),
)


def _gemini_modalities(values: Mapping[str, Any], invalid: list[str]) -> dict[str, int] | None:
    """The audio and image token counts of Gemini's per-modality details (non-zero only).
    Modalities are compared as strings (the SDK's enum is a ``str``; a raw body has
    strings)."""
    found: dict[str, int] | None = None
    for name, audio, image in _GEMINI_MODALITIES:
        for entry in values.get(name) or ():
            entry_values = as_mapping(entry)
            modality = entry_values.get("modality")
            if modality == "AUDIO":
                key = audio
            elif modality == "IMAGE":
                key = image
            else:
                continue
            number = entry_values.get("token_count")
            if number is None:  # a raw body's entries keep their camelCase
                number = entry_values.get("tokenCount")
            number = checked_count(number, key, invalid)
            if number:
                found = found or {}
                found[key] = found.get(key, 0) + number
    if found is not None:
        for key, number in tuple(found.items()):
            if number > INT64_MAX or key in invalid:  # a sum beyond int64, or a part lost
                found.pop(key)
                if key not in invalid:
                    invalid.append(key)
    return found or None


_ANTHROPIC_CACHE_WRITES = (
    ("ephemeral_5m_input_tokens", "cacheWrite5mTokens"),
    ("ephemeral_1h_input_tokens", "cacheWrite1hTokens"),
)
_OPENAI_CACHE_WRITES = (
    ("ttl_30m_tokens", "cacheWrite30mTokens"),
    ("ttl_12h_tokens", "cacheWrite12hTokens"),
)


def cache_writes(
    split: Mapping[str, Any], names: tuple[tuple[str, str], ...], invalid: list[str]
) -> dict[str, int] | None:
    """The cache writes of ``split`` per lifetime, by metadata key (impossible values are
    left out and flagged)."""
    writes = {}
    for name, key in names:
        number = checked_count(split.get(name), key, invalid)
        if number is not None:
            writes[key] = number
    return writes or None


_ANTHROPIC_FEES = (
    ("web_search_requests", "webSearchRequests"),
    ("web_fetch_requests", "webFetchRequests"),
)
_ANTHROPIC_DIMENSIONS = (
    ("service_tier", "serviceTier"),
    ("speed", "speed"),
    ("inference_geo", "inferenceGeo"),
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
    invalid: list[str] = []
    thoughts = values.get("thoughts_token_count")
    candidates = values.get("candidates_token_count")
    prompt = values.get("prompt_token_count")
    tool_prompt = values.get("tool_use_prompt_token_count")
    cached = values.get("cached_content_token_count")
    checked = not (  # the common case inline: every count an int in range (or absent)
        (thoughts is None or (type(thoughts) is int and 0 <= thoughts <= INT64_MAX))
        and (candidates is None or (type(candidates) is int and 0 <= candidates <= INT64_MAX))
        and (prompt is None or (type(prompt) is int and 0 <= prompt <= INT64_MAX))
        and (tool_prompt is None or (type(tool_prompt) is int and 0 <= tool_prompt <= INT64_MAX))
        and (cached is None or (type(cached) is int and 0 <= cached <= INT64_MAX))
    )
    if checked:
        thoughts = checked_count(thoughts, "reasoningTokens", invalid)
        candidates = checked_count(candidates, "outputTokens", invalid)
    output = _total("outputTokens", invalid, 0, candidates, thoughts)
    mark = len(invalid)
    if checked:
        prompt = checked_count(prompt, "inputTokens", invalid)
        tool_prompt = checked_count(tool_prompt, "inputTokens", invalid)
    input_tokens = _total("inputTokens", invalid, mark, prompt, tool_prompt)
    if checked:
        cached = checked_count(cached, "cachedInputTokens", invalid)
    if output is None and input_tokens is not None and operation == "embed_content":
        output = None if "outputTokens" in invalid else 0
    normalised = LLMUsage(  # positional (field order), as in openai_usage
        provider,
        operation,
        model,
        input_tokens,
        output,
        cached,
        None,
        thoughts,
        None,
        None,
        response_id,
        complete,
        None,
        False,
        None,
        tuple(dict.fromkeys(invalid)) if invalid else None,
    )
    dimensions = {}
    for name, key in _GEMINI_DIMENSIONS:
        value = values.get(name)
        if value is not None:
            value = getattr(value, "value", value)  # the SDK's enums
            if is_dimension(value):
                dimensions[key] = value
    normalised.dimensions = dimensions or None
    if values.get("prompt_tokens_details") or values.get("candidates_tokens_details"):
        normalised.modalities = _gemini_modalities(values, invalid)
        if invalid:
            normalised.invalid = tuple(dict.fromkeys(invalid))
    unknown = unknown_fields(usage, GEMINI_USAGE_FIELDS)
    if unknown:
        normalised.unknown = tuple(unknown)
    return normalised


_GEMINI_DIMENSIONS = (("traffic_type", "trafficType"), ("service_tier", "serviceTier"))


def gemini_usage_from_body(body: str | None) -> dict[str, Any] | None:
    """The ``usageMetadata`` of a raw Gemini JSON body, with snake_case keys."""
    if not body:
        return None
    data = json.loads(body)
    raw = data.get("usageMetadata") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    return snake_case_keys(raw)


def snake_case_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` (a Gemini JSON usage block) with its camelCase keys in snake_case."""
    return {
        "".join("_" + c.lower() if c.isupper() else c for c in key): value
        for key, value in raw.items()
    }
