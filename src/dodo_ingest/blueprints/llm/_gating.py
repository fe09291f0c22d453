"""The credit gate of an :class:`LLMTracker`: reserve before the provider is called, settle after.

With ``LLMTracker(..., prices=..., gate=gate)``, every billable request of a wrapped client
first reserves a worst-case estimate of its cost for the customer it is billed to
(:meth:`CreditGate.reserve`); a refused request raises :class:`InsufficientCreditsError` and is
never sent. When the response (or the stream) ends, the hold settles with the cost of the usage
the tracker bills. The estimate:

- **input**: every string of the request body (message texts, system prompts, tool
  definitions and schemas, and the JSON keys around them) at one token per
  :data:`BOUND_BYTES_PER_TOKEN` bytes of UTF-8, plus :data:`REQUEST_OVERHEAD_TOKENS`; each
  inline or referenced media part (image, audio, file) counts :data:`MEDIA_PART_TOKENS`, or one
  token per :data:`MEDIA_BYTES_PER_TOKEN` bytes of inline data when that is more. No tokenizer
  and no token-counting endpoint: an estimate costs microseconds, not a round trip;
- **output**: the request's own limit (``max_completion_tokens``/``max_tokens`` for chat,
  ``max_output_tokens`` for Responses, ``max_tokens`` for Anthropic, ``max_output_tokens`` of
  the Gemini config), times ``n``/``candidate_count``; ``gate_default_max_output`` when the
  request sets none; 0 for embeddings;
- priced with the tracker's ``prices`` (input at the highest of the model's input prices),
  times ``gate_rate`` (entitlement units per unit of the prices' currency).

Nothing here raises into the user's call once the request was admitted: failures are logged
and counted, and a hold whose cost could not be worked out releases with its estimate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...gate import CreditGate, Hold, InsufficientCreditsError
from ._billing import ModelTable, Price
from ._usage import LLMUsage, as_mapping, count, field

if TYPE_CHECKING:
    from ._tracker import LLMTracker

__all__ = [
    "BOUND_BYTES_PER_TOKEN",
    "GOOGLE_IMAGE_OPERATIONS",
    "MEDIA_BYTES_PER_TOKEN",
    "MEDIA_PART_TOKENS",
    "REQUEST_OVERHEAD_TOKENS",
    "TYPICAL_BYTES_PER_TOKEN",
    "Admission",
    "CreditCutoffError",
    "Estimate",
    "GatePolicy",
    "OutputMeter",
    "output_limit",
    "request_size",
]

logger = logging.getLogger("dodo_ingest")

#: Reservations count one input token per this many bytes of UTF-8 request text. Real
#: tokenizers give about 4 bytes per token for English prose and 2-3 for code or JSON; CJK
#: scripts take 3 bytes per character and about one token per character.
BOUND_BYTES_PER_TOKEN = 2
#: A cut-off stream's counts that the provider never reported are estimated at one token per
#: this many bytes of text (a typical rate, not a bound: what is billed should be what was
#: generated, not a worst case).
TYPICAL_BYTES_PER_TOKEN = 4
#: Tokens added to every request's input estimate (message framing, special tokens).
REQUEST_OVERHEAD_TOKENS = 16
#: Tokens counted for one media part (an image, an audio clip, a file), inline or by reference.
MEDIA_PART_TOKENS = 2048
#: Inline media larger than ``MEDIA_PART_TOKENS * MEDIA_BYTES_PER_TOKEN`` bytes count one token
#: per this many bytes (long audio, video).
MEDIA_BYTES_PER_TOKEN = 500

_MILLION = Decimal(1_000_000)
#: google-genai image operations: billed per image (``per_image``), no tokens.
GOOGLE_IMAGE_OPERATIONS = frozenset(
    {"generate_images", "edit_image", "upscale_image", "recontext_image"}
)
#: Keys whose string or bytes value is media (base64 data, a data URL, a URL, a file id).
_MEDIA_KEYS = frozenset(
    {"data", "url", "image_url", "file_data", "file_url", "file_uri", "file_id", "b64_json"}
)
#: The SDKs' markers of parameters not given (left in a body until it is serialised).
_SENTINELS = frozenset({"NotGiven", "Omit"})
_BASE64_HEAD = re.compile(r"[A-Za-z0-9+/=_-]+")
#: At most this many values of one request body are walked (the rest is one media part).
_NODE_BUDGET = 200_000
_MAX_DEPTH = 48
_NEVER = 1 << 62
#: Distinct unpriced model names a tracker warns about (once each).
_UNPRICED_WARNINGS_KEPT = 256


class CreditCutoffError(InsufficientCreditsError):
    """A stream stopped by the tracker because its output reached the tokens its reservation
    covers (``LLMTracker(..., gate_cutoff=True)``).

    Raised by the stream's iteration after the last chunk that fit was delivered; the HTTP
    response is closed first, so the provider stops generating. What was generated is billed
    (an event with ``status: "cut_off"``) and settled. ``usage`` is that usage, ``billed`` its
    cost, ``reserved`` the amount reserved, ``output_limit`` the output tokens it covered.
    A subclass of :class:`InsufficientCreditsError` (HTTP 402): ``requested`` is ``billed``,
    ``available`` is ``reserved``.
    """

    code = "stream_cut_off"

    def __init__(
        self,
        customer_id: str,
        reserved: Decimal,
        billed: Decimal,
        usage: LLMUsage,
        output_limit: int,
    ) -> None:
        super().__init__(customer_id, billed, reserved)
        self.reserved = reserved
        self.billed = billed
        self.usage = usage
        self.output_limit = output_limit
        self.args = (
            f"stream stopped for customer {customer_id!r}: its output reached the "
            f"{output_limit} token(s) reserved for it ({billed} credit(s) billed, "
            f"{reserved} reserved)",
        )


# --------------------------------------------------------------------------- estimates


def _utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _media_tokens(size: int) -> int:
    return max(MEDIA_PART_TOKENS, -(-size // MEDIA_BYTES_PER_TOKEN))


class RequestSize:
    """What a request body holds: bytes of text and tokens of media."""

    __slots__ = ("budget", "media_tokens", "text_bytes")

    def __init__(self) -> None:
        self.text_bytes = 0
        self.media_tokens = 0
        self.budget = _NODE_BUDGET

    def tokens(self, bytes_per_token: int) -> int:
        """Input tokens at ``bytes_per_token`` bytes of text per token."""
        return -(-self.text_bytes // bytes_per_token) + self.media_tokens + REQUEST_OVERHEAD_TOKENS

    def add(self, value: Any, depth: int = 0) -> None:
        """Measure ``value``: strings, numbers, mappings, sequences, pydantic models (the
        google-genai types), bytes (media), callables (genai tools); anything else is one
        media part (a PIL image, a file object)."""
        self.budget -= 1
        if self.budget < 0:  # a huge body: what is left counts as one media part
            if self.budget == -1:
                self.media_tokens += MEDIA_PART_TOKENS
            return
        if depth > _MAX_DEPTH:
            self.media_tokens += MEDIA_PART_TOKENS
            return
        if isinstance(value, str):
            self.text_bytes += _utf8(value)
        elif value is None or isinstance(value, bool):
            return
        elif isinstance(value, (int, float, Decimal)):
            self.text_bytes += 2
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.media_tokens += _media_tokens(len(value))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self._entry(key, item, depth)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                self.add(item, depth + 1)
        elif hasattr(type(value), "__pydantic_fields__"):
            for key, item in as_mapping(value).items():
                self._entry(key, item, depth)
        elif type(value).__name__ in _SENTINELS:
            return
        elif callable(value):
            name = getattr(value, "__name__", "")
            doc = getattr(value, "__doc__", None)
            self.text_bytes += 256 + (_utf8(name) if isinstance(name, str) else 0)
            self.text_bytes += _utf8(doc) if isinstance(doc, str) else 0
        else:
            self.media_tokens += MEDIA_PART_TOKENS

    def _entry(self, key: Any, item: Any, depth: int) -> None:
        if item is None or type(item).__name__ in _SENTINELS:
            return
        if isinstance(key, str):
            self.text_bytes += _utf8(key)
            if key in _MEDIA_KEYS:
                if isinstance(item, (bytes, bytearray, memoryview)):
                    self.media_tokens += _media_tokens(len(item))
                    return
                if isinstance(item, str) and _is_media(item):
                    self.media_tokens += _media_tokens(len(item) * 3 // 4)
                    return
        self.add(item, depth + 1)


def _is_media(text: str) -> bool:
    """A data URL, a URL, a file id or base64 data (not prose)."""
    if text.startswith(("data:", "http://", "https://", "gs://", "file-", "files/")):
        return True
    head = text[:256]
    return len(text) >= 64 and _BASE64_HEAD.fullmatch(head) is not None


def request_size(*parts: Any) -> RequestSize:
    """Measure the parts of a request (body, extra body, multipart files)."""
    size = RequestSize()
    for part in parts:
        if part is not None:
            size.add(part)
    return size


def _limit(value: Any) -> int | None:
    number = count(value)
    return number if number is not None and number >= 0 else None


def output_limit(operation: str, body: Any) -> tuple[int | None, int]:
    """The output limit a request sets itself (``None``: none) and how many outputs it asks
    for (``n``, ``best_of``, ``candidate_count``)."""
    if operation in ("embeddings", "embed_content", "audio.speech"):
        return 0, 1  # speech is billed by the characters of its input
    if operation in GOOGLE_IMAGE_OPERATIONS:  # billed per image, no output tokens
        return 0, _limit(field(field(body, "config"), "number_of_images")) or 1
    if operation == "generate_content":
        config = field(body, "config")
        return _limit(field(config, "max_output_tokens")), _limit(
            field(config, "candidate_count")
        ) or 1
    choices = _limit(field(body, "n")) or 1
    if operation == "chat.completions":
        limit = _limit(field(body, "max_completion_tokens"))
        if limit is None:
            limit = _limit(field(body, "max_tokens"))
        return limit, choices
    if operation == "completions":
        return _limit(field(body, "max_tokens")), max(choices, _limit(field(body, "best_of")) or 1)
    if operation == "responses":
        return _limit(field(body, "max_output_tokens")), 1
    if operation == "messages":
        return _limit(field(body, "max_tokens")), 1
    return None, choices  # images, transcriptions: no token limit in the request


def _worst_cost(
    price: Price,
    operation: str,
    body: Any,
    input_tokens: int,
    output_tokens: int,
    outputs: int,
) -> Decimal:
    """What ``input_tokens`` and ``output_tokens`` could cost at most under ``price``: the
    tier the request pins (``service_tier``; a tier the provider picks itself is reserved at
    the base price), the long-context price when the bound on the input passes its
    threshold, the dearest input-side and output-side rates (cache writes, audio, images),
    the per-request fee, and for speech its characters, for images their number. Tool fees
    (web searches...) cannot be known before the call: they count when it settles."""
    tier = field(body, "service_tier")
    if isinstance(tier, str) and price.tiers and tier in price.tiers:
        price = price.tiers[tier]
    threshold = price.long_context_threshold
    if price.long_context is not None and threshold is not None and input_tokens > threshold:
        price = price.long_context
    input_unit = max(
        price.input_per_million,
        price.cached_input_per_million,
        price.cache_creation_input_per_million,
        price.cache_write_1h_input_per_million,
        price.cache_write_12h_input_per_million,
        price.audio_input_per_million,
        price.image_input_per_million,
    )
    output_unit = max(
        price.output_per_million, price.audio_output_per_million, price.image_output_per_million
    )
    amount = (input_tokens * input_unit + output_tokens * output_unit) / _MILLION
    amount += price.per_request
    if operation == "audio.speech":
        text = field(body, "input")
        characters = len(text) if isinstance(text, str) else 0
        amount += characters * price.characters_per_million / _MILLION
    elif operation == "images" or operation in GOOGLE_IMAGE_OPERATIONS:
        amount += price.per_image * outputs
    return amount


class Estimate:
    """A request's worst-case estimate: tokens, and their cost in the entitlement's unit."""

    __slots__ = ("amount", "input_tokens", "limited", "output_tokens", "typical_input_tokens")

    def __init__(
        self,
        amount: Decimal,
        input_tokens: int,
        typical_input_tokens: int,
        output_tokens: int,
        limited: bool,
    ) -> None:
        self.amount = amount
        self.input_tokens = input_tokens
        self.typical_input_tokens = typical_input_tokens
        self.output_tokens = output_tokens
        self.limited = limited
        """True when the request set its own output limit (the provider enforces it)."""

    def __repr__(self) -> str:
        return (
            f"Estimate(amount={self.amount}, input_tokens={self.input_tokens}, "
            f"output_tokens={self.output_tokens}, limited={self.limited})"
        )


# --------------------------------------------------------------------------- the policy


class GatePolicy:
    """How one tracker gates its calls: the gate, prices, rate, defaults."""

    __slots__ = (
        "_lock",
        "_unpriced",
        "cutoff",
        "default_max_output",
        "gate",
        "prices",
        "rate",
        "tracker",
    )

    def __init__(
        self,
        tracker: LLMTracker,
        gate: CreditGate,
        prices: ModelTable[Price],
        rate: Decimal,
        default_max_output: int,
        cutoff: bool,
    ) -> None:
        self.tracker = tracker
        self.gate = gate
        self.prices = prices
        self.rate = rate
        self.default_max_output = default_max_output
        self.cutoff = cutoff
        self._lock = threading.Lock()
        self._unpriced: set[str | None] = set()

    def estimate(self, operation: str, model: str | None, *parts: Any) -> Estimate:
        """The worst-case estimate of a request made of ``parts`` (its body first)."""
        try:
            size = request_size(*parts)
            input_tokens = size.tokens(BOUND_BYTES_PER_TOKEN)
            typical = size.tokens(TYPICAL_BYTES_PER_TOKEN)
        except Exception as exc:  # an exotic body: count it as one media part
            self.tracker._failure("could not measure an LLM request for the credit gate", exc)
            input_tokens = typical = MEDIA_PART_TOKENS + REQUEST_OVERHEAD_TOKENS
        try:
            limit, outputs = output_limit(operation, parts[0] if parts else None)
        except Exception as exc:
            self.tracker._failure("could not read an LLM request's output limit", exc)
            limit, outputs = None, 1
        limited = limit is not None
        output_tokens = (limit if limit is not None else self.default_max_output) * outputs
        price = self.prices.get(model)
        if price is None:
            self._warn_unpriced(model)
            amount = Decimal(0)
        else:
            body = parts[0] if parts else None
            amount = _worst_cost(price, operation, body, input_tokens, output_tokens, outputs)
            amount *= self.rate
        return Estimate(amount, input_tokens, typical, output_tokens, limited)

    def admit(self, customer_id: str, operation: str, model: str | None, *parts: Any) -> Admission:
        """Reserve the estimate for ``customer_id``; raises :class:`InsufficientCreditsError`
        (or :class:`CreditCheckUnavailableError` for a gate set to deny when blind)."""
        estimate = self.estimate(operation, model, *parts)
        hold = self.gate.reserve(customer_id, estimate.amount)
        return Admission(self, hold, estimate)

    async def aadmit(
        self, customer_id: str, operation: str, model: str | None, *parts: Any
    ) -> Admission:
        """:meth:`admit` for async clients."""
        estimate = self.estimate(operation, model, *parts)
        hold = await self.gate.areserve(customer_id, estimate.amount)
        return Admission(self, hold, estimate)

    def cost(self, usage: LLMUsage) -> Decimal:
        """The cost of ``usage`` in the entitlement's unit: what the tracker bills for it
        (``prices`` by the reported model, as ``costCents``), times the rate."""
        price = self.prices.get(usage.model)
        if price is None:
            return Decimal(0)
        return (price.input_cost(usage) + price.output_cost(usage)) * self.rate

    def _warn_unpriced(self, model: str | None) -> None:
        with self._lock:
            if model in self._unpriced or len(self._unpriced) >= _UNPRICED_WARNINGS_KEPT:
                return
            self._unpriced.add(model)
        logger.warning(
            "credit gate: model %r has no price in the tracker's prices, so its calls reserve "
            "nothing; add it (or a '*' default) to prices",
            model,
        )


class Admission:
    """One admitted request's hold, settled exactly once (first of: settle, cancel, release
    with the estimate). Never raises."""

    __slots__ = ("_once", "estimate", "handed_off", "hold", "policy")

    def __init__(self, policy: GatePolicy, hold: Hold, estimate: Estimate) -> None:
        self.policy = policy
        self.hold = hold
        self.estimate = estimate
        self.handed_off = False
        """True once a stream tap owns the settlement."""
        self._once = itertools.count()

    @property
    def amount(self) -> Decimal:
        """The amount reserved."""
        return self.hold.amount

    def settle(self, usage: LLMUsage | None) -> None:
        """Release with the cost of ``usage``, the usage the tracker bills (nothing billed,
        ``None``: release with no cost)."""
        if next(self._once):
            return
        if usage is None:
            self._off_the_loop(self._cancel)
            return
        try:
            cost = self.policy.cost(usage)
        except Exception as exc:
            self.policy.tracker._failure("could not settle a credit hold", exc)
            self._off_the_loop(self._release)
            return
        self._off_the_loop(self._settle, cost)

    def cancel(self) -> None:
        """Release with no cost: the request failed, nothing is billed."""
        if next(self._once):
            return
        self._off_the_loop(self._cancel)

    def close(self) -> None:
        """Release with the estimate unless settled or owned by a stream tap: tracking failed,
        so the cost is unknown and the worst case counts (until the API's balance catches up)."""
        if self.handed_off or next(self._once):
            return
        self._off_the_loop(self._release)

    def abandon(self) -> None:
        """Release with no cost unless settled or owned by a stream tap: a response whose body
        was never parsed, so nothing was billed."""
        if not self.handed_off:
            self.cancel()

    def watch(self, obj: Any) -> None:
        """Release with no cost when ``obj`` is garbage-collected, unless settled by then."""
        try:
            weakref.finalize(obj, self.abandon)
        except TypeError:  # not weak-referenceable: the estimate counts now
            self.close()

    def meter(
        self, provider: str, operation: str, model: str | None, family: str
    ) -> OutputMeter | None:
        """An output meter for a stream, or ``None`` when the cut-off does not apply: off, or
        the request set its own output limit (the provider enforces it)."""
        if not self.policy.cutoff or self.estimate.limited:
            return None
        return OutputMeter(self, provider, operation, model, _reader(family, operation))

    def _off_the_loop(self, end: Callable[..., None], *args: Any) -> None:
        """Run ``end(*args)`` now, or in a worker thread when called on a running event loop
        with a shared store (a network round trip must not block the loop); never raises."""
        if not self.policy.gate._inline_store:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
            else:
                try:
                    loop.run_in_executor(None, end, *args)
                    return
                except RuntimeError:  # the loop is closing: end it here
                    pass
        end(*args)

    def _settle(self, cost: Decimal) -> None:
        try:
            self.hold.settle(cost)
        except Exception as exc:
            self.policy.tracker._failure("could not settle a credit hold", exc)
        self._release()

    def _cancel(self) -> None:
        try:
            self.hold.cancel()
        except Exception as exc:
            self.policy.tracker._failure("could not release a credit hold", exc)

    def _release(self) -> None:
        try:
            self.hold.release()
        except Exception as exc:
            self.policy.tracker._failure("could not release a credit hold", exc)


# --------------------------------------------------------------------------- stream cut-off

Reader = Callable[["OutputMeter", Any], None]


class OutputMeter:
    """Counts a stream's output as it arrives; says when it reaches the reservation's output
    tokens. Counts come from the provider's running usage where a chunk carries it (Gemini,
    some OpenAI-compatible servers), else from the streamed text: the larger of the number of
    text deltas and one token per :data:`TYPICAL_BYTES_PER_TOKEN` bytes."""

    __slots__ = (
        "admission",
        "deltas",
        "finished",
        "limit",
        "model",
        "operation",
        "provider",
        "read",
        "reported_extra",
        "reported_input",
        "reported_output",
        "text_bytes",
    )

    def __init__(
        self,
        admission: Admission,
        provider: str,
        operation: str,
        model: str | None,
        read: Reader,
    ) -> None:
        self.admission = admission
        self.provider = provider
        self.operation = operation
        self.model = model
        self.read = read
        self.limit = admission.estimate.output_tokens
        self.text_bytes = 0
        self.deltas = 0
        self.reported_input: int | None = None
        self.reported_output: int | None = None
        self.reported_extra = 0
        """Output the provider reports apart from the text (Gemini's running thoughts)."""
        self.finished = False
        """The generation ended (a finish reason, a terminal event): nothing left to stop."""

    def observe(self, item: Any) -> bool:
        """Read ``item``; True when the output so far reached the limit and the generation
        goes on. Never raises: a reading failure is logged and counted, and the meter never
        cuts off afterwards."""
        try:
            self.read(self, item)
            return not self.finished and self.output_tokens() >= self.limit
        except Exception as exc:
            self.limit = _NEVER
            self.admission.policy.tracker._failure("could not meter an LLM stream", exc)
            return False

    def text(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self.text_bytes += _utf8(text)
            self.deltas += 1

    def output_tokens(self) -> int:
        """The output so far: reported by the provider, else estimated from the text."""
        if self.reported_output is not None:
            return self.reported_output + self.reported_extra
        estimated = max(self.deltas, -(-self.text_bytes // TYPICAL_BYTES_PER_TOKEN))
        return estimated + self.reported_extra

    def billed(self, known: LLMUsage | None) -> LLMUsage:
        """The usage of a stream cut off now: the provider's counts where it reported them,
        the rest estimated, marked ``cut_off``."""
        usage = known
        if usage is None:
            usage = LLMUsage(self.provider, self.operation, self.model)
        if usage.input_tokens is None:
            usage.input_tokens = (
                self.reported_input
                if self.reported_input is not None
                else self.admission.estimate.typical_input_tokens
            )
        usage.output_tokens = max(self.output_tokens(), usage.output_tokens or 0)
        usage.complete = False
        usage.cut_off = True
        return usage


def _read_chat(meter: OutputMeter, chunk: Any) -> None:
    usage = field(chunk, "usage")
    if usage is not None:
        _reported(meter, usage, "prompt_tokens", "completion_tokens")
    choices = field(chunk, "choices") or ()
    if choices:
        if all(field(choice, "finish_reason") is not None for choice in choices):
            meter.finished = True
    elif usage is not None:
        meter.finished = True
    for choice in choices:
        delta = field(choice, "delta")
        if delta is None:  # legacy completions
            meter.text(field(choice, "text"))
            continue
        meter.text(field(delta, "content"))
        meter.text(field(delta, "refusal"))
        meter.text(field(delta, "reasoning_content"))  # DeepSeek and others
        meter.text(field(delta, "reasoning"))  # OpenRouter
        for call in field(delta, "tool_calls") or ():
            function = field(call, "function")
            meter.text(field(function, "name"))
            meter.text(field(function, "arguments"))


def _read_event(meter: OutputMeter, event: Any) -> None:
    kind = field(event, "type")
    if not isinstance(kind, str):
        return
    if kind.endswith(".delta") and kind != "response.audio.delta":
        meter.text(field(event, "delta"))
    elif kind in ("response.completed", "response.incomplete", "response.failed"):
        meter.finished = True
        usage = field(field(event, "response"), "usage")
        if usage is not None:
            _reported(meter, usage, "input_tokens", "output_tokens")


def _read_anthropic(meter: OutputMeter, event: Any) -> None:
    kind = field(event, "type")
    if kind == "content_block_delta":
        delta = field(event, "delta")
        meter.text(field(delta, "text"))
        meter.text(field(delta, "partial_json"))
        meter.text(field(delta, "thinking"))
    elif kind == "message_start":
        usage = as_mapping(field(field(event, "message"), "usage"))
        parts = [
            count(usage.get(name))
            for name in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
        ]
        if parts[0] is not None:
            meter.reported_input = sum(part or 0 for part in parts)
    elif kind in ("message_delta", "message_stop"):
        meter.finished = True
        output = count(field(field(event, "usage"), "output_tokens"))
        if output is not None:
            meter.reported_output = output


def _read_gemini(meter: OutputMeter, chunk: Any) -> None:
    for candidate in field(chunk, "candidates") or ():
        if field(candidate, "finish_reason") is not None:
            meter.finished = True
        for part in field(field(candidate, "content"), "parts") or ():
            if field(part, "thought"):
                continue  # thoughts are reported as a running count
            meter.text(field(part, "text"))
            call = field(part, "function_call")
            if call is not None:
                size = request_size(field(call, "name"), field(call, "args"))
                meter.text_bytes += size.text_bytes
                meter.deltas += 1
    usage = as_mapping(field(chunk, "usage_metadata"))
    if usage:
        prompt = count(usage.get("prompt_token_count"))
        if prompt is not None:
            meter.reported_input = prompt + (count(usage.get("tool_use_prompt_token_count")) or 0)
        meter.reported_extra = count(usage.get("thoughts_token_count")) or 0
        meter.reported_output = count(usage.get("candidates_token_count"))


def _reported(meter: OutputMeter, usage: Any, input_name: str, output_name: str) -> None:
    values = as_mapping(usage)
    input_tokens = count(values.get(input_name))
    output_tokens = count(values.get(output_name))
    if input_tokens is not None:
        meter.reported_input = input_tokens
    if output_tokens is not None:
        meter.reported_output = output_tokens


def _reader(family: str, operation: str) -> Reader:
    if family == "anthropic":
        return _read_anthropic
    if family == "google":
        return _read_gemini
    if operation in ("chat.completions", "completions"):
        return _read_chat
    return _read_event
