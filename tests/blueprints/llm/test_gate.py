"""``LLMTracker(..., gate=CreditGate(...))``: calls reserve before the provider, settle after.

Real provider SDKs, their HTTP answered by an ``httpx2.MockTransport`` that records every
request (so "never reached the provider" is checked where requests go out); the gate reads
balances from the dev server over real HTTP. Prices of one credit per token make every
settled cost the ``totalTokens`` the tracker bills.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from dodo_ingest import (
    AsyncDodoClient,
    ConfigurationError,
    CreditGate,
    DodoClient,
    InsufficientCreditsError,
    MeterAggregation,
)
from dodo_ingest.blueprints.llm import LLMTracker, Price, create_llm_tracker
from dodo_ingest.blueprints.llm._gating import GatePolicy
from dodo_ingest.delivery import Ingestion
from dodo_ingest.devserver import DevServer
from dodo_ingest.gate import MemoryStore

from . import payloads
from .conftest import RecordingSink

API_KEY = "sk_test_llm_gate_0123456789abcdef"
GRANT = Decimal(100_000)
PER_TOKEN = {"*": Price(input_per_million=1_000_000, output_per_million=1_000_000)}
"""One credit per token, in and out: a settled cost is the billed ``totalTokens``."""
OUTPUT_ONLY = {"*": Price(input_per_million=0, output_per_million=1_000_000)}
"""One credit per output token: an estimate is its output part alone."""
INPUT_ONLY = {"*": Price(input_per_million=1_000_000, output_per_million=0)}
MESSAGES = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-sonnet-4-6"
GEMINI = "gemini-2.5-flash"


class Clock:
    """A clock the test moves by hand (the gate's balances and settled usage age by it)."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- provider mock


def answer_like_the_apis(request: httpx2.Request) -> httpx2.Response:
    """Answer OpenAI, Anthropic and Gemini requests with the suite's realistic payloads."""
    url = str(request.url)
    path = request.url.path
    if path.endswith("/chat/completions"):
        return payloads.chat_stream_for(request)
    if path.endswith("/responses"):
        return payloads.responses_for(request)
    if path.endswith("/embeddings"):
        return payloads.json_response(payloads.EMBEDDINGS, {"x-request-id": "req_emb_1"})
    if path.endswith("/v1/messages"):
        return payloads.anthropic_for(request)
    if url.endswith(":generateContent"):
        return payloads.json_response(payloads.gemini_response())
    if ":streamGenerateContent" in url:
        return payloads.sse_response(list(payloads.gemini_chunks()))
    if url.endswith(":batchEmbedContents"):
        return payloads.json_response(payloads.GEMINI_EMBED)
    return httpx2.Response(404, json={"error": {"message": f"unknown {url}"}})


class Provider:
    """The provider side of the real SDKs: records each request, then answers it.

    ``during`` runs inside each request (while its hold is live); ``answer`` makes the
    response (default: :func:`answer_like_the_apis`).
    """

    def __init__(
        self,
        answer: Callable[[httpx2.Request], Any] = answer_like_the_apis,
        during: Callable[[httpx2.Request], None] | None = None,
    ) -> None:
        self.requests: list[httpx2.Request] = []
        self.answer = answer
        self.during = during
        self.transport = httpx2.MockTransport(self._handle)

    def _handle(self, request: httpx2.Request) -> Any:
        self.requests.append(request)
        if self.during is not None:
            self.during(request)
        return self.answer(request)

    def body(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index].content)  # type: ignore[no-any-return]

    def openai(self, *, asynchronous: bool = False, retries: int = 0) -> Any:
        if asynchronous:
            return openai.AsyncOpenAI(
                api_key="sk-test",
                max_retries=retries,
                http_client=httpx2.AsyncClient(transport=self.transport),
            )
        return openai.OpenAI(
            api_key="sk-test",
            max_retries=retries,
            http_client=httpx2.Client(transport=self.transport),
        )

    def anthropic(self, *, asynchronous: bool = False) -> Any:
        if asynchronous:
            return anthropic.AsyncAnthropic(
                api_key="sk-ant",
                max_retries=0,
                http_client=httpx2.AsyncClient(transport=self.transport),
            )
        return anthropic.Anthropic(
            api_key="sk-ant", max_retries=0, http_client=httpx2.Client(transport=self.transport)
        )

    def genai(self, *, vertexai: bool = False) -> genai.Client:
        return genai.Client(
            vertexai=vertexai,
            api_key="g-key",
            http_options={
                "client_args": {"transport": self.transport},
                "async_client_args": {"transport": self.transport},
            },
        )

    def client(self, family: str, *, asynchronous: bool = False) -> Any:
        if family == "openai":
            return self.openai(asynchronous=asynchronous)
        if family == "anthropic":
            return self.anthropic(asynchronous=asynchronous)
        made = self.genai()
        return made.aio if asynchronous else made


