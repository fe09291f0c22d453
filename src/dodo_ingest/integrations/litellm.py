"""LiteLLM: bill every call LiteLLM makes (SDK or proxy) through an ``LLMTracker``.

```python
import litellm
from dodo_ingest.integrations.litellm import DodoLiteLLMLogger

litellm.callbacks = [DodoLiteLLMLogger(tracker)]
litellm.completion(model="openai/gpt-4o", messages=[...], user="cus_1")
```

Needs ``litellm`` (``pip install "dodo-ingest[litellm]"``). See ``docs/integrations.md``
for the proxy's ``config.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ..blueprints.llm._billed import FrameworkRun, current_run
from ..blueprints.llm._event_ids import keyed
from ..blueprints.llm._tracker import LLMTracker
from ..blueprints.llm._usage import LLMUsage, checked_count, field, openai_usage, timestamp
from ..client._errors import EventValidationError
from ._scopes import Biller

__all__ = ["DodoLiteLLMLogger"]

#: LiteLLM call types and the operation each one is (other call types are not billed).
_OPERATIONS = {
    "completion": "chat.completions",
    "acompletion": "chat.completions",
    "text_completion": "completions",
    "atext_completion": "completions",
    "embedding": "embeddings",
    "aembedding": "embeddings",
    "responses": "responses",
    "aresponses": "responses",
}
#: LiteLLM's provider names that differ from the tracker's.
_PROVIDERS = {"azure": "azure_openai", "azure_text": "azure_openai", "gemini": "google"}
#: Usage keys LiteLLM adds that repeat other keys (Anthropic's cache counts, mirrored in
#: ``prompt_tokens_details``) or are its own estimate (``cost``, from its price map).
_REPEATED = ("cost", "cache_read_input_tokens", "cache_creation_input_tokens")
#: ``prompt_tokens_details`` keys that repeat others or describe no charge.
_REPEATED_DETAILS = ("cache_creation_tokens", "initial_prompt_tokens", "cache_type")
#: Where the proxy puts the metadata of a call's virtual key and of the key's team.
_KEY_METADATA = ("user_api_key_metadata", "user_api_key_team_metadata")
_CACHE_WRITES = (
    ("ephemeral_5m_input_tokens", "cacheWrite5mTokens"),
    ("ephemeral_1h_input_tokens", "cacheWrite1hTokens"),
)
#: Calls whose provider request started that a logger remembers (by LiteLLM call id; the
#: oldest dropped beyond).
_CALLS_KEPT = 10_000


class DodoLiteLLMLogger(CustomLogger):
    """A LiteLLM ``CustomLogger`` that bills each successful call through ``tracker``.

    Reads LiteLLM's usage of chat and text completions, embeddings and Responses calls:
    prompt and completion tokens, cache reads and writes (with Anthropic's 5-minute/1-hour
    split), reasoning and audio tokens, web searches; fields it does not know are named in
    the event's ``unknownUsage``. LiteLLM's own cost estimate is not billed (use the
    tracker's ``prices``). Event ids derive from the response id (and its creation time),
    so a call billed twice (the sync and the async hook, a retried delivery) is one event;
    a response without an id (embeddings) uses LiteLLM's call id. A call LiteLLM makes
    through a client wrapped by a tracker (``client=``) gets the wrapped client's event ids:
    one event for both.

    The customer of a call is, first to last: through the proxy, the ``customer_key`` of
    its virtual key's metadata, then of the key's team's (set by the proxy's operator: a
    request cannot name another customer); its ``metadata[customer_key]`` (proxy: the
    request's ``metadata``), its ``user`` (OpenAI's end-user field; proxy: the request's
    ``user``, when ``use_user``), the ``tracker.customer()`` block it runs in, then
    ``customer_id``. A call without a customer is not billed (counted in
    ``tracker.stats.failures``, logged once). Streams are billed only when their request
    asked for usage (``stream_options={"include_usage": True}``; the proxy asks by default):
    otherwise LiteLLM counts the tokens itself with a tokenizer, which is an estimate.
    Cache hits (no provider call) are not billed. Nothing raises into LiteLLM's call.
    """

    def __init__(
        self,
        tracker: LLMTracker,
        customer_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        customer_key: str = "customer_id",
        use_user: bool = True,
    ) -> None:
        if not isinstance(customer_key, str) or not customer_key:
            raise EventValidationError("customer_key", "must be a non-empty string")
        super().__init__()
        self._biller = Biller(tracker, customer_id, metadata)
        self.customer_key = customer_key
        self.use_user = use_user
        self._calls: dict[object, FrameworkRun] = {}

    @property
    def tracker(self) -> LLMTracker:
        """The tracker events are billed through."""
        return self._biller.tracker

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """Note what a wrapped client bills for this call (LiteLLM's hook, called in the
        caller's context just before the provider request)."""
        try:
            call_id = kwargs.get("litellm_call_id")
            if call_id is None:
                return
            calls = self._calls
            if len(calls) >= _CALLS_KEPT:
                with suppress(StopIteration, RuntimeError):  # another thread changed it: fine
                    calls.pop(next(iter(calls)), None)
            run = FrameworkRun(call_id)
            calls[call_id] = run
            current_run.set(run)
        except Exception as exc:
            self._biller.failure("start", "could not note a LiteLLM call", exc)

    def log_post_api_call(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """End the call's run once the provider call returned (LiteLLM's hook, in the
        caller's context; a wrapped client's stream keeps its run until it ends)."""
        call_id = kwargs.get("litellm_call_id")
        run = self._calls.get(call_id)
        if run is not None:
            run.answered(call_id)  # in contexts copied during the call too
            if current_run.get() is run:
                current_run.set(None)

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Forget a failed call (LiteLLM's hook)."""
        run = self._calls.pop(kwargs.get("litellm_call_id"), None)
        if run is not None:
            run.close()

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Forget a failed call (LiteLLM's hook)."""
        run = self._calls.pop(kwargs.get("litellm_call_id"), None)
        if run is not None:
            run.close()

    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Bill a successful sync call (LiteLLM's hook)."""
        self._bill(kwargs, response_obj)

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """Bill a successful async call, or any proxy call (LiteLLM's hook)."""
        self._bill(kwargs, response_obj)

    def _bill(self, kwargs: dict[str, Any], response: Any) -> None:
        try:
            run = self._calls.pop(kwargs.get("litellm_call_id"), None)
            operation = _OPERATIONS.get(kwargs.get("call_type") or "")
            if operation is None or kwargs.get("cache_hit"):
                return
            if kwargs.get("stream") and not _asked_for_usage(kwargs):
                self._biller.failure(
                    "stream usage",
                    "a LiteLLM stream without stream_options={'include_usage': True} carries "
                    "only LiteLLM's own token estimate: not billed",
                )
                return
            scope = self._biller.scope(self._named_customer(kwargs))
            if scope is None:
                return
            usage = _usage_of(response, kwargs, operation)
            if usage is None:
                self._biller.failure("no usage", "a LiteLLM response carried no usage: not billed")
                return
            identity = None if run is None else run.take(usage, field(response, "id"))
            self._biller.bill(usage, scope, identity)
        except Exception as exc:
            self._biller.failure("error", "could not bill a LiteLLM call", exc)

    def _named_customer(self, kwargs: Mapping[str, Any]) -> object:
        params = kwargs.get("litellm_params") or {}
        metadata = params.get("metadata") or {}
        for source in _KEY_METADATA:
            granted = metadata.get(source)
            if isinstance(granted, Mapping) and granted.get(self.customer_key) is not None:
                return granted[self.customer_key]
        named = metadata.get(self.customer_key)
        if named is None:
            named = (metadata.get("requester_metadata") or {}).get(self.customer_key)
        if named is None and self.use_user:
            named = (
                kwargs.get("user")
                or (kwargs.get("optional_params") or {}).get("user")
                or metadata.get("user_api_key_end_user_id")
            )
        return named


def _asked_for_usage(kwargs: Mapping[str, Any]) -> bool:
    options = kwargs.get("stream_options") or (kwargs.get("optional_params") or {}).get(
        "stream_options"
    )
    return bool(options) and bool(field(options, "include_usage"))


def _usage_of(response: Any, kwargs: Mapping[str, Any], operation: str) -> LLMUsage | None:
    """The normalised usage of a LiteLLM response (``None`` when it carries none)."""
    raw = field(response, "usage")
    if raw is None:
        return None
    values: dict[str, Any] = dict(raw.model_dump() if hasattr(raw, "model_dump") else raw)
    for key in _REPEATED:
        values.pop(key, None)
    invalid: list[str] = []
    unknown: list[str] = []
    fees: dict[str, int] = {}
    writes: dict[str, int] = {}
    tools = values.pop("server_tool_use", None) or {}
    for name, value in tools.items():
        if name == "web_search_requests":
            number = checked_count(value, "webSearchRequests", invalid)
            if number:
                fees["webSearchRequests"] = number
        elif value:
            unknown.append(f"server_tool_use.{name}")
    details = values.get("prompt_tokens_details")
    if isinstance(details, Mapping):
        details = {k: v for k, v in details.items() if k not in _REPEATED_DETAILS}
        searches = checked_count(
            details.pop("web_search_requests", None), "webSearchRequests", invalid
        )
        if searches and "webSearchRequests" not in fees:
            fees["webSearchRequests"] = searches
        split = details.pop("cache_creation_token_details", None) or {}
        for name, key in _CACHE_WRITES:
            number = checked_count(split.get(name), key, invalid)
            if number:
                writes[key] = number
        values["prompt_tokens_details"] = details
    provider = kwargs.get("custom_llm_provider") or "litellm"
    response_id = field(response, "id") or kwargs.get("litellm_call_id")
    created = timestamp(field(response, "created"))
    if created is None:
        created = timestamp(field(response, "created_at"))
    hidden = getattr(response, "_hidden_params", None)
    model = (
        (hidden.get("provider_response_model") if isinstance(hidden, Mapping) else None)
        or field(response, "model")
        or kwargs.get("model")
    )
    usage = openai_usage(
        values,
        _PROVIDERS.get(provider, provider),
        operation,
        model,
        response_id if isinstance(response_id, str) else None,
        True,
        created,
    )
    if fees:
        usage.fees = fees
    if writes:
        usage.cache_writes = writes
    if invalid:
        usage.invalid = (*(usage.invalid or ()), *invalid)
    if unknown:
        usage.unknown = (*(usage.unknown or ()), *unknown)
    return keyed(usage, response)
