"""Billing-model hooks: per-model request weights and per-model price tables."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from types import MappingProxyType
from typing import Generic, TypeVar

from ...client._errors import EventValidationError
from ._usage import LLMUsage

__all__ = ["COST_QUANTUM", "ModelTable", "Number", "Price", "cost_cents", "to_decimal"]

T = TypeVar("T")

#: ``costCents`` is rounded half-to-even to this many cents (a millionth of a cent).
COST_QUANTUM = Decimal("0.000001")
_MILLION = Decimal(1_000_000)
_CENTS_PER_UNIT = Decimal(100)


def to_decimal(value: Decimal | int | float | str, field: str) -> Decimal:
    """``value`` as a finite, non-negative ``Decimal`` (floats go through ``str``)."""
    if isinstance(value, bool):
        raise EventValidationError(field, "must be a number, got a bool")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise EventValidationError(field, f"must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise EventValidationError(field, f"must be a finite number >= 0, got {value!r}")
    return number


Number = Decimal | int | float | str


class Price:
    """Prices of one model in currency units (e.g. US dollars) per million tokens, and its
    per-request fees.

    ``cached_input_per_million`` applies to ``cachedInputTokens`` and
    ``cache_creation_input_per_million`` to ``cacheCreationInputTokens``; each defaults to
    ``input_per_million``. ``cache_write_1h_input_per_million`` applies to the cache writes
    with a one-hour lifetime (``cacheWrite1hTokens``, Anthropic) and
    ``cache_write_12h_input_per_million`` to those with a twelve-hour one
    (``cacheWrite12hTokens``, OpenAI); the rest of the cache writes stays at
    ``cache_creation_input_per_million`` (their default).

    ``audio_input_per_million``/``image_input_per_million`` apply to the non-cached input
    tokens of those modalities (``audioInputTokens``, ``imageInputTokens``) and
    ``audio_output_per_million``/``image_output_per_million`` to ``audioOutputTokens``/
    ``imageOutputTokens``; each defaults to the input or output price. ``long_context`` is the
    ``Price`` used instead for requests whose ``inputTokens`` exceed
    ``long_context_threshold`` (Gemini Pro above 200k tokens, Claude's 1M context).
    ``characters_per_million`` prices ``inputCharacters`` (text-to-speech), ``per_image``
    each of ``imagesGenerated`` (DALL·E; sizes and qualities priced apart need meters
    filtered on ``imageSize``/``imageQuality``).

    Fees, in currency units each: ``per_request`` (every request), ``web_search_per_request``
    (``webSearchRequests``), ``web_fetch_per_request`` (``webFetchRequests``),
    ``file_search_per_request`` (``fileSearchCalls``), ``grounding_per_query``
    (``groundingQueries``). ``tiers`` maps a service tier the provider reports
    (``serviceTier``: ``batch``, ``flex``, ``priority``, ``scale``…) to the ``Price`` used
    instead for requests served on it.

    Values may be ``Decimal``, ``int``, ``str`` or ``float`` (converted through ``str``, so
    ``0.15`` is exactly ``Decimal("0.15")``); negative or non-finite values raise
    :class:`EventValidationError`.
    """

    __slots__ = (
        "audio_input_per_million",
        "audio_output_per_million",
        "cache_creation_input_per_million",
        "cache_write_1h_input_per_million",
        "cache_write_12h_input_per_million",
        "cached_input_per_million",
        "characters_per_million",
        "file_search_per_request",
        "grounding_per_query",
        "image_input_per_million",
        "image_output_per_million",
        "input_per_million",
        "long_context",
        "long_context_threshold",
        "output_per_million",
        "per_image",
        "per_request",
        "tiers",
        "web_fetch_per_request",
        "web_search_per_request",
    )

    def __init__(
        self,
        input_per_million: Number,
        output_per_million: Number,
        cached_input_per_million: Number | None = None,
        cache_creation_input_per_million: Number | None = None,
        *,
        cache_write_1h_input_per_million: Number | None = None,
        cache_write_12h_input_per_million: Number | None = None,
        per_request: Number = 0,
        web_search_per_request: Number = 0,
        web_fetch_per_request: Number = 0,
        file_search_per_request: Number = 0,
        grounding_per_query: Number = 0,
        audio_input_per_million: Number | None = None,
        audio_output_per_million: Number | None = None,
        image_input_per_million: Number | None = None,
        image_output_per_million: Number | None = None,
        long_context_threshold: int | None = None,
        long_context: Price | None = None,
        characters_per_million: Number = 0,
        per_image: Number = 0,
        tiers: Mapping[str, Price] | None = None,
    ) -> None:
        self.input_per_million = to_decimal(input_per_million, "prices.input_per_million")
        self.output_per_million = to_decimal(output_per_million, "prices.output_per_million")
        self.cached_input_per_million = (
            self.input_per_million
            if cached_input_per_million is None
            else to_decimal(cached_input_per_million, "prices.cached_input_per_million")
        )
        self.cache_creation_input_per_million = (
            self.input_per_million
            if cache_creation_input_per_million is None
            else to_decimal(
                cache_creation_input_per_million, "prices.cache_creation_input_per_million"
            )
        )
        self.cache_write_1h_input_per_million = (
            self.cache_creation_input_per_million
            if cache_write_1h_input_per_million is None
            else to_decimal(
                cache_write_1h_input_per_million, "prices.cache_write_1h_input_per_million"
            )
        )
        self.cache_write_12h_input_per_million = (
            self.cache_creation_input_per_million
            if cache_write_12h_input_per_million is None
            else to_decimal(
                cache_write_12h_input_per_million, "prices.cache_write_12h_input_per_million"
            )
        )
        self.per_request = to_decimal(per_request, "prices.per_request")
        self.web_search_per_request = to_decimal(
            web_search_per_request, "prices.web_search_per_request"
        )
        self.web_fetch_per_request = to_decimal(
            web_fetch_per_request, "prices.web_fetch_per_request"
        )
        self.file_search_per_request = to_decimal(
            file_search_per_request, "prices.file_search_per_request"
        )
        self.grounding_per_query = to_decimal(grounding_per_query, "prices.grounding_per_query")
        self.audio_input_per_million = self._rate(
            audio_input_per_million, self.input_per_million, "audio_input_per_million"
        )
        self.image_input_per_million = self._rate(
            image_input_per_million, self.input_per_million, "image_input_per_million"
        )
        self.audio_output_per_million = self._rate(
            audio_output_per_million, self.output_per_million, "audio_output_per_million"
        )
        self.image_output_per_million = self._rate(
            image_output_per_million, self.output_per_million, "image_output_per_million"
        )
        if (long_context is None) != (long_context_threshold is None):
            raise EventValidationError(
                "prices.long_context", "long_context and long_context_threshold go together"
            )
        if long_context_threshold is not None and (
            type(long_context_threshold) is not int or long_context_threshold < 0
        ):
            raise EventValidationError(
                "prices.long_context_threshold",
                f"must be an int >= 0 (input tokens), got {long_context_threshold!r}",
            )
        if long_context is not None and not isinstance(long_context, Price):
            raise EventValidationError("prices.long_context", "must be a Price")
        self.characters_per_million = to_decimal(
            characters_per_million, "prices.characters_per_million"
        )
        self.per_image = to_decimal(per_image, "prices.per_image")
        self.long_context_threshold = long_context_threshold
        self.long_context = long_context
        self.tiers: Mapping[str, Price] | None = None
        if tiers:
            for tier, price in tiers.items():
                if not isinstance(tier, str) or not tier:
                    raise EventValidationError("prices.tiers", "keys must be non-empty strings")
                if not isinstance(price, Price):
                    raise EventValidationError(f"prices.tiers.{tier}", "must be a Price")
            self.tiers = MappingProxyType(dict(tiers))

    @staticmethod
    def _rate(value: Number | None, default: Decimal, name: str) -> Decimal:
        return default if value is None else to_decimal(value, f"prices.{name}")

    def _values(self) -> tuple[object, ...]:
        tiers = tuple(sorted(self.tiers.items())) if self.tiers else ()
        return (*(getattr(self, name) for name in self.__slots__ if name != "tiers"), tiers)

    def __repr__(self) -> str:
        defaults = {
            "cache_write_1h_input_per_million": self.cache_creation_input_per_million,
            "cache_write_12h_input_per_million": self.cache_creation_input_per_million,
            "audio_input_per_million": self.input_per_million,
            "image_input_per_million": self.input_per_million,
            "audio_output_per_million": self.output_per_million,
            "image_output_per_million": self.output_per_million,
        }
        shown = []
        for name in self.__slots__:
            value = getattr(self, name)
            if name == "tiers" or value is None:
                continue
            if name in _ALWAYS_SHOWN or (
                value != defaults[name] if name in defaults else bool(value)
            ):
                shown.append(f"{name}={value}")
        if self.tiers:
            shown.append(f"tiers={dict(self.tiers)!r}")
        return f"Price({', '.join(shown)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Price):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def for_usage(self, usage: LLMUsage) -> Price:
        """The price of ``usage``: the one of its service tier when ``tiers`` has it, then
        that price's ``long_context`` when the input passes its threshold."""
        price = self
        if self.tiers is not None and usage.dimensions:
            tier = usage.dimensions.get("serviceTier")
            if tier is not None:
                price = self.tiers.get(tier, self)
        threshold = price.long_context_threshold
        if threshold is not None and (usage.input_tokens or 0) > threshold:
            assert price.long_context is not None
            return price.long_context
        return price

    def input_cost(self, usage: LLMUsage) -> Decimal:
        """Cost of the usage's input side in currency units (exact, not rounded): its input
        tokens and its per-request fees."""
        if self.tiers is not None or self.long_context is not None:
            price = self.for_usage(usage)
            if price is not self:
                return price.input_cost(usage)
        cached = usage.cached_input_tokens or 0
        created = usage.cache_creation_input_tokens or 0
        plain = max((usage.input_tokens or 0) - cached - created, 0)
        modalities = usage.modalities
        if modalities:
            audio = min(modalities.get("audioInputTokens", 0), plain)
            image = min(modalities.get("imageInputTokens", 0), plain - audio)
            plain -= audio + image
            total = audio * self.audio_input_per_million + image * self.image_input_per_million
            total += plain * self.input_per_million + cached * self.cached_input_per_million
        else:
            total = plain * self.input_per_million + cached * self.cached_input_per_million
        if created:
            long_lived = 0
            writes = usage.cache_writes
            if writes:
                hour = min(writes.get("cacheWrite1hTokens", 0), created)
                half_day = min(writes.get("cacheWrite12hTokens", 0), created - hour)
                long_lived = hour + half_day
                total += hour * self.cache_write_1h_input_per_million
                total += half_day * self.cache_write_12h_input_per_million
            total += (created - long_lived) * self.cache_creation_input_per_million
        if usage.characters:
            total += usage.characters * self.characters_per_million
        cost = total / _MILLION
        if self.per_request:
            cost += self.per_request
        if usage.fees:
            cost += self.fee_cost(usage)
        return cost

    def fee_cost(self, usage: LLMUsage) -> Decimal:
        """Cost of the usage's per-call tool fees in currency units (``per_request`` aside)."""
        fees = usage.fees or {}
        return (
            fees.get("webSearchRequests", 0) * self.web_search_per_request
            + fees.get("webFetchRequests", 0) * self.web_fetch_per_request
            + fees.get("fileSearchCalls", 0) * self.file_search_per_request
            + fees.get("groundingQueries", 0) * self.grounding_per_query
            + fees.get("imagesGenerated", 0) * self.per_image
        )

    def output_cost(self, usage: LLMUsage) -> Decimal:
        """Cost of the usage's output tokens in currency units (exact, not rounded)."""
        if self.tiers is not None or self.long_context is not None:
            price = self.for_usage(usage)
            if price is not self:
                return price.output_cost(usage)
        output = usage.output_tokens or 0
        modalities = usage.modalities
        if not modalities:
            return output * self.output_per_million / _MILLION
        audio = min(modalities.get("audioOutputTokens", 0), output)
        image = min(modalities.get("imageOutputTokens", 0), output - audio)
        total = (output - audio - image) * self.output_per_million
        total += audio * self.audio_output_per_million + image * self.image_output_per_million
        return total / _MILLION


_ALWAYS_SHOWN = frozenset(
    {
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "cache_creation_input_per_million",
    }
)


def cost_cents(amount: Decimal) -> float:
    """Currency units to cents, rounded half-to-even to :data:`COST_QUANTUM`."""
    return float((amount * _CENTS_PER_UNIT).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN))


class ModelTable(Generic[T]):
    """Per-model values looked up by exact name, then by the longest matching prefix, then by
    the ``"*"`` default. ``"gpt-4o"`` thus matches ``"gpt-4o-2024-08-06"``, and
    ``"gpt-4o-mini"`` wins over ``"gpt-4o"`` for ``"gpt-4o-mini-2024-07-18"``."""

    __slots__ = ("_cache", "_default", "_entries")

    def __init__(self, entries: Mapping[str, T]) -> None:
        self._entries = {key: value for key, value in entries.items() if key != "*"}
        self._default = entries.get("*")
        self._cache: dict[str | None, T | None] = {}

    def get(self, model: str | None) -> T | None:
        """The value for ``model``, or ``None`` when nothing matches."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        value = self._lookup(model)
        if len(self._cache) < 4096:
            self._cache[model] = value
        return value

    def _lookup(self, model: str | None) -> T | None:
        if model is None:
            return self._default
        exact = self._entries.get(model)
        if exact is not None:
            return exact
        best: str | None = None
        for key in self._entries:
            if model.startswith(key) and (best is None or len(key) > len(best)):
                best = key
        return self._entries[best] if best is not None else self._default