# --------------------------------------------------------------------------- gate fixtures


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer() as running:
        yield running


@pytest.fixture
def dodo(server: DevServer) -> Iterator[DodoClient]:
    with DodoClient(api_key=API_KEY, base_url=server.base_url, max_retries=0) as made:
        yield made


@pytest.fixture
def credits(dodo: DodoClient) -> str:
    """A fresh credit entitlement (credits, 6 decimals) for each test."""
    return dodo.credits.create_entitlement(name="LLM credits", unit="credits", precision=6).id


@pytest.fixture
def customer() -> str:
    return f"cus_{uuid.uuid4().hex[:12]}"


def grant(dodo: DodoClient, credits: str, customer: str, amount: Decimal | int) -> None:
    dodo.credits.create_ledger_entry(credits, customer, amount=str(amount))


def gated(
    sink: Any,
    gate: CreditGate,
    prices: dict[str, Price] | None = None,
    **options: Any,
) -> LLMTracker:
    return LLMTracker(sink, prices=PER_TOKEN if prices is None else prices, gate=gate, **options)


class Holds:
    """A ``during`` hook: records what is held for ``customer`` while a request is sent, as
    the drop in ``gate.available`` since :meth:`before` (or since the balance granted)."""

    def __init__(self, gate: CreditGate, customer: str, balance: Decimal | int) -> None:
        self.gate = gate
        self.customer = customer
        self.base = Decimal(balance)
        self.seen: list[Decimal] = []

    def before(self) -> None:
        self.base = self.gate.available(self.customer)

    def __call__(self, request: httpx2.Request) -> None:
        self.seen.append(self.base - self.gate.available(self.customer))


# --------------------------------------------------------------------------- calls


async def _collect(awaitable: Awaitable[Any]) -> list[Any]:
    return [item async for item in await awaitable]


def _chat_helper(c: openai.OpenAI) -> None:
    with c.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as s:  # type: ignore[arg-type]
        s.get_final_completion()


def _claude_helper(c: anthropic.Anthropic) -> None:
    with c.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as s:  # type: ignore[arg-type]
        s.get_final_message()


async def _achat_helper(c: openai.AsyncOpenAI) -> None:
    async with c.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as s:  # type: ignore[arg-type]
        await s.get_final_completion()


async def _aclaude_helper(c: anthropic.AsyncAnthropic) -> None:
    async with c.messages.stream(model=CLAUDE, max_tokens=64, messages=MESSAGES) as s:  # type: ignore[arg-type]
        await s.get_final_message()


class Answer(pydantic.BaseModel):
    answer: str


CLAUDE_ARGS: dict[str, Any] = {"model": CLAUDE, "max_tokens": 64, "messages": MESSAGES}

