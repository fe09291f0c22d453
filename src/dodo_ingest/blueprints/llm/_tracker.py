"""``LLMTracker``: turns the usage of wrapped LLM clients into usage events."""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from decimal import Decimal
from itertools import islice
from types import MethodType, TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

from ...client._errors import ConfigurationError, EventValidationError
from ...client._models import (
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MetadataValue,
    validate_metadata,
)
from .._common import EventSink
from ._billed import FrameworkRun, current_run
from ._billing import ModelTable, Number, Price, cost_cents, to_decimal
from ._event_ids import Identity, keyed
from ._event_ids import event_id as make_event_id
from ._usage import (
    INT64_MAX,
    LLMUsage,
    carried_text,
    field,
    gemini_usage,
    gemini_usage_from_body,
)

if TYPE_CHECKING:
    from ...delivery import Ingestion
    from ...gate import CreditGate
    from ._gating import GatePolicy

__all__ = [
    "RESERVED_METADATA_KEYS",
    "CustomerScope",
    "EventSink",
    "LLMTracker",
    "LLMTrackerStats",
    "Scope",
    "create_llm_tracker",
    "sdk_family",
]

logger = logging.getLogger("dodo_ingest")

ClientT = TypeVar("ClientT")

#: Metadata keys the tracker writes itself; user metadata may not use them.
RESERVED_METADATA_KEYS = frozenset(
    {
        "provider",
        "operation",
        "model",
        "inputTokens",
        "outputTokens",
        "totalTokens",
        "cachedInputTokens",
        "cacheCreationInputTokens",
        "reasoningTokens",
        "costUsd",
        "audioSeconds",
        "status",
        "requestCredits",
        "costCents",
        "invalidUsage",
        "usageSource",
        "unknownUsage",
        "cacheWrite5mTokens",
        "cacheWrite1hTokens",
        "cacheWrite30mTokens",
        "cacheWrite12hTokens",
        "webSearchRequests",
        "webFetchRequests",
        "fileSearchCalls",
        "groundingQueries",
        "serviceTier",
        "speed",
        "inferenceGeo",
        "trafficType",
        "audioInputTokens",
        "imageInputTokens",
        "audioOutputTokens",
        "imageOutputTokens",
        "inputCharacters",
        "imagesGenerated",
        "imageSize",
        "imageQuality",
        "fallbackModel",
        "advisorModel",
    }
)
_OUTPUT_KEYS = (
    "outputTokens",
    "reasoningTokens",
    "audioSeconds",
    "audioOutputTokens",
    "imageOutputTokens",
)
_INPUT_KEYS = (
    "inputTokens",
    "cachedInputTokens",
    "cacheCreationInputTokens",
    "cacheWrite5mTokens",
    "cacheWrite1hTokens",
    "cacheWrite30mTokens",
    "cacheWrite12hTokens",
    "costUsd",
    "webSearchRequests",
    "webFetchRequests",
    "fileSearchCalls",
    "groundingQueries",
    "audioInputTokens",
    "imageInputTokens",
    "inputCharacters",
    "imagesGenerated",
)
_SHARED_KEYS = (
    "provider",
    "operation",
    "model",
    "status",
    "usageSource",
    "invalidUsage",
    "unknownUsage",
    "serviceTier",
    "speed",
    "inferenceGeo",
    "trafficType",
    "imageSize",
    "imageQuality",
    "fallbackModel",
    "advisorModel",
)
#: The keys most events carry; user metadata may fill the rest of the API's 50 keys. Rarer
#: keys (flags such as ``invalidUsage``) that would not fit push out the last user keys.
_COMMON_KEY_COUNT = 14
#: User metadata keys an event can carry next to the usage keys.
_USER_METADATA_LIMIT = 50 - _COMMON_KEY_COUNT
#: Distinct (provider, key) pairs logged for impossible values and for unknown fields (each
#: once).
_INVALID_WARNINGS_KEPT = 256
#: Distinct wrap() metadata key sets a tracker remembers to check customer() metadata against.
_WRAP_KEY_SETS_KEPT = 64


