"""OpenAI, Azure OpenAI, OpenAI-compatible servers and Groq: routes and usage extraction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._event_ids import keyed, keyed_once
from ._known_fields import OPENAI_TOOL_USAGE_FIELDS, unknown_fields
from ._usage import (
    LLMUsage,
    as_mapping,
    checked_count,
    field,
    is_dimension,
    openai_usage,
    request_id_of,
    timestamp,
)

__all__ = [
    "GROQ_ROUTES",
    "INCLUDE_USAGE_OPERATIONS",
    "OBJECT_OPERATIONS",
    "OPENAI_ROUTES",
    "ChatStreamUsage",
    "EventStreamUsage",
    "add_response_details",
    "provider_for_host",
    "speech_usage",
    "stream_accumulator",
    "usage_of_object",
]

#: Billable POST paths (query string removed) and the operation each one is.
OPENAI_ROUTES = {
    "/chat/completions": "chat.completions",
    "/completions": "completions",
    "/responses": "responses",
    "/responses/compact": "responses",
    "/embeddings": "embeddings",
    "/images/generations": "images",
    "/images/edits": "images",
    "/images/variations": "images",
    "/audio/transcriptions": "audio.transcriptions",
    "/audio/speech": "audio.speech",
    "/audio/translations": "audio.translations",
    "/decisions": "decisions",
}
GROQ_ROUTES = {
    "/openai/v1/chat/completions": "chat.completions",
    "/openai/v1/embeddings": "embeddings",
    "/openai/v1/audio/transcriptions": "audio.transcriptions",
    "/openai/v1/audio/translations": "audio.translations",
    "/openai/v1/audio/speech": "audio.speech",
}
#: Streams of these operations carry usage only when ``stream_options.include_usage`` is set.
INCLUDE_USAGE_OPERATIONS = frozenset({"chat.completions", "completions"})

#: Response type names (generic parameters removed) and their operation, for manual tracking.
OBJECT_OPERATIONS = {
    "ChatCompletion": "chat.completions",
    "ParsedChatCompletion": "chat.completions",
    "Completion": "completions",
    "Response": "responses",
    "ParsedResponse": "responses",
    "CompactedResponse": "responses",
    "BetaResponse": "responses",
    "CreateEmbeddingResponse": "embeddings",
    "ImagesResponse": "images",
    "Transcription": "audio.transcriptions",
    "TranscriptionVerbose": "audio.transcriptions",
    "TranscriptionDiarized": "audio.transcriptions",
    "Translation": "audio.translations",
    "TranslationVerbose": "audio.translations",
    "Decision": "decisions",
}

_HOST_PROVIDERS = {
    "api.openai.com": "openai",
    "openrouter.ai": "openrouter",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "xai",
    "api.mistral.ai": "mistral",
    "api.fireworks.ai": "fireworks",
    "api.perplexity.ai": "perplexity",
    "api.cerebras.ai": "cerebras",
    "generativelanguage.googleapis.com": "google",
}

_TERMINAL_RESPONSE_EVENTS = frozenset(
    {"response.completed", "response.incomplete", "response.failed"}
)
_STARTED_RESPONSE_EVENTS = frozenset({"response.created", "response.in_progress"})
_USAGE_EVENTS = frozenset(
    {"image_generation.completed", "image_edit.completed", "transcript.text.done"}
)


def provider_for_host(host: str) -> str:
    """The ``provider`` value for an OpenAI-style client whose ``base_url`` has ``host``."""
    known = _HOST_PROVIDERS.get(host)
    if known is not None:
        return known
    if host.endswith((".openai.azure.com", ".cognitiveservices.azure.com")):
        return "azure_openai"
    return "openai_compatible"


def speech_usage(
    provider: str, body: Any, model: str | None, headers: Mapping[str, str] | None
) -> LLMUsage | None:
    """The usage of a text-to-speech request (``audio.speech``): the characters of its
    ``input``, which is what the provider bills (the binary response reports nothing)."""
    text = field(body, "input")
    if not isinstance(text, str):
        return None
    usage = LLMUsage(provider, "audio.speech", model, response_id=request_id_of(headers))
    usage.characters = len(text)
    return usage


def usage_of_object(
    obj: Any, provider: str, operation: str, model: str | None, request_id: str | None
) -> LLMUsage | None:
    """The usage of a non-stream response (``None`` when it carries none)."""
    values = as_mapping(obj)
    usage = values.get("usage")
    if usage is None:
        usage = field(values.get("x_groq"), "usage")
        if usage is None:
            usage = _usage_without_block(values, operation)
            if usage is None:
                return None
    response_id = values.get("id")
    if not isinstance(response_id, str) or not response_id:
        response_id = request_id or getattr(obj, "_request_id", None)
    created = values.get("created")
    if created is None:
        created = values.get("created_at")
    normalised = openai_usage(
        usage,
        provider,
        operation,
        values.get("model") or model,
        response_id,
        True,
        timestamp(created),
    )
    add_response_details(normalised, values)
    if operation == "images":
        _add_images(normalised, values)
    return keyed(normalised, obj)


def _usage_without_block(values: Mapping[str, Any], operation: str) -> dict[str, Any] | None:
    """What a response without a ``usage`` block bills: the ``duration`` of a verbose
    transcription or translation (whisper-1), or nothing to read from the block for images
    (DALL·E: billed per image, see :func:`_add_images`)."""
    if operation in ("audio.transcriptions", "audio.translations"):
        duration = values.get("duration")
        if duration is not None:
            return {"type": "duration", "seconds": duration}
    elif operation == "images" and values.get("data"):
        return {}
    return None


def _add_images(usage: LLMUsage, values: Mapping[str, Any]) -> None:
    """Images are also billed per image (DALL·E; ``gpt-image`` bills tokens): their number
    (``imagesGenerated``) and the ``size`` and ``quality`` the response states."""
    images = values.get("data")
    if images:
        usage.fees = {**(usage.fees or {}), "imagesGenerated": len(images)}
    dimensions = {}
    for name, key in (("size", "imageSize"), ("quality", "imageQuality")):
        value = values.get(name)
        if is_dimension(value):
            dimensions[key] = value
    if dimensions:
        usage.dimensions = {**(usage.dimensions or {}), **dimensions}


#: Responses output items billed per call, and the metadata key that counts them.
_TOOL_CALL_FEES = {"web_search_call": "webSearchRequests", "file_search_call": "fileSearchCalls"}


def add_response_details(usage: LLMUsage, values: Mapping[str, Any]) -> None:
    """Add what the response object (not its usage block) says about the price: the service
    tier that served it; for Responses, hosted-tool calls billed per call (``tool_usage``'s
    billable web searches, else one per ``web_search_call`` item; ``file_search_call`` items)
    and the ``tool_usage`` fields the tracker does not know."""
    tier = values.get("service_tier")
    if is_dimension(tier):
        usage.dimensions = {"serviceTier": tier}
    if usage.operation != "responses":
        return
    fees: dict[str, int] = {}
    for item in values.get("output") or ():
        key = _TOOL_CALL_FEES.get(field(item, "type"))
        if key is not None:
            fees[key] = fees.get(key, 0) + 1
    tool_usage = values.get("tool_usage")
    if tool_usage is not None:
        tools = as_mapping(tool_usage)
        invalid: list[str] = []
        searches = checked_count(
            as_mapping(tools.get("web_search")).get("num_requests"), "webSearchRequests", invalid
        )
        if searches is not None:
            fees["webSearchRequests"] = searches
        elif invalid:
            fees.pop("webSearchRequests", None)
            usage.invalid = (*(usage.invalid or ()), *invalid)
        unknown = unknown_fields(tool_usage, OPENAI_TOOL_USAGE_FIELDS, "tool_usage.")
        if unknown:
            usage.unknown = (*(usage.unknown or ()), *unknown)
    fees = {key: number for key, number in fees.items() if number}
    if fees:
        usage.fees = fees


class ChatStreamUsage:
    """Chat and legacy completion streams: keep the last usage seen (never sum).

    Usage comes on a final chunk with no choices (``include_usage``), on every chunk (some
    compatible servers), or in ``x_groq.usage`` (Groq). When the tracker injected
    ``include_usage``, the usage-only chunk is hidden from the caller.
    """

    __slots__ = (
        "created",
        "final",
        "groq",
        "headers",
        "hide",
        "model",
        "operation",
        "provider",
        "response_id",
        "tier",
        "usage",
    )

    def __init__(
        self,
        provider: str,
        operation: str,
        model: str | None,
        hide: bool,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.model = model
        self.hide = hide
        self.headers = headers
        self.groq = provider == "groq"
        self.tier: Any = None
        self.created: float | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.final = False

    def observe(self, chunk: Any) -> bool:
        if not self.response_id:  # Azure's first chunk (prompt filter results) has an empty id
            self.response_id = chunk.id or None
            self.model = chunk.model or self.model
            self.created = timestamp(chunk.created)
            self.tier = field(chunk, "service_tier")
        usage = chunk.usage
        if usage is None:
            if self.groq:
                usage = field(field(chunk, "x_groq"), "usage")
                if usage is not None:
                    self.usage = usage
                    self.final = True
            return False
        self.usage = usage
        self.tier = field(chunk, "service_tier") or self.tier
        if chunk.choices:
            return False
        self.final = True
        return self.hide

    def result(self, exhausted: bool) -> LLMUsage | None:
        return _stream_result(self, self.final or exhausted)


class EventStreamUsage:
    """Typed-event streams: Responses (usage on the terminal ``response.*`` event), image
    generation and transcription streams (usage on their completion event)."""

    __slots__ = (
        "created",
        "final",
        "headers",
        "model",
        "operation",
        "provider",
        "response",
        "response_id",
        "usage",
    )

    def __init__(
        self,
        provider: str,
        operation: str,
        model: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.model = model
        self.headers = headers
        self.created: float | None = None
        self.response_id: str | None = None
        self.usage: Any = None
        self.response: Any = None
        self.final = False

    def observe(self, event: Any) -> bool:
        kind = field(event, "type")
        if kind in _TERMINAL_RESPONSE_EVENTS:
            self._started(event.response)
            self.response = event.response
            self.usage = event.response.usage
            self.final = self.usage is not None
        elif kind in _STARTED_RESPONSE_EVENTS:
            self._started(event.response)
        elif kind in _USAGE_EVENTS:
            self.usage = field(event, "usage")
            self.final = self.usage is not None
        return False

    def _started(self, response: Any) -> None:
        self.response_id = field(response, "id") or self.response_id
        self.model = field(response, "model") or self.model
        self.created = timestamp(field(response, "created_at")) or self.created

    def result(self, exhausted: bool) -> LLMUsage | None:
        return _stream_result(self, self.final)


def _stream_result(stream: ChatStreamUsage | EventStreamUsage, complete: bool) -> LLMUsage | None:
    """The usage a stream ended with: the last usage seen, or (when it never came) a record
    marked incomplete under the response or request id, or ``None`` with neither."""
    response_id = stream.response_id or request_id_of(stream.headers)
    if stream.usage is None:
        if response_id is None:
            return None
        usage = LLMUsage(
            provider=stream.provider,
            operation=stream.operation,
            model=stream.model,
            response_id=response_id,
            complete=False,
            created=stream.created,
        )
    else:
        usage = openai_usage(
            stream.usage,
            stream.provider,
            stream.operation,
            stream.model,
            response_id,
            complete,
            stream.created,
        )
        if isinstance(stream, EventStreamUsage):
            if stream.response is not None:
                add_response_details(usage, as_mapping(stream.response))
        elif is_dimension(stream.tier):
            usage.dimensions = {"serviceTier": stream.tier}
    return keyed_once(usage)


def stream_accumulator(
    provider: str,
    operation: str,
    model: str | None,
    hide: bool,
    headers: Mapping[str, str] | None,
) -> ChatStreamUsage | EventStreamUsage:
    """The accumulator for a stream of ``operation`` (``headers``: of its HTTP response)."""
    if operation in INCLUDE_USAGE_OPERATIONS:
        return ChatStreamUsage(provider, operation, model, hide, headers)
    return EventStreamUsage(provider, operation, model, headers)