# name: (family, call, billed totalTokens = cost at one credit per token)
SYNC_CALLS: dict[str, tuple[str, Callable[[Any], object], int]] = {
    "openai-chat": ("openai", lambda c: c.chat.completions.create(model="gpt-4o", messages=MESSAGES), 1163),
    "openai-chat-stream": ("openai", lambda c: list(c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)), 22),
    "openai-chat-parse": ("openai", lambda c: c.chat.completions.parse(model="gpt-4o", messages=MESSAGES, response_format=Answer), 1163),
    "openai-chat-stream-helper": ("openai", _chat_helper, 22),
    "openai-responses": ("openai", lambda c: c.responses.create(model="gpt-4o", input="hi"), 2348),
    "openai-responses-stream": ("openai", lambda c: list(c.responses.create(model="gpt-4o", input="hi", stream=True)), 2348),
    "openai-embeddings": ("openai", lambda c: c.embeddings.create(model="text-embedding-3-small", input="x"), 8),
    "anthropic-create": ("anthropic", lambda c: c.messages.create(**CLAUDE_ARGS), 6214),
    "anthropic-stream": ("anthropic", lambda c: list(c.messages.create(**CLAUDE_ARGS, stream=True)), 1585),
    "anthropic-stream-helper": ("anthropic", _claude_helper, 1585),
    "anthropic-beta": ("anthropic", lambda c: c.beta.messages.create(**CLAUDE_ARGS), 6214),
    "google-generate": ("google", lambda c: c.models.generate_content(model=GEMINI, contents="hi"), 1148),
    "google-stream": ("google", lambda c: list(c.models.generate_content_stream(model=GEMINI, contents="hi")), 76),
    "google-embed": ("google", lambda c: c.models.embed_content(model="text-embedding-004", contents=["a"]), 8),
    "google-chat": ("google", lambda c: c.chats.create(model=GEMINI).send_message("hi"), 1148),
}  # fmt: skip

ASYNC_CALLS: dict[str, tuple[str, Callable[[Any], Awaitable[object]], int]] = {
    "openai-chat": ("openai", lambda c: c.chat.completions.create(model="gpt-4o", messages=MESSAGES), 1163),
    "openai-chat-stream": ("openai", lambda c: _collect(c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)), 22),
    "openai-chat-stream-helper": ("openai", _achat_helper, 22),
    "openai-responses": ("openai", lambda c: c.responses.create(model="gpt-4o", input="hi"), 2348),
    "openai-responses-stream": ("openai", lambda c: _collect(c.responses.create(model="gpt-4o", input="hi", stream=True)), 2348),
    "anthropic-create": ("anthropic", lambda c: c.messages.create(**CLAUDE_ARGS), 6214),
    "anthropic-stream": ("anthropic", lambda c: _collect(c.messages.create(**CLAUDE_ARGS, stream=True)), 1585),
    "anthropic-stream-helper": ("anthropic", _aclaude_helper, 1585),
    "google-generate": ("google", lambda c: c.models.generate_content(model=GEMINI, contents="hi"), 1148),
    "google-stream": ("google", lambda c: _collect(c.models.generate_content_stream(model=GEMINI, contents="hi")), 76),
    "google-embed": ("google", lambda c: c.models.embed_content(model="text-embedding-004", contents=["a"]), 8),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SYNC_CALLS))
def test_an_admitted_call_reaches_the_provider_and_settles_its_real_cost(
    case: str, dodo: DodoClient, credits: str, customer: str
) -> None:
    family, call, cost = SYNC_CALLS[case]
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.client(family), customer_id=customer)
    call(client)
    assert len(provider.requests) == 1
    assert len(hook.seen) == 1 and hook.seen[0] > 0  # held while it ran
    event = sink.only()
    assert event.customer_id == customer
    assert event.metadata["totalTokens"] == cost
    assert gate.available(customer) == GRANT - cost  # settled with what was billed
    assert gate.stats.admitted == 1


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(ASYNC_CALLS))
async def test_an_admitted_async_call_reaches_the_provider_and_settles_its_real_cost(
    case: str, server: DevServer, dodo: DodoClient, credits: str, customer: str
) -> None:
    family, call, cost = ASYNC_CALLS[case]
    grant(dodo, credits, customer, GRANT)
    async with AsyncDodoClient(api_key=API_KEY, base_url=server.base_url) as adodo:
        gate = CreditGate(adodo, credit_entitlement_id=credits)
        provider = Provider()
        sink = RecordingSink()
        client = gated(sink, gate).wrap(
            provider.client(family, asynchronous=True), customer_id=customer
        )
        await call(client)
        assert len(provider.requests) == 1
        assert sink.only().metadata["totalTokens"] == cost
        assert await gate.aavailable(customer) == GRANT - cost