class LLMTrackerStats:
    """Counters of one tracker (read them as attributes; they only grow).

    ``events``: events handed to the delivery pipeline. ``incomplete``: usage records of streams
    whose final usage was never seen. ``failures``: tracking failures (logged on the
    ``dodo_ingest`` logger); the LLM call itself was never affected. ``invalid_usage``: usage
    records that carried an impossible value (left out of the event, named in its
    ``invalidUsage``; logged once per provider and key). ``unknown_usage``: usage records
    carrying a billable-looking field the tracker does not know (named in the event's
    ``unknownUsage``; logged once per provider and field).
    """

    __slots__ = ("_lock", "events", "failures", "incomplete", "invalid_usage", "unknown_usage")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events = 0
        self.incomplete = 0
        self.failures = 0
        self.invalid_usage = 0
        self.unknown_usage = 0

    def _count_unknown_usage(self) -> None:
        with self._lock:
            self.unknown_usage += 1

    def _count_invalid_usage(self) -> None:
        with self._lock:
            self.invalid_usage += 1

    def _count_event(self) -> None:
        with self._lock:
            self.events += 1

    def _count_incomplete(self) -> None:
        with self._lock:
            self.incomplete += 1

    def _count_failure(self) -> None:
        with self._lock:
            self.failures += 1

    def __repr__(self) -> str:
        return (
            f"LLMTrackerStats(events={self.events}, incomplete={self.incomplete}, "
            f"failures={self.failures}, invalid_usage={self.invalid_usage}, "
            f"unknown_usage={self.unknown_usage})"
        )


class Scope:
    """Who an LLM call is billed to: a customer id and the metadata added to its events;
    for a wrapped client's call made inside a framework handler's run, that run (see
    ``_billed``)."""

    __slots__ = ("customer_id", "metadata", "run")

    def __init__(
        self,
        customer_id: str,
        metadata: dict[str, MetadataValue],
        run: FrameworkRun | None = None,
    ) -> None:
        self.customer_id = customer_id
        self.metadata = metadata
        self.run = run


