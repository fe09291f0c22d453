"""Anthropic (``Anthropic``/``AsyncAnthropic``, Bedrock/Vertex variants): usage extraction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._event_ids import keyed, keyed_once
from ._known_fields import ANTHROPIC_USAGE_FIELDS, unknown_fields
from ._usage import LLMUsage, anthropic_usage, as_mapping, request_id_of

__all__ = ["ANTHROPIC_ROUTES", "MessageStreamUsage", "usage_of_message"]

#: Billable POST paths (``?beta=true`` removed): messages, beta messages and their helpers.
#: ``count_tokens`` and batches are not billed per call.
ANTHROPIC_ROUTES = {"/v1/messages": "messages"}

#: Fields a ``message_delta`` may restate (its value wins) or be the only one to carry.
_MERGED_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation",
    "server_tool_use",
    "service_tier",
    "speed",
    "inference_geo",
)


def usage_of_message(
    message: Any, provider: str, operation: str, model: str | None, request_id: str | None = None
) -> LLMUsage | None:
    """The usage of a ``Message``/``BetaMessage``/``ParsedMessage``."""
    values = as_mapping(message)
    usage = values.get("usage")
    if usage is None:
        return None
    response_id = values.get("id") or request_id or getattr(message, "_request_id", None)
    return keyed(
        anthropic_usage(usage, provider, operation, values.get("model") or model, response_id),
        message,
    )


class MessageStreamUsage:
    """Input and cache counts from ``message_start``, output from the last ``message_delta``.

    ``message_start`` carries a placeholder ``output_tokens`` that is never used. A
    ``message_delta`` holds cumulative counts and may restate (or, behind some gateways, be
    the only source of) the input and cache counts; its values win when present.
    """

    __slots__ = (
        "delta",
        "headers",
        "model",
        "operation",
        "provider",
        "response_id",
        "start",
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
        self.response_id: str | None = None
        self.start: Any = None
        self.delta: Any = None

    def observe(self, event: Any) -> bool:
        kind = event.type
        if kind == "message_start":
            message = event.message
            self.response_id = message.id
            self.model = message.model or self.model
            self.start = message.usage
        elif kind == "message_delta":
            self.delta = event.usage
        return False

    def result(self, exhausted: bool) -> LLMUsage | None:
        response_id = self.response_id or request_id_of(self.headers)
        if self.start is None and self.delta is None:
            return None
        start = as_mapping(self.start)
        delta = as_mapping(self.delta)
        merged: dict[str, Any] = {}
        for name in _MERGED_FIELDS:
            value = delta.get(name)
            merged[name] = value if value is not None else start.get(name)
        if self.delta is not None:
            merged["output_tokens"] = delta.get("output_tokens")
            merged["output_tokens_details"] = delta.get("output_tokens_details")
            merged["iterations"] = delta.get("iterations")
        usage = anthropic_usage(
            merged,
            self.provider,
            self.operation,
            self.model,
            response_id,
            self.delta is not None,
            check_fields=False,  # checked on the events' own usage blocks below
        )
        unknown = [*unknown_fields(self.start, ANTHROPIC_USAGE_FIELDS)]
        unknown += unknown_fields(self.delta, ANTHROPIC_USAGE_FIELDS)
        if unknown:
            usage.unknown = tuple(dict.fromkeys((*(usage.unknown or ()), *unknown)))
        return keyed_once(usage)