class SlowSharedStore(MemoryStore):
    """A store the gate treats as shared (a network round trip): its releases wait until the
    test lets them through, so a release made on the event loop would stall the call."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.loop_threads: list[bool] = []

    def release(self, *args: Any, **kwargs: Any) -> None:
        try:
            asyncio.get_running_loop()
            self.loop_threads.append(True)
        except RuntimeError:
            self.loop_threads.append(False)
        assert self.go.wait(10)
        super().release(*args, **kwargs)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "case", ["openai-chat", "openai-chat-stream", "anthropic-stream", "google-generate"]
)
async def test_async_calls_settle_a_shared_store_off_the_event_loop(
    case: str, server: DevServer, dodo: DodoClient, credits: str, customer: str
) -> None:
    family, call, cost = ASYNC_CALLS[case]
    grant(dodo, credits, customer, GRANT)
    store = SlowSharedStore()
    async with AsyncDodoClient(api_key=API_KEY, base_url=server.base_url) as adodo:
        gate = CreditGate(adodo, credit_entitlement_id=credits, store=store)
        sink = RecordingSink()
        client = gated(sink, gate).wrap(
            Provider().client(family, asynchronous=True), customer_id=customer
        )
        await asyncio.wait_for(call(client), timeout=5)  # returns while the store waits
        assert sink.only().metadata["totalTokens"] == cost
        store.go.set()
        deadline = asyncio.get_running_loop().time() + 10
        while await gate.aavailable(customer) != GRANT - cost:
            assert asyncio.get_running_loop().time() < deadline, "the settlement never landed"
            await asyncio.sleep(0.01)
    assert store.loop_threads == [False]  # one release, from a worker thread


@pytest.mark.parametrize("case", sorted(SYNC_CALLS))
def test_a_refused_call_raises_and_never_reaches_the_provider(
    case: str, dodo: DodoClient, credits: str, customer: str
) -> None:
    family, call, _ = SYNC_CALLS[case]
    grant(dodo, credits, customer, 10)  # less than any of these calls' estimate
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.client(family), customer_id=customer)
    with pytest.raises(InsufficientCreditsError) as refused:
        call(client)
    assert provider.requests == []  # nothing was sent
    assert sink.events == []
    assert refused.value.customer_id == customer
    assert refused.value.requested > 10 and refused.value.available == 10
    assert refused.value.status_code == 402
    assert gate.available(customer) == 10  # nothing held
    assert gate.stats.refused == 1


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(ASYNC_CALLS))
async def test_a_refused_async_call_never_reaches_the_provider(
    case: str, dodo: DodoClient, credits: str, customer: str
) -> None:
    family, call, _ = ASYNC_CALLS[case]
    grant(dodo, credits, customer, 10)
    gate = CreditGate(dodo, credit_entitlement_id=credits)  # a sync client serves async calls
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate).wrap(
        provider.client(family, asynchronous=True), customer_id=customer
    )
    with pytest.raises(InsufficientCreditsError):
        await call(client)
    assert provider.requests == []
    assert sink.events == []
    assert await gate.aavailable(customer) == 10


def test_the_customer_scope_is_the_customer_reserved_for(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    tracker = gated(RecordingSink(), gate)
    client = tracker.wrap(provider.openai(), customer_id=customer)
    with tracker.customer("cus_broke"), pytest.raises(InsufficientCreditsError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert refused.value.customer_id == "cus_broke"
    assert provider.requests == []
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(provider.requests) == 1
    assert gate.available(customer) == GRANT - 1163


def test_a_call_without_a_customer_is_neither_tracked_nor_gated(
    dodo: DodoClient, credits: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    sink = RecordingSink()
    tracker = gated(sink, gate)
    client = tracker.wrap(provider.openai())
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(provider.requests) == 1
    assert sink.events == [] and gate.stats.admitted == 0
    assert tracker.stats.failures == 1
    assert "without a customer" in caplog.text


# --------------------------------------------------------------------------- failures


def _error(status: int) -> Callable[[httpx2.Request], httpx2.Response]:
    body = {"error": {"type": "server_error", "message": "boom"}}
    return lambda request: httpx2.Response(status, json=body)


@pytest.mark.parametrize(
    ("family", "call", "error"),
    [
        ("openai", SYNC_CALLS["openai-chat"][1], openai.InternalServerError),
        ("openai", SYNC_CALLS["openai-chat-stream"][1], openai.InternalServerError),
        ("anthropic", SYNC_CALLS["anthropic-create"][1], anthropic.InternalServerError),
        ("anthropic", SYNC_CALLS["anthropic-stream-helper"][1], anthropic.InternalServerError),
        ("google", SYNC_CALLS["google-generate"][1], genai_errors.ServerError),
        ("google", SYNC_CALLS["google-stream"][1], genai_errors.ServerError),
    ],
    ids=["openai", "openai-stream", "anthropic", "anthropic-stream", "google", "google-stream"],
)
def test_a_provider_error_releases_the_hold(
    family: str,
    call: Callable[[Any], object],
    error: type[Exception],
    dodo: DodoClient,
    credits: str,
    customer: str,
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(answer=_error(500), during=hook)
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.client(family), customer_id=customer)
    with pytest.raises(error):  # the provider's own error, unchanged
        call(client)
    assert len(provider.requests) == 1 and hook.seen[0] > 0
    assert sink.events == []
    assert gate.available(customer) == GRANT  # nothing billed, nothing held


@pytest.mark.anyio
async def test_an_async_connection_error_releases_the_hold(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    provider = Provider(answer=refuse)
    client = gated(RecordingSink(), gate).wrap(
        provider.openai(asynchronous=True), customer_id=customer
    )
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert gate.available(customer) == GRANT


def test_one_hold_covers_the_sdk_retries(dodo: DodoClient, credits: str, customer: str) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    answers = iter([httpx2.Response(503, json={"error": {"message": "busy"}}), None])

    def flaky(request: httpx2.Request) -> httpx2.Response:
        return next(answers) or answer_like_the_apis(request)

    provider = Provider(answer=flaky)
    client = gated(RecordingSink(), gate).wrap(provider.openai(retries=1), customer_id=customer)
    client.with_options(timeout=5).chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(provider.requests) == 2
    assert gate.stats.admitted == 1
    assert gate.available(customer) == GRANT - 1163


def test_a_parse_that_raises_settles_with_the_usage_billed(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    truncated = {**payloads.anthropic_message('{"answer": "He'), "stop_reason": "max_tokens"}
    provider = Provider(answer=lambda request: payloads.json_response(truncated))
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.anthropic(), customer_id=customer)
    with pytest.raises(pydantic.ValidationError):
        client.messages.parse(**CLAUDE_ARGS, output_format=Answer)
    assert sink.only().metadata["totalTokens"] == 6214
    assert gate.available(customer) == GRANT - 6214


class BrokenReleaseStore(MemoryStore):
    """Holds are taken, but releasing them fails (a store that went away mid-call)."""

    def release(self, key: str, hold_id: str, usage: Decimal, *, now: float) -> None:
        raise ConnectionError("store unreachable")


def test_bookkeeping_failures_after_admission_never_reach_the_call(
    dodo: DodoClient,
    credits: str,
    customer: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits, store=BrokenReleaseStore())
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.openai(), customer_id=customer)
    completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert completion.usage is not None and len(chunks) == 4
    assert len(sink.events) == 2
    assert "could not release a hold" in caplog.text

    # Working out the cost fails: the call is unaffected, the estimate counts instead.
    healthy = CreditGate(dodo, credit_entitlement_id=credits)
    tracker = gated(RecordingSink(), healthy, prices=OUTPUT_ONLY, gate_default_max_output=700)

    def broken_cost(self: GatePolicy, usage: Any) -> Decimal:
        raise ArithmeticError("no cost")

    monkeypatch.setattr(GatePolicy, "cost", broken_cost)
    client = tracker.wrap(provider.openai(), customer_id=customer)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert tracker.stats.failures == 1
    assert healthy.available(customer) == GRANT - 700

    # The event sink fails: the hold still settles with the real cost.
    monkeypatch.undo()
    failing = RecordingSink(fail_with=RuntimeError("queue full"))
    other = f"{customer}_b"
    grant(dodo, credits, other, GRANT)
    client = gated(failing, healthy).wrap(provider.openai(), customer_id=other)
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    assert healthy.available(other) == GRANT - 1163


# --------------------------------------------------------------------------- the estimate


def _json_bytes(value: Any) -> int:
    """The documented rule, written out independently: UTF-8 bytes of every key and string,
    2 per number, nothing for booleans and nulls."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, (int, float)):
        return 2
    if isinstance(value, dict):
        return sum(len(k.encode()) + _json_bytes(v) for k, v in value.items() if v is not None)
    return sum(_json_bytes(item) for item in value)