class CustomerScope:
    """Context manager returned by :meth:`LLMTracker.customer` (sync and async).

    Reusable and reentrant: one object may be entered by many threads and asyncio tasks at
    once, and nested; the state to restore on exit is kept per context, not on the object.
    """

    __slots__ = ("_resets", "_scope", "_var")

    def __init__(
        self,
        var: ContextVar[Scope | None],
        resets: ContextVar[tuple[Token[Scope | None], ...]],
        scope: Scope,
    ) -> None:
        self._var = var
        self._resets = resets
        self._scope = scope

    def __enter__(self) -> CustomerScope:
        self._resets.set((*self._resets.get(), self._var.set(self._scope)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resets = self._resets.get()
        self._resets.set(resets[:-1])
        self._var.reset(resets[-1])

    async def __aenter__(self) -> CustomerScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class Binding:
    """The defaults a client was wrapped with; resolves the scope of each call."""

    __slots__ = ("customer_id", "metadata", "scope", "tracker", "warned")

    def __init__(
        self, tracker: LLMTracker, customer_id: str | None, metadata: dict[str, MetadataValue]
    ) -> None:
        self.tracker = tracker
        self.warned = False
        self.customer_id = customer_id
        self.metadata = metadata
        self.scope = Scope(customer_id, metadata) if customer_id is not None else None

    def resolve(self) -> Scope | None:
        """The scope of a call made now: ``tracker.customer()`` wins over the wrap defaults;
        the framework run the call is made in, if any, is noted with it while the run waits
        for its provider call (see ``_billed``).

        Returns ``None`` (and counts a failure, logged once per client) when no customer is
        known.
        """
        context = self.tracker._context.get()
        run = current_run.get()
        if run is not None and not run.waiting:  # the framework's own call came before
            run = None
        if context is None:
            scope = self.scope
            if scope is None:
                self.tracker.stats._count_failure()
                if not self.warned:  # once per wrapped client; every such call is counted
                    self.warned = True
                    logger.warning(
                        "LLM call made without a customer (no customer_id given to wrap() "
                        "and no tracker.customer() block): not tracked"
                    )
                return None
        elif not self.metadata:
            scope = context
        else:
            return Scope(context.customer_id, {**self.metadata, **context.metadata}, run)
        if run is None:
            return scope
        return Scope(scope.customer_id, scope.metadata, run)


def sdk_family(cls: type[object]) -> str | None:
    """``"openai"``, ``"anthropic"``, ``"groq"`` or ``"google.genai"``: the SDK that defines
    ``cls`` or one of its bases (so subclasses made by other libraries are recognised)."""
    for base in cls.__mro__:
        module = base.__module__
        root = module.partition(".")[0]
        if root in ("openai", "anthropic", "groq"):
            return root
        if module.startswith("google.genai"):
            return "google.genai"
    return None


def _checked_text(value: object, field_name: str, limit: int | None = None) -> str:
    """``value`` when it is a non-empty string an event can carry (UTF-8, at most ``limit``
    characters), else ``EventValidationError`` naming ``field_name``."""
    if not isinstance(value, str) or not value.strip():
        raise EventValidationError(field_name, "must be a non-empty string")
    value = str.__str__(value)  # a str subclass's own methods could answer otherwise later
    if limit is not None and len(value) > limit:
        raise EventValidationError(
            field_name, f"must be at most {limit} characters, got {len(value)}"
        )
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise EventValidationError(
                field_name, "must be valid Unicode text (it holds a lone surrogate)"
            ) from None
    return value


def _validate_customer(customer_id: object) -> str:
    return _checked_text(customer_id, "customer_id")


def _validate_provider(provider: object) -> str | None:
    if provider is None:
        return None
    return _checked_text(provider, "provider", MAX_METADATA_VALUE_LENGTH)


def _validate_user_metadata(metadata: Mapping[str, object] | None) -> dict[str, MetadataValue]:
    if metadata is None:
        return {}
    checked = validate_metadata(metadata)
    if len(checked) > _USER_METADATA_LIMIT:
        raise EventValidationError(
            "metadata", f"at most {_USER_METADATA_LIMIT} keys allowed next to the LLM usage keys"
        )
    for key in checked:
        if key in RESERVED_METADATA_KEYS:
            raise EventValidationError(
                f"metadata.{key}", "reserved for the usage keys the LLM tracker writes"
            )
    return checked


def _batch_customer(
    customers: str | Mapping[str, str] | Callable[[str], str | None] | None,
    custom_id: str | None,
) -> str | None:
    """The customer a batch line is billed to (see :meth:`LLMTracker.track_batch`)."""
    if isinstance(customers, str):
        return customers
    if custom_id is None:
        return None
    if customers is None:
        customer, colon, _ = custom_id.partition(":")
        return customer if colon and customer else None
    if isinstance(customers, Mapping):
        return customers.get(custom_id)
    return customers(custom_id)


def _carriable(metadata: dict[str, MetadataValue], checked: int) -> bool:
    """True when the values of ``metadata`` after its first ``checked`` ones (the user's,
    checked when wrapped or scoped) are within the API's limits: what the tracker wrote from
    the provider's usage (``str`` of at most 500 characters and valid UTF-8, ``int`` within
    int64, finite ``float``, ``bool``). The parsers keep them so; this holds for usage
    records built elsewhere too (framework integrations)."""
    for value in islice(metadata.values(), checked, None):
        kind = type(value)  # exact types: a subclass may encode otherwise
        if kind is int:
            if _INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
                continue
        elif kind is str:
            if len(value) <= MAX_METADATA_VALUE_LENGTH and (  # type: ignore[arg-type]
                value.isascii() or carried_text(value) == value  # type: ignore[union-attr]
            ):
                continue
        elif kind is float:
            if _isfinite(value):  # type: ignore[arg-type]
                continue
        elif kind is bool:
            continue
        return False
    return True


_INT64_MIN = -INT64_MAX - 1
_isfinite = math.isfinite


def _credits(value: Decimal, field_name: str) -> MetadataValue:
    """A request weight as the number an event carries (an int within int64, else a finite
    float)."""
    if value == value.to_integral_value():
        whole = int(value)
        if whole <= INT64_MAX:
            return whole
    else:
        fraction = float(value)
        if math.isfinite(fraction):
            return fraction
    raise EventValidationError(field_name, "must fit in an event (at most 2**63 - 1)")


class LLMTracker:
    """Turns every billable call of wrapped LLM clients into usage events.

    ``ingestion`` is the delivery pipeline (:class:`dodo_ingest.Ingestion`, or anything with
    its ``track`` method). Each billable request yields one event named ``event_name`` with
    ``inputTokens``, ``outputTokens``, ``totalTokens``, ``model``, ``provider`` and, where
    known, ``cachedInputTokens``, ``cacheCreationInputTokens``, ``reasoningTokens``, tool
    fees (``webSearchRequests``…) and price dimensions (``serviceTier``…). Every event says
    where its numbers come from (``usageSource``: ``provider``, ``incomplete``,
    ``estimated``), names impossible values left out (``invalidUsage``) and usage fields the
    tracker does not know (``unknownUsage``). Batch results are billed with
    :meth:`track_batch`.

    Billing-model hooks, one argument each:

    - ``split_events=("llm.input", "llm.output")``: emit two events per request instead, one
      per direction, for per-direction meters;
    - ``request_weights={"gpt-4o": 2, "*": 1}``: add ``requestCredits`` (premium requests);
    - ``prices={"gpt-4o": Price(input_per_million="2.50", output_per_million="10")}``: add
      ``costCents`` (Decimal math, rounded half-to-even to a millionth of a cent).

    Models match exactly, then by the longest prefix, then ``"*"``. ``inject_stream_usage``
    asks OpenAI-style chat streams for usage (``stream_options.include_usage``) when the caller
    did not, hiding the extra chunk from the caller; turn it off for servers that reject it.

    Credit gate (``gate=CreditGate(...)``, needs ``prices``): every billable request first
    reserves a worst-case estimate of its cost for the customer it is billed to, in the
    entitlement's unit: ``prices`` times ``gate_rate`` (entitlement units per unit of the
    prices' currency; 1 when the entitlement is in that currency). A refused request raises
    :class:`~dodo_ingest.InsufficientCreditsError` and is never sent; the hold settles with
    the cost of the usage billed when the response or stream ends. The output part of the
    estimate is the request's own limit, else ``gate_default_max_output`` tokens.
    ``gate_cutoff=True`` stops a stream whose request set no output limit once its output
    reaches ``gate_default_max_output`` tokens (:class:`CreditCutoffError`). See
    ``docs/llm.md``, "Credit gate".
    """

    def __init__(
        self,
        ingestion: EventSink,
        event_name: str = "llm.chat_completion",
        *,
        split_events: tuple[str, str] | None = None,
        request_weights: Mapping[str, Number] | None = None,
        prices: Mapping[str, Price] | None = None,
        inject_stream_usage: bool = True,
        gate: CreditGate | None = None,
        gate_rate: Number = 1,
        gate_default_max_output: int = 4096,
        gate_cutoff: bool = False,
    ) -> None:
        if not callable(getattr(ingestion, "track", None)):
            raise TypeError("ingestion must have a track() method (e.g. dodo_ingest.Ingestion)")
        self._sink = ingestion
        # Ingestion's trusted entry: it skips checking again what the tracker has checked
        # (user metadata when wrapped or scoped, provider values when usage is read).
        prechecked = getattr(type(ingestion), "_track_prechecked", None)
        self._prechecked: Callable[[str, str, dict[str, MetadataValue], str], str] | None = (
            None if prechecked is None else MethodType(prechecked, ingestion)
        )
        self.event_name = self._check_event_name(event_name, "event_name")
        self.split_events: tuple[str, str] | None = None
        if split_events is not None:
            if len(split_events) != 2:
                raise EventValidationError("split_events", "must be (input name, output name)")
            self.split_events = (
                self._check_event_name(split_events[0], "split_events[0]"),
                self._check_event_name(split_events[1], "split_events[1]"),
            )
        self._weights: ModelTable[MetadataValue] | None = None
        if request_weights is not None:
            self._weights = ModelTable(
                {
                    model: _credits(
                        to_decimal(weight, f"request_weights.{model}"),
                        f"request_weights.{model}",
                    )
                    for model, weight in request_weights.items()
                }
            )
        self._prices: ModelTable[Price] | None = None
        if prices is not None:
            for model, price in prices.items():
                if not isinstance(price, Price):
                    raise EventValidationError(f"prices.{model}", "must be a Price")
            self._prices = ModelTable(prices)
        self.inject_stream_usage = inject_stream_usage
        self.stats = LLMTrackerStats()
        self._context: ContextVar[Scope | None] = ContextVar(
            f"dodo_ingest_llm_customer_{id(self)}", default=None
        )
        self._resets: ContextVar[tuple[Token[Scope | None], ...]] = ContextVar(
            f"dodo_ingest_llm_customer_resets_{id(self)}", default=()
        )
        self._owned: Ingestion | None = None
        self._wrap_key_sets: set[frozenset[str]] = set()
        self._warned_overflow = False
        self._warned_invalid: set[tuple[str, str]] = set()
        self._warned_unknown: set[tuple[str, str]] = set()
        self._gating: GatePolicy | None = None
        if gate is not None:
            self._gating = self._gate_policy(gate, gate_rate, gate_default_max_output, gate_cutoff)
        elif gate_cutoff:
            raise ConfigurationError("gate_cutoff=True needs a gate (gate=CreditGate(...))")

    @property
    def gate(self) -> CreditGate | None:
        """The credit gate calls are admitted by (``None``: not gated)."""
        return self._gating.gate if self._gating is not None else None

    def _gate_policy(
        self, gate: object, rate: object, default_max_output: object, cutoff: object
    ) -> GatePolicy:
        from ...gate import CreditGate
        from ._gating import GatePolicy

        if not isinstance(gate, CreditGate):
            raise ConfigurationError(f"gate must be a CreditGate, got {type(gate).__name__}")
        if self._prices is None:
            raise ConfigurationError(
                "gate needs prices: the tracker prices each call's estimate with them "
                "(prices={'model': Price(...), '*': Price(...)})"
            )
        if isinstance(rate, bool) or not isinstance(rate, (Decimal, int, float, str)):
            raise ConfigurationError(f"gate_rate must be a number, got {rate!r}")
        try:
            checked_rate = to_decimal(rate, "gate_rate")
        except EventValidationError as exc:
            raise ConfigurationError(str(exc)) from None
        if type(default_max_output) is not int or default_max_output < 0:
            raise ConfigurationError(
                f"gate_default_max_output must be an int >= 0, got {default_max_output!r}"
            )
        if not isinstance(cutoff, bool):
            raise ConfigurationError(f"gate_cutoff must be True or False, got {cutoff!r}")
        return GatePolicy(self, gate, self._prices, checked_rate, default_max_output, cutoff)

    @staticmethod
    def _check_event_name(name: object, field_name: str) -> str:
        return _checked_text(name, field_name)

    def wrap(
        self,
        client: ClientT,
        customer_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> ClientT:
        """Instrument ``client`` in place and return it (same object, same type).

        Supports ``openai.OpenAI``/``AsyncOpenAI`` (and Azure, and OpenAI-compatible servers by
        ``base_url``), ``anthropic.Anthropic``/``AsyncAnthropic`` (and Bedrock/Vertex),
        ``groq.Groq``/``AsyncGroq`` and ``google.genai.Client`` (sync and ``.aio``).
        ``customer_id`` and ``metadata`` are defaults for every call; they are validated here
        and raise :class:`EventValidationError`. Wrapping again replaces the defaults.
        Raises ``TypeError`` for other clients, and :class:`ConfigurationError` for a client
        with a sync surface when the tracker's gate has an ``AsyncDodoClient`` (which only
        async calls can use).
        """
        if customer_id is not None:
            customer_id = _validate_customer(customer_id)
        binding = Binding(self, customer_id, _validate_user_metadata(metadata))
        if binding.metadata and len(self._wrap_key_sets) < _WRAP_KEY_SETS_KEPT:
            self._wrap_key_sets.add(frozenset(binding.metadata))
        family = sdk_family(type(client))
        if self._gating is not None and family is not None:
            self._check_gate_surface(client, family)
        if family in ("openai", "anthropic", "groq"):
            from ._stainless import instrument_client

            instrument_client(client, binding)
        elif family == "google.genai":
            from ._google import instrument_client as instrument_genai

            instrument_genai(client, binding)
        else:
            raise TypeError(
                "wrap() supports openai, anthropic, groq and google-genai clients, "
                f"got {type(client).__qualname__}"
            )
        return client

    def _check_gate_surface(self, client: object, family: str) -> None:
        from ...client import AsyncDodoClient

        assert self._gating is not None
        if not isinstance(self._gating.gate.client, AsyncDodoClient):
            return
        if family == "google.genai":
            models = getattr(client, "models", None)
            synchronous = not inspect.iscoroutinefunction(
                getattr(type(models), "_generate_content", None)
            )
        else:
            synchronous = not inspect.iscoroutinefunction(getattr(type(client), "request", None))
        if synchronous:
            raise ConfigurationError(
                f"this tracker's gate has an AsyncDodoClient, which sync calls cannot use: wrap "
                f"an async client (for google-genai, client.aio), or give the gate a DodoClient "
                f"(got {type(client).__qualname__})"
            )

    def customer(
        self, customer_id: str, metadata: Mapping[str, object] | None = None
    ) -> CustomerScope:
        """Bill LLM calls made inside ``with``/``async with`` to ``customer_id``.

        Overrides the ``customer_id`` given to :meth:`wrap`; ``metadata`` is merged over the
        wrap metadata. Context-local (threads and asyncio tasks each see their own), nestable;
        arguments are validated here. Streams are billed to the customer current when the
        stream was created. Raises :class:`EventValidationError` when ``metadata`` merged with
        the metadata of a client already wrapped by this tracker has more than 36 keys.
        """
        scope = Scope(_validate_customer(customer_id), _validate_user_metadata(metadata))
        if scope.metadata:
            keys = scope.metadata.keys()
            for wrapped in tuple(self._wrap_key_sets):
                merged = len(wrapped | keys)
                if merged > _USER_METADATA_LIMIT:
                    raise EventValidationError(
                        "metadata",
                        f"at most {_USER_METADATA_LIMIT} keys allowed together with the wrap() "
                        f"metadata of a wrapped client (the merge would have {merged})",
                    )
        return CustomerScope(self._context, self._resets, scope)

    def track(
        self,
        response: object,
        customer_id: str | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        provider: str | None = None,
    ) -> list[str]:
        """Record the usage of a finished, non-stream response object; return the event ids.

        Accepts OpenAI/OpenAI-compatible/Groq responses (chat, Responses, completions,
        embeddings, images, transcriptions), Anthropic messages and google-genai
        ``GenerateContentResponse``/``EmbedContentResponse``. The event id derives from the
        response id, so tracking a response the wrapped client already tracked bills nothing
        twice. ``customer_id`` defaults to the current :meth:`customer` scope. Raises
        ``TypeError`` for other objects or responses without usage, ``EventValidationError``
        for invalid arguments.
        """
        context = self._context.get()
        if customer_id is None:
            if context is None:
                raise EventValidationError("customer_id", "required outside tracker.customer()")
            customer_id = context.customer_id
        base = dict(context.metadata) if context is not None else {}
        merged = {**base, **_validate_user_metadata(metadata)}
        if len(merged) > _USER_METADATA_LIMIT:
            raise EventValidationError(
                "metadata",
                f"at most {_USER_METADATA_LIMIT} keys allowed together with the customer() "
                f"metadata (the merge has {len(merged)})",
            )
        scope = Scope(_validate_customer(customer_id), merged)
        usage = usage_of_response(response, _validate_provider(provider))
        if usage is None:
            raise TypeError(f"no usage found on a {type(response).__qualname__}")
        return self._emit(usage, scope)

    def track_batch(
        self,
        results: object,
        customers: str | Mapping[str, str] | Callable[[str], str | None] | None = None,
        metadata: Mapping[str, object] | None = None,
        *,
        batch_id: str | None = None,
        provider: str | None = None,
    ) -> list[str]:
        """Bill each succeeded request of a batch's results, one event per line; return the
        event ids.

        ``results``: an OpenAI batch output file (its JSONL text, bytes or parsed lines), the
        Anthropic ``messages.batches.results(...)`` lines, or a Gemini batch job's
        ``dest.inlined_responses`` (or output file lines). Failed, cancelled and expired
        requests are not billed. Each line is billed to ``customers``: one customer id for
        the whole batch, a mapping or a function from the line's ``custom_id`` (Gemini:
        ``metadata["custom_id"]`` or the line's ``key``) to a customer id; without it, to the
        part of the ``custom_id`` before its first ``:`` (``"cus_123:req-7"`` bills
        ``cus_123``). Events carry ``serviceTier: "batch"`` (price it with
        ``Price(tiers={"batch": ...})``) and ids derived from each line's response id (Gemini
        file lines: ``batch_id`` and the line's key), so tracking the same results again
        bills nothing twice.

        Raises :class:`EventValidationError` naming the line when a billable line has no
        customer (nothing is emitted then), ``TypeError`` or ``ValueError`` for results of no
        known shape.
        """
        from ._batches import batch_lines

        merged = _validate_user_metadata(metadata)
        lines = list(batch_lines(results, _validate_provider(provider), batch_id))
        scoped = []
        for number, line in enumerate(lines):
            customer = _batch_customer(customers, line.custom_id)
            if customer is None:
                raise EventValidationError(
                    f"results[{number}].custom_id",
                    f"no customer for custom_id {line.custom_id!r} (pass customers=, or use "
                    "custom ids of the form '<customer_id>:<request>')",
                )
            scoped.append((line.usage, Scope(_validate_customer(customer), merged)))
        ids: list[str] = []
        for usage, scope in scoped:
            ids += self._emit(usage, scope)
        return ids

    def close(self) -> None:
        """Close the delivery pipeline if this tracker created it (``create_llm_tracker``)."""
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> LLMTracker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record(self, usage: LLMUsage, scope: Scope, identity: Identity | None = None) -> None:
        """Emit the events for ``usage``; never raises (failures are logged and counted).

        ``identity``: what the event ids hash instead of ``usage``'s own (a framework
        integration billing the call a wrapped client billed, see ``_billed``)."""
        try:
            self._emit(usage, scope, identity)
        except Exception as exc:
            self._failure("could not record LLM usage", exc)

    def _emit(
        self,
        usage: LLMUsage,
        scope: Scope,
        identity: Identity | None = None,
    ) -> list[str]:
        if scope.run is not None:  # a framework handler bills this call too: tell it how
            scope.run.note(usage)
        weight = self._weights.get(usage.model) if self._weights is not None else None
        price = self._prices.get(usage.model) if self._prices is not None else None
        if not usage.complete:
            self.stats._count_incomplete()
        if usage.invalid is not None:
            self._invalid(usage)
        if usage.unknown is not None:
            self._unknown(usage)
        if len(scope.metadata) > _USER_METADATA_LIMIT:
            scope = self._trimmed(scope)
        if self.split_events is None:
            metadata = usage.write_metadata(dict(scope.metadata))
            if weight is not None:
                metadata["requestCredits"] = weight
            if price is not None:
                metadata["costCents"] = cost_cents(
                    price.input_cost(usage) + price.output_cost(usage)
                )
            prechecked = self._prechecked
            if prechecked is not None and not _carriable(metadata, len(scope.metadata)):
                prechecked = None  # track() checks it, and its error names the value
            if len(metadata) > MAX_METADATA_KEYS:
                metadata = self._fitted(metadata, scope)
            name = self.event_name
            event_id = make_event_id(usage, name, identity)
            if prechecked is None:
                event_id = self._sink.track(scope.customer_id, name, metadata, event_id=event_id)
            else:
                event_id = prechecked(scope.customer_id, name, metadata, event_id)
            self.stats._count_event()
            return [event_id]
        else:
            usage_metadata = usage.to_metadata()
            shared = {k: usage_metadata[k] for k in _SHARED_KEYS if k in usage_metadata}
            inputs = {**scope.metadata, **shared}
            outputs = {**scope.metadata, **shared}
            inputs.update((k, usage_metadata[k]) for k in _INPUT_KEYS if k in usage_metadata)
            outputs.update((k, usage_metadata[k]) for k in _OUTPUT_KEYS if k in usage_metadata)
            if weight is not None:
                inputs["requestCredits"] = weight
            if price is not None:
                inputs["costCents"] = cost_cents(price.input_cost(usage))
                outputs["costCents"] = cost_cents(price.output_cost(usage))
            events = [(self.split_events[0], inputs), (self.split_events[1], outputs)]
        ids = []
        for name, metadata in events:
            prechecked = self._prechecked
            if prechecked is not None and not _carriable(metadata, len(scope.metadata)):
                prechecked = None
            if len(metadata) > MAX_METADATA_KEYS:
                metadata = self._fitted(metadata, scope)
            event_id = make_event_id(usage, name, identity)
            if prechecked is None:
                event_id = self._sink.track(scope.customer_id, name, metadata, event_id=event_id)
            else:
                event_id = prechecked(scope.customer_id, name, metadata, event_id)
            ids.append(event_id)
            self.stats._count_event()
        return ids

    def _invalid(self, usage: LLMUsage) -> None:
        """Count a usage record with impossible values; log each (provider, key) once."""
        self.stats._count_invalid_usage()
        new = []
        for key in usage.invalid or ():
            seen = (usage.provider, key)
            if seen not in self._warned_invalid and len(self._warned_invalid) < (
                _INVALID_WARNINGS_KEPT
            ):
                self._warned_invalid.add(seen)
                new.append(key)
        if new:
            logger.warning(
                "%s reported impossible usage values for %s (model %s): left out of the "
                "event and named in its invalidUsage",
                usage.provider,
                ", ".join(new),
                usage.model,
            )

    def _unknown(self, usage: LLMUsage) -> None:
        """Count a usage record with fields the tracker does not know; log each (provider,
        field) once."""
        self.stats._count_unknown_usage()
        new = []
        for name in usage.unknown or ():
            seen = (usage.provider, name)
            if seen not in self._warned_unknown and len(self._warned_unknown) < (
                _INVALID_WARNINGS_KEPT
            ):
                self._warned_unknown.add(seen)
                new.append(name)
        if new:
            logger.warning(
                "%s usage carries fields the tracker does not know (%s, model %s): they may be "
                "a charge this event does not bill; the event names them in unknownUsage",
                usage.provider,
                ", ".join(new),
                usage.model,
            )

    def _fitted(self, metadata: dict[str, MetadataValue], scope: Scope) -> dict[str, MetadataValue]:
        """``metadata`` cut to the API's key limit when this event's usage keys and the user
        keys together exceed it: every usage key stays, the last user keys are left out
        (counted as a failure, logged once per tracker)."""
        excess = len(metadata) - MAX_METADATA_KEYS
        dropped = list(scope.metadata)[-excess:]
        self._warn_overflow(len(scope.metadata), len(scope.metadata) - excess)
        return {key: value for key, value in metadata.items() if key not in dropped}

    def _trimmed(self, scope: Scope) -> Scope:
        """``scope`` with its user metadata cut to the keys that fit next to the usage keys
        (the first ones in merge order: wrap() keys, then customer() keys); counted as a
        failure, logged once per tracker."""
        self._warn_overflow(len(scope.metadata), _USER_METADATA_LIMIT)
        kept = dict(list(scope.metadata.items())[:_USER_METADATA_LIMIT])
        return Scope(scope.customer_id, kept, scope.run)

    def _warn_overflow(self, keys: int, fit: int) -> None:
        self.stats._count_failure()
        if not self._warned_overflow:
            self._warned_overflow = True
            logger.warning(
                "wrap() and customer() metadata together have %d keys (at most %d fit next to "
                "the LLM usage keys of this event): the extra keys were left out of the event",
                keys,
                fit,
            )

    def _failure(self, message: str, exc: BaseException | None) -> None:
        self.stats._count_failure()
        if exc is None:
            logger.warning("%s", message)
        else:
            logger.warning("%s: %s: %s", message, type(exc).__name__, exc, exc_info=exc)


def usage_of_response(response: object, provider: str | None = None) -> LLMUsage | None:
    """The usage of a finished SDK response object, by its SDK and type name."""
    module = type(response).__module__
    name = type(response).__name__
    if module.startswith(("openai.", "groq.")):
        from ._openai import OBJECT_OPERATIONS, usage_of_object

        operation = OBJECT_OPERATIONS.get(name)
        if operation is None:
            return None
        default = "groq" if module.startswith("groq.") else "openai"
        return usage_of_object(response, provider or default, operation, None, None)
    if module.startswith("anthropic."):
        from ._anthropic import usage_of_message

        return usage_of_message(response, provider or "anthropic", "messages", None)
    if module.startswith("google.genai"):
        from ._google import IMAGE_OPERATIONS, images_usage

        image_operation = IMAGE_OPERATIONS.get(name)
        if image_operation is not None:
            return images_usage(response, provider or "google", image_operation, None)
        operation = "embed_content" if name == "EmbedContentResponse" else "generate_content"
        usage = field(response, "usage_metadata")
        if usage is None:
            usage = gemini_usage_from_body(field(field(response, "sdk_http_response"), "body"))
        if usage is None:
            return None
        from ._google import add_grounding

        normalised = gemini_usage(
            usage,
            provider=provider or "google",
            operation=operation,
            model=field(response, "model_version"),
            response_id=field(response, "response_id"),
        )
        add_grounding(normalised, response)
        return keyed(normalised, response)
    return None


def create_llm_tracker(
    *,
    api_key: str | None = None,
    environment: Literal["test_mode", "live_mode"] | None = None,
    base_url: str | None = None,
    event_name: str = "llm.chat_completion",
    ingestion: EventSink | None = None,
    split_events: tuple[str, str] | None = None,
    request_weights: Mapping[str, Number] | None = None,
    prices: Mapping[str, Price] | None = None,
    inject_stream_usage: bool = True,
    gate: CreditGate | None = None,
    gate_rate: Number = 1,
    gate_default_max_output: int = 4096,
    gate_cutoff: bool = False,
) -> LLMTracker:
    """Build an :class:`LLMTracker` the way the TypeScript ``createLLMTracker`` does.

    Without ``ingestion``, creates a :class:`dodo_ingest.Ingestion` from ``api_key``,
    ``environment`` and ``base_url`` (each falling back to its ``DODO_PAYMENTS_*`` variable)
    and owns it: ``tracker.close()`` (or ``with``) flushes and closes it. Then
    ``tracker.wrap(client=..., customer_id=..., metadata=...)`` as in TypeScript.
    """
    owned: Ingestion | None = None
    if ingestion is None:
        from ...delivery import Ingestion

        owned = Ingestion(api_key=api_key, environment=environment, base_url=base_url)
        ingestion = owned
    try:
        tracker = LLMTracker(
            ingestion,
            event_name,
            split_events=split_events,
            request_weights=request_weights,
            prices=prices,
            inject_stream_usage=inject_stream_usage,
            gate=gate,
            gate_rate=gate_rate,
            gate_default_max_output=gate_default_max_output,
            gate_cutoff=gate_cutoff,
        )
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    tracker._owned = owned
    return tracker
