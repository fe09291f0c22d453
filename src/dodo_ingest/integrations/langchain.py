"""LangChain: bill the token usage of chat models through an ``LLMTracker``.

```python
from dodo_ingest.integrations.langchain import DodoCallbackHandler

handler = DodoCallbackHandler(tracker, customer_id="cus_1")
model.invoke("hi", config={"callbacks": [handler]})
```

Needs ``langchain-core`` 1.x (``pip install "dodo-ingest[langchain]"``). See
``docs/integrations.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from ..blueprints.llm._anthropic import usage_of_message
from ..blueprints.llm._billed import FrameworkRun, current_run
from ..blueprints.llm._event_ids import trusted_response_id
from ..blueprints.llm._tracker import LLMTracker, Scope
from ..blueprints.llm._usage import (
    LLMUsage,
    as_mapping,
    checked_count,
    is_dimension,
    openai_usage,
    timestamp,
)
from ..client._errors import EventValidationError
from ._scopes import Biller

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import LLMResult

__all__ = ["DodoCallbackHandler"]

#: LangChain's ``model_provider``/``ls_provider`` names that differ from the tracker's.
_PROVIDERS = {"google_genai": "google", "google_vertexai": "google_vertex", "azure": "azure_openai"}
#: The operation of each provider family (the API family of the event id follows it).
_OPERATIONS = {
    "anthropic": "messages",
    "google": "generate_content",
    "google_vertex": "generate_content",
}
#: ``input_token_details`` / ``output_token_details`` keys and what they fill. LangChain
#: prefixes them with the service tier (``priority_cache_read``) for priced tiers.
_INPUT_DETAILS = {
    "cache_read": "cachedInputTokens",
    "cache_creation": "cacheCreationInputTokens",
    "audio": "audioInputTokens",
    "ephemeral_5m_input_tokens": "cacheWrite5mTokens",
    "ephemeral_1h_input_tokens": "cacheWrite1hTokens",
}
_OUTPUT_DETAILS = {"reasoning": "reasoningTokens", "audio": "audioOutputTokens"}
_TIERS = ("priority", "flex")
#: Runs started and not yet ended that a handler remembers (a run that never ends is dropped
#: from the oldest once there are more).
_RUNS_KEPT = 10_000


class _Run:
    __slots__ = ("capture", "model", "provider", "scope")

    def __init__(
        self, run_id: UUID, scope: Scope, provider: str | None, model: str | None, batch: int
    ) -> None:
        self.scope = scope
        self.provider = provider
        self.model = model
        # what wrapped clients bill during the run (it runs in the caller's context); the
        # runs of one generate() over several prompts start together and share it
        shared = current_run.get()
        if batch > 1 and shared is not None and shared.join(run_id):
            self.capture = shared
        else:
            self.capture = FrameworkRun(run_id, batch)
            current_run.set(self.capture)

    def close(self, run_id: UUID) -> None:
        """Stop capturing wrapped clients' bills for this run, and in this context once no
        run sharing its capture waits for its call."""
        capture = self.capture
        capture.answered(run_id)
        if not capture.waiting and current_run.get() is capture:
            current_run.set(None)


class DodoCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler that bills every chat model call through ``tracker``.

    Each result's ``usage_metadata`` (streamed or not) becomes one event of the tracker, with
    its billing-model hooks (``prices``, ``request_weights``, ``split_events``): input and
    output tokens, cache reads and writes, reasoning and audio tokens. Where LangChain passes
    the provider's raw OpenAI usage (``response_metadata["token_usage"]``), that block is read
    as the wrapped client reads it.

    The customer of a call is, first to last: the run's ``metadata[customer_key]`` (``config=
    {"metadata": {"customer_id": "cus_1"}}``), the ``tracker.customer()`` block the call runs
    in, then ``customer_id``. ``metadata`` is added to every event (the scope's metadata
    merged over it). A call without a customer, or a result without usage, is not billed:
    counted in ``tracker.stats.failures`` and logged once per kind.

    Event ids derive from the provider's response id (and its creation time where LangChain
    passes it), as the wrapped client's do; a result without one (LangChain streams) gets an
    id derived from the LangChain run id. A model whose client is wrapped by a tracker is
    billed by both, under the wrapped client's event ids (one event): the handler notes
    what the client bills for calls made in the run's context before its first output
    (calls made between a stream's chunks are the caller's own). Nothing
    raises into the chain: failures are counted and logged. Raises
    ``EventValidationError`` here for invalid arguments.
    """

    raise_error = False
    run_inline = True

    def __init__(
        self,
        tracker: LLMTracker,
        customer_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        customer_key: str = "customer_id",
    ) -> None:
        if not isinstance(customer_key, str) or not customer_key:
            raise EventValidationError("customer_key", "must be a non-empty string")
        self._biller = Biller(tracker, customer_id, metadata)
        self.customer_key = customer_key
        self._runs: dict[UUID, _Run] = {}
        #: the captures of runs whose first output has not come yet
        self._waiting: dict[UUID, FrameworkRun] = {}

    @property
    def tracker(self) -> LLMTracker:
        """The tracker events are billed through."""
        return self._biller.tracker

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note who the run is billed to (the scope current when it starts)."""
        try:
            self._start(run_id, metadata or {}, kwargs)
        except Exception as exc:
            self._biller.failure("start", "could not note a LangChain run", exc)

    def _start(self, run_id: UUID, metadata: Mapping[str, Any], kwargs: Mapping[str, Any]) -> None:
        scope = self._biller.scope(metadata.get(self.customer_key))
        if scope is None:
            return
        provider = metadata.get("ls_provider")
        model = metadata.get("ls_model_name")
        batch = kwargs.get("batch_size")
        runs = self._runs
        if len(runs) >= _RUNS_KEPT:
            with suppress(StopIteration, RuntimeError):  # another thread changed it: fine
                oldest = next(iter(runs))
                runs.pop(oldest, None)
                self._waiting.pop(oldest, None)
        run = _Run(
            run_id,
            scope,
            provider if isinstance(provider, str) else None,
            model if isinstance(model, str) else None,
            batch if type(batch) is int else 1,
        )
        runs[run_id] = run
        self._waiting[run_id] = run.capture

    def on_llm_new_token(
        self,
        token: Any,
        *,
        chunk: Any = None,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Note that the run's provider call was made: wrapped clients' calls made from now
        on (the caller's code between a stream's chunks) are not the run's."""
        capture = self._waiting.pop(run_id, None)  # the first chunk's; then a miss
        if capture is not None:
            capture.answered(run_id)

    def on_stream_event(
        self,
        event: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """As :meth:`on_llm_new_token`, for ``stream_events(version="v3")``."""
        capture = self._waiting.pop(run_id, None)
        if capture is not None:
            capture.answered(run_id)

    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Bill the usage of the run's result."""
        run = self._runs.pop(run_id, None)
        self._waiting.pop(run_id, None)
        if run is None:
            return
        try:
            run.close(run_id)
            self._end(response, run_id, run)
        except Exception as exc:
            self._biller.failure("end", "could not bill a LangChain result", exc)

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Forget the run: a failed call reports no usage."""
        run = self._runs.pop(run_id, None)
        self._waiting.pop(run_id, None)
        if run is not None:
            with suppress(Exception):
                # the framework makes no more calls of the runs started with this one
                run.capture.close()
                run.close(run_id)

    def _end(self, response: LLMResult, run_id: UUID, run: _Run) -> None:
        llm_output = response.llm_output or {}
        generations = response.generations
        for index, candidates in enumerate(generations):
            usage = _usage_of(candidates, run, llm_output if len(generations) == 1 else {})
            if usage is None:
                self._biller.failure(
                    "no usage",
                    "a LangChain chat model result carried no usage_metadata (for streams, "
                    "ask the model for usage, e.g. ChatOpenAI(stream_usage=True)): not billed",
                )
                continue
            # the wrapped client's bill of this call, if it made one: the same event ids
            identity = run.capture.take(usage, usage.response_id) if len(generations) == 1 else None
            if identity is None:
                run_key = f"langchain-run:{run_id}:{index}"
                if usage.response_id is None:
                    usage.response_id = run_key
                elif type(usage.response_id) is not str or not trusted_response_id(
                    usage.response_id
                ):
                    usage.call_key = run_key
            self._biller.bill(usage, run.scope, identity)


def _usage_of(
    candidates: Sequence[Any], run: _Run, llm_output: Mapping[str, Any]
) -> LLMUsage | None:
    """The usage of one prompt's result: LangChain copies one request's usage to each of its
    choices, so the first message carrying usage stands for the request."""
    for generation in candidates:
        message = getattr(generation, "message", None)
        usage_metadata = getattr(message, "usage_metadata", None)
        if usage_metadata is None:
            continue
        response_metadata: Mapping[str, Any] = getattr(message, "response_metadata", None) or {}
        provider = response_metadata.get("model_provider") or run.provider or "langchain"
        provider = _PROVIDERS.get(provider, provider)
        operation = _OPERATIONS.get(provider)
        if operation is None:
            operation = (
                "responses" if response_metadata.get("object") == "response" else "chat.completions"
            )
        model = response_metadata.get("model_name") or response_metadata.get("model") or run.model
        response_id = response_metadata.get("id") or llm_output.get("id")
        if response_id is None:
            message_id = getattr(message, "id", None)
            if isinstance(message_id, str) and not message_id.startswith(("lc_", "run-")):
                response_id = message_id
        created = timestamp(response_metadata.get("created_at"))
        if created is None:
            created = timestamp(response_metadata.get("created"))
        raw = response_metadata.get("token_usage")
        anthropic = operation == "messages" and isinstance(response_metadata.get("usage"), Mapping)
        if isinstance(raw, Mapping) and operation == "chat.completions":
            usage = openai_usage(raw, provider, operation, model, response_id, True, created)
        elif anthropic and (
            found := usage_of_message(response_metadata, provider, operation, model)
        ):
            usage = found
        else:
            usage = _from_usage_metadata(usage_metadata, provider, operation, model)
            usage.response_id = response_id
            usage.created = created
        tier = response_metadata.get("service_tier")
        if is_dimension(tier):
            usage.dimensions = {**(usage.dimensions or {}), "serviceTier": tier}
        return usage
    return None


def _from_usage_metadata(
    values: Mapping[str, Any], provider: str, operation: str, model: str | None
) -> LLMUsage:
    """An :class:`LLMUsage` from LangChain's ``UsageMetadata``: ``input_tokens`` is every
    input token (cache reads and writes included), ``output_tokens`` every output token
    (reasoning included); the details are subsets."""
    invalid: list[str] = []
    unknown: list[str] = []
    usage = LLMUsage(
        provider,
        operation,
        model,
        checked_count(values.get("input_tokens"), "inputTokens", invalid),
        checked_count(values.get("output_tokens"), "outputTokens", invalid),
    )
    found: dict[str, int] = {}
    for block, table in (
        ("input_token_details", _INPUT_DETAILS),
        ("output_token_details", _OUTPUT_DETAILS),
    ):
        for name, value in as_mapping(values.get(block)).items():
            key = table.get(_untiered(name))
            if key is None:
                if name not in _TIERS and value:
                    unknown.append(f"{block}.{name}")
                continue
            number = checked_count(value, key, invalid)
            if number is not None:
                found[key] = found.get(key, 0) + number
    usage.cached_input_tokens = found.pop("cachedInputTokens", None)
    usage.cache_creation_input_tokens = found.pop("cacheCreationInputTokens", None)
    usage.reasoning_tokens = found.pop("reasoningTokens", None)
    writes: dict[str, int] = {
        key: found.pop(key) for key in ("cacheWrite5mTokens", "cacheWrite1hTokens") if key in found
    }
    if writes:
        # LangChain's details are disjoint: cache writes split by lifetime are left out of
        # its cache_creation (0 then), while ours are a split of the whole
        usage.cache_writes = writes
        usage.cache_creation_input_tokens = (usage.cache_creation_input_tokens or 0) + sum(
            writes.values()
        )
    modalities = {key: number for key, number in found.items() if number}
    if modalities:
        usage.modalities = modalities
    if invalid:
        usage.invalid = tuple(invalid)
    if unknown:
        usage.unknown = tuple(unknown)
    return usage


def _untiered(name: str) -> str:
    """``name`` without a service-tier prefix (``priority_cache_read`` -> ``cache_read``)."""
    for tier in _TIERS:
        if name.startswith(tier + "_"):
            return name[len(tier) + 1 :]
    return name