def test_the_input_estimate_counts_the_request_text_at_two_bytes_per_token(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    tracker = gated(RecordingSink(), gate, prices=INPUT_ONLY)
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look an order up.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
        },
    }
    messages = [
        {"role": "system", "content": "You answer questions about orders, briefly."},
        {"role": "user", "content": "Où est ma commande n° 42 ? 注文はどこ"},
    ]
    client = tracker.wrap(provider.openai(), customer_id=customer)
    client.chat.completions.create(model="gpt-4o", messages=messages, tools=[tool])  # type: ignore[arg-type, list-item]
    claude = tracker.wrap(provider.anthropic(), customer_id=customer)
    hook.before()
    claude.messages.create(
        model=CLAUDE,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "x" * 1001}],
    )
    expected = [math.ceil(_json_bytes(provider.body(i)) / 2) + 16 for i in range(2)]
    assert hook.seen == expected
    assert expected[1] > 1001 / 2  # 1001 characters: over 500 tokens reserved, ~250 real


def test_media_parts_count_a_fixed_allowance_not_their_base64(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    client = gated(RecordingSink(), gate, prices=INPUT_ONLY).wrap(
        provider.openai(), customer_id=customer
    )
    image = "data:image/png;base64," + "iVBORw0KGgo" * 20_000  # ~220 kB of base64
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": image}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item, misc]
    )
    body = provider.body()
    urls = [part["image_url"]["url"] for part in body["messages"][0]["content"][1:]]
    text = _json_bytes(body) - sum(len(url) for url in urls)
    assert hook.seen == [math.ceil(text / 2) + 16 + 2 * 2048]


@pytest.mark.anyio
async def test_the_output_estimate_is_the_request_limit_else_the_default(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    tracker = gated(RecordingSink(), gate, prices=OUTPUT_ONLY, gate_default_max_output=123)
    gpt = tracker.wrap(provider.openai(), customer_id=customer)
    claude = tracker.wrap(provider.anthropic(asynchronous=True), customer_id=customer)
    gemini = tracker.wrap(provider.genai(), customer_id=customer)
    config = types.GenerateContentConfig(max_output_tokens=17, candidate_count=2)
    calls: list[Callable[[], object]] = [
        lambda: gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_completion_tokens=7, n=2),
        lambda: gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=9),
        lambda: gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES),
        lambda: gpt.responses.create(model="gpt-4o", input="hi", max_output_tokens=11),
        lambda: gpt.embeddings.create(model="text-embedding-3-small", input="x"),
        lambda: claude.messages.create(model=CLAUDE, max_tokens=13, messages=MESSAGES),
        lambda: gemini.models.generate_content(model=GEMINI, contents="hi", config=config),
        lambda: gemini.aio.models.generate_content(model=GEMINI, contents="hi", config={"max_output_tokens": 5}),
    ]  # fmt: skip
    for call in calls:
        hook.before()
        made = call()
        if isinstance(made, Awaitable):
            await made
    assert hook.seen == [14, 9, 123, 11, 0, 13, 34, 5]


def test_the_estimate_takes_the_dearest_price_the_call_can_be_billed_at(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    million = 1_000_000
    prices = {
        "gpt-4o": Price(
            input_per_million=0,
            output_per_million=million,  # 1 credit per output token
            audio_output_per_million=3 * million,  # dearer: the bound if audio comes out
            per_request=5,
            tiers={"priority": Price(input_per_million=0, output_per_million=2 * million)},
        ),
        "gemini-long": Price(
            input_per_million=0,
            output_per_million=million,
            long_context_threshold=10,
            long_context=Price(input_per_million=0, output_per_million=4 * million),
        ),
        "tts-1": Price(input_per_million=0, output_per_million=0, characters_per_million=million),
        "dall-e-3": Price(input_per_million=0, output_per_million=0, per_image=7),
        "imagen-4": Price(input_per_million=0, output_per_million=million, per_image=9),
    }
    tracker = gated(RecordingSink(), gate, prices=prices, gate_default_max_output=100)
    gpt = tracker.wrap(provider.openai(), customer_id=customer)
    gemini = tracker.wrap(provider.genai(), customer_id=customer)
    vertex = tracker.wrap(provider.genai(vertexai=True), customer_id=customer)
    calls: list[Callable[[], object]] = [
        lambda: gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10),
        lambda: gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10, service_tier="priority"),
        lambda: gemini.models.generate_content(model="gemini-long", contents="x" * 100, config={"max_output_tokens": 10}),
        lambda: gpt.audio.speech.create(model="tts-1", voice="alloy", input="twelve chars"),
        lambda: gpt.images.generate(model="dall-e-3", prompt="a cat", n=2),
        lambda: vertex.models.generate_images(model="imagen-4", prompt="a cat", config={"number_of_images": 3}),
    ]  # fmt: skip
    for call in calls:
        hook.before()
        # The provider mock has no answer for some: the hold was seen all the same.
        with contextlib.suppress(openai.APIError, genai_errors.APIError):
            call()
    assert hook.seen == [
        10 * 3 + 5,  # the dearest output rate (audio), and the request fee
        10 * 2,  # the tier the request pins (its own rates, no fee)
        10 * 4,  # the long-context price: the bound on the input passes the threshold
        12,  # one credit per character of the input
        2 * 7,  # per image, n of them
        3 * 9,  # per image, number_of_images of them; no output tokens
    ]


def test_every_request_of_an_automatic_function_calling_loop_is_admitted(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    def get_weather(city: str) -> str:
        """Return the weather of a city."""
        return f"sunny in {city}"

    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    first = payloads.gemini_response(
        parts=[call],
        usage={"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 110},
        response_id="afc-step-1",
    )
    second = payloads.gemini_response(text="Sunny.", response_id="afc-step-2")
    answers = iter([first, second])
    grant(dodo, credits, customer, 59)  # one step's estimate (50 out), not two
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider(answer=lambda request: httpx2.Response(200, json=next(answers)))
    sink = RecordingSink()
    gemini = gated(sink, gate, prices=OUTPUT_ONLY, gate_default_max_output=50).wrap(
        provider.genai(), customer_id=customer
    )
    with pytest.raises(InsufficientCreditsError):
        gemini.models.generate_content(
            model=GEMINI,
            contents="weather in Paris?",
            config=types.GenerateContentConfig(tools=[get_weather]),
        )
    assert len(provider.requests) == 1  # the second step was refused before it was sent
    assert [e.metadata["outputTokens"] for e in sink.events] == [10]
    assert gate.available(customer) == 49  # 59 - the 10 the first step cost


def test_an_unpriced_model_reserves_nothing_and_is_named_once(
    dodo: DodoClient, credits: str, customer: str, caplog: pytest.LogCaptureFixture
) -> None:
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    prices = {"gpt-4o": Price(input_per_million=1, output_per_million=1)}
    client = gated(RecordingSink(), gate, prices=prices).wrap(
        provider.openai(), customer_id=customer
    )
    for _ in range(2):
        client.chat.completions.create(model="mystery-model", messages=MESSAGES)  # type: ignore[arg-type]
    assert len(provider.requests) == 2  # a customer with nothing left pays nothing for it
    warnings = [r for r in caplog.records if "mystery-model" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


# --------------------------------------------------------------------------- configuration


def test_configuration_errors_are_raised_when_the_tracker_is_built(
    server: DevServer, dodo: DodoClient, credits: str
) -> None:
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    sink = RecordingSink()
    with pytest.raises(ConfigurationError, match="gate needs prices"):
        LLMTracker(sink, gate=gate)
    with pytest.raises(ConfigurationError, match="needs a gate"):
        LLMTracker(sink, prices=PER_TOKEN, gate_cutoff=True)
    with pytest.raises(ConfigurationError, match="gate must be a CreditGate"):
        LLMTracker(sink, prices=PER_TOKEN, gate=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="gate_rate"):
        LLMTracker(sink, prices=PER_TOKEN, gate=gate, gate_rate="-1")
    with pytest.raises(ConfigurationError, match="gate_default_max_output"):
        LLMTracker(sink, prices=PER_TOKEN, gate=gate, gate_default_max_output=-1)
    with pytest.raises(ConfigurationError, match="gate_cutoff"):
        LLMTracker(sink, prices=PER_TOKEN, gate=gate, gate_cutoff="yes")  # type: ignore[arg-type]
    tracker = LLMTracker(sink, prices=PER_TOKEN, gate=gate)
    assert tracker.gate is gate and LLMTracker(sink).gate is None

    adodo = AsyncDodoClient(api_key=API_KEY, base_url=server.base_url)
    async_only = gated(sink, CreditGate(adodo, credit_entitlement_id=credits))
    provider = Provider()
    for client in (provider.openai(), provider.anthropic(), provider.genai()):
        with pytest.raises(ConfigurationError, match="AsyncDodoClient"):
            async_only.wrap(client, customer_id="cus_1")
    async_only.wrap(provider.openai(asynchronous=True), customer_id="cus_1")
    async_only.wrap(provider.genai().aio, customer_id="cus_1")
    asyncio.run(adodo.aclose())


def test_create_llm_tracker_takes_the_gate(
    server: DevServer, dodo: DodoClient, credits: str
) -> None:
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    with pytest.raises(ConfigurationError, match="gate needs prices"):
        create_llm_tracker(api_key=API_KEY, base_url=server.base_url, gate=gate)
    with create_llm_tracker(
        api_key=API_KEY, base_url=server.base_url, prices=PER_TOKEN, gate=gate, gate_cutoff=True
    ) as tracker:
        assert tracker.gate is gate


# --------------------------------------------------------------------------- end to end


def test_the_settled_cost_is_what_the_api_deducts_from_the_events(
    server: DevServer, dodo: DodoClient, credits: str, customer: str
) -> None:
    """Prices in US dollars, a meter summing ``costCents`` at one credit per cent, so
    ``gate_rate=100``: the gate holds exactly what the API later deducts, and counts it once
    (held as settled usage until the balance read shows it deducted, then by the balance)."""
    meter = dodo.meters.create(
        name=f"LLM cost {customer}",
        event_name="llm.chat_completion",
        measurement_unit="cents",
        aggregation=MeterAggregation("sum", "costCents"),
    )
    server.link_meter_to_credits(meter.id, credits, 1)
    grant(dodo, credits, customer, 100)
    clock = Clock()
    gate = CreditGate(dodo, credit_entitlement_id=credits, clock=clock)
    prices = {"*": Price(input_per_million="10", output_per_million="100")}
    provider = Provider()
    with Ingestion(api_key=API_KEY, base_url=server.base_url, flush_interval=0.02) as ingestion:
        tracker = LLMTracker(ingestion, prices=prices, gate=gate, gate_rate=100)
        client = tracker.wrap(provider.openai(), customer_id=customer)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
        assert ingestion.flush(timeout=10)
    cost = Decimal("1.577")  # 1117 x $10/M + 46 x $100/M = $0.01577 = 1.577 cents
    assert gate.available(customer) == 100 - cost  # settled, not yet deducted by the API
    assert dodo.credits.balance(credits, customer).balance == 100 - cost  # deducted now
    clock.now += 10  # the next read sees the deduction: counted once, not twice
    assert gate.available(customer) == 100 - cost
    assert gate.stats.balance_reads == 2
