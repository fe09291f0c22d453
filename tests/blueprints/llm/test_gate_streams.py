"""Gated streams: the hold lasts as long as the stream and settles when it ends, however it
ends; with ``gate_cutoff=True`` a stream that outgrows its reservation is stopped mid-way and
billed for what was generated."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx2
import pytest

from dodo_ingest import CreditGate, DodoClient
from dodo_ingest.blueprints.llm import CreditCutoffError

from . import payloads
from .conftest import RecordingSink
from .test_gate import (
    CLAUDE,
    CLAUDE_ARGS,
    GEMINI,
    GRANT,
    MESSAGES,
    OUTPUT_ONLY,
    Holds,
    Provider,
    answer_like_the_apis,
    credits,
    customer,
    dodo,
    gated,
    grant,
    server,
)

__all__ = ["credits", "customer", "dodo", "server"]  # fixtures shared with test_gate.py

LIMIT = 20
"""``gate_default_max_output`` of the cut-off tests: the output tokens a stream may produce."""


class Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A streamed HTTP body served one frame at a time: ``head``, then ``frame(i)`` for
    ``i`` in ``range(count)``, then ``tail``. Records what was served and whether the client
    closed it."""

    def __init__(
        self,
        head: list[bytes],
        frame: Callable[[int], bytes],
        count: int = 10_000,
        tail: list[bytes] | None = None,
    ) -> None:
        self.head = head
        self.frame = frame
        self.count = count
        self.tail = tail or []
        self.served = 0
        self.closed = False

    def _frames(self) -> Iterator[bytes]:
        yield from self.head
        for i in range(self.count):
            yield self.frame(i)
        yield from self.tail

    def __iter__(self) -> Iterator[bytes]:
        for frame in self._frames():
            self.served += 1
            yield frame

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for frame in self._frames():
            self.served += 1
            yield frame

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True

    def response(self, **headers: str) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream", **headers}, stream=self
        )


def sse(data: dict[str, Any] | str, *, named: bool = False) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    event = f"event: {data['type']}\n" if named and isinstance(data, dict) else ""
    return f"{event}data: {text}\n\n".encode()


def chat_body(count: int = 10_000) -> Body:
    """An OpenAI chat stream of ``abcd`` chunks (one token each, however counted)."""
    return Body(
        [sse(payloads._chunk({"role": "assistant", "content": ""}))],
        lambda i: sse(payloads._chunk({"content": "abcd"})),
        count,
        [sse(payloads._chunk({}, "stop")), sse("[DONE]")],
    )


def responses_body() -> Body:
    started = payloads.response_object("in_progress")
    return Body(
        [sse({"type": "response.created", "sequence_number": 0, "response": started})],
        lambda i: sse(
            {
                "type": "response.output_text.delta",
                "sequence_number": i + 1,
                "item_id": "msg_r1",
                "output_index": 0,
                "content_index": 0,
                "delta": "abcd",
                "logprobs": [],
            }
        ),
    )


def claude_body(count: int = 10_000) -> Body:
    start, block = payloads.anthropic_events()[:2]
    return Body(
        [sse(start, named=True), sse(block, named=True)],
        lambda i: sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "abcd"},
            },
            named=True,
        ),
        count,
    )


def gemini_body() -> Body:
    """Gemini chunks whose running usage reports 3 more output tokens each."""

    def chunk(i: int) -> bytes:
        usage = {"promptTokenCount": 9, "candidatesTokenCount": 3 * (i + 1)}
        body = {
            "candidates": [{"content": {"parts": [{"text": "abc"}], "role": "model"}, "index": 0}],
            "usageMetadata": {**usage, "totalTokenCount": 9 + 3 * (i + 1)},
            "modelVersion": GEMINI,
            "responseId": payloads.GEMINI_ID,
        }
        return f"data: {json.dumps(body)}\r\n\r\n".encode()

    return Body([], chunk)


def serving(body: Body) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda request: body.response(**{"x-request-id": "req_cut"})


def consume(stream: Iterable[Any], into: list[Any] | None = None) -> None:
    for item in stream:
        if into is not None:
            into.append(item)


async def aconsume(stream: AsyncIterable[Any], into: list[Any]) -> None:
    async for item in stream:
        into.append(item)


def cutoff_tracker(sink: RecordingSink, gate: CreditGate) -> Any:
    return gated(sink, gate, prices=OUTPUT_ONLY, gate_default_max_output=LIMIT, gate_cutoff=True)


# --------------------------------------------------------------------------- cut-off


def test_an_openai_stream_is_cut_off_at_its_reservation_and_billed_what_it_generated(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    body = chat_body()
    provider = Provider(answer=serving(body))
    sink = RecordingSink()
    tracker = cutoff_tracker(sink, gate)
    client = tracker.wrap(provider.openai(), customer_id=customer)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    chunks: list[Any] = []
    with pytest.raises(CreditCutoffError) as cut:
        consume(stream, chunks)
    texts = [chunk.choices[0].delta.content for chunk in chunks]
    assert texts == ["", *["abcd"] * LIMIT]  # every chunk that fit was delivered
    assert body.closed and body.served < LIMIT + 5  # the provider was hung up on
    event = sink.only()
    assert event.metadata["status"] == "cut_off"
    assert event.metadata["outputTokens"] == LIMIT
    assert event.metadata["inputTokens"] > 0  # the API reported none: estimated
    error = cut.value
    assert (error.reserved, error.billed, error.output_limit) == (LIMIT, LIMIT, LIMIT)
    assert error.usage.cut_off and error.customer_id == customer
    assert error.status_code == 402 and error.to_dict()["error"]["code"] == "stream_cut_off"
    assert gate.available(customer) == GRANT - LIMIT
    assert tracker.stats.incomplete == 1
    assert list(stream) == []  # finished: nothing more, nothing billed twice
    assert len(sink.events) == 1


@pytest.mark.anyio
async def test_an_async_openai_stream_is_cut_off(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    body = chat_body()
    provider = Provider(answer=serving(body))
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(
        provider.openai(asynchronous=True), customer_id=customer
    )
    stream = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    received: list[Any] = []
    with pytest.raises(CreditCutoffError):
        await aconsume(stream, received)
    assert len(received) == LIMIT + 1
    assert body.closed and body.served < LIMIT + 5
    assert sink.only().metadata["outputTokens"] == LIMIT
    assert gate.available(customer) == GRANT - LIMIT


def test_a_responses_stream_and_the_chat_helper_are_cut_off(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    bodies = [responses_body(), chat_body()]
    provider = Provider(answer=lambda request: bodies[len(provider.requests) - 1].response())
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.openai(), customer_id=customer)
    with pytest.raises(CreditCutoffError):
        consume(client.responses.create(model="gpt-4o", input="hi", stream=True))
    helper = client.chat.completions.stream(model="gpt-4o", messages=MESSAGES)  # type: ignore[arg-type]
    with helper as events, pytest.raises(CreditCutoffError):
        consume(events)
    assert all(body.closed for body in bodies)
    assert [e.metadata["outputTokens"] for e in sink.events] == [LIMIT, LIMIT]
    assert gate.available(customer) == GRANT - 2 * LIMIT


def test_an_anthropic_stream_without_max_tokens_is_cut_off_and_billed_its_reported_input(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    """Anthropic's API requires ``max_tokens`` (which the provider enforces, so its streams
    never need the cut-off); Anthropic-compatible gateways that make it optional do."""
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    body = claude_body()
    provider = Provider(answer=serving(body))
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.anthropic(), customer_id=customer)
    stream = client.messages.create(  # type: ignore[call-overload]
        model=CLAUDE, max_tokens=anthropic.omit, messages=MESSAGES, stream=True
    )
    received: list[Any] = []
    with pytest.raises(CreditCutoffError):
        consume(stream, received)
    assert len(received) == 2 + LIMIT  # message_start, content_block_start, 20 deltas
    assert body.closed
    event = sink.only().metadata
    assert (event["status"], event["outputTokens"]) == ("cut_off", LIMIT)
    assert event["inputTokens"] == 472 + 1024  # reported by message_start: not estimated
    assert event["cachedInputTokens"] == 1024
    assert gate.available(customer) == GRANT - LIMIT


def test_the_cut_off_applies_only_to_requests_without_an_output_limit(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider(answer=lambda request: chat_body(count=3 * LIMIT).response())
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.openai(), customer_id=customer)
    # The provider enforces a limit the request sets (this mock ignores it: not cut anyway).
    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=5, stream=True)
    )  # type: ignore[call-overload]
    assert len(chunks) == 1 + 3 * LIMIT + 1
    # A stream that ends within its reservation is not cut either, and settles its real cost.
    provider.answer = answer_like_the_apis
    list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))  # type: ignore[call-overload]
    assert sink.events[-1].metadata["outputTokens"] == 3
    assert "status" not in sink.events[-1].metadata


def test_a_gemini_stream_is_cut_off_on_the_providers_running_count(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    body = gemini_body()
    provider = Provider(answer=serving(body))
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.genai(), customer_id=customer)
    chunks: list[Any] = []
    with pytest.raises(CreditCutoffError):
        consume(client.models.generate_content_stream(model=GEMINI, contents="hi"), chunks)
    assert [chunk.text for chunk in chunks] == [
        "abc"
    ] * 7  # 3 tokens each: the 7th reaches 21 >= 20
    assert body.closed
    event = sink.only().metadata
    assert (event["inputTokens"], event["outputTokens"], event["status"]) == (9, 21, "cut_off")
    assert gate.available(customer) == GRANT - 21  # exactly what the provider counted


@pytest.mark.anyio
async def test_an_async_gemini_stream_is_cut_off(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    body = gemini_body()
    provider = Provider(answer=serving(body))
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.genai(), customer_id=customer)
    stream = await client.aio.models.generate_content_stream(model=GEMINI, contents="hi")
    received: list[Any] = []
    with pytest.raises(CreditCutoffError):
        await aconsume(stream, received)
    assert len(received) == 7
    assert body.closed and body.served < 7 + 5  # closed now, not at the next cyclic GC
    assert gate.available(customer) == GRANT - 21


# --------------------------------------------------------------------------- how streams end


def test_a_stream_closed_early_settles_what_is_billed(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    hook = Holds(gate, customer, GRANT)
    provider = Provider(during=hook)
    sink = RecordingSink()
    tracker = gated(sink, gate)  # one credit per token
    claude = tracker.wrap(provider.anthropic(), customer_id=customer)
    stream = claude.messages.create(**CLAUDE_ARGS, stream=True)
    events = iter(stream)
    next(events), next(events)  # message_start: the input is known
    assert gate.available(customer) == GRANT - hook.seen[0]  # still held while open
    stream.close()
    assert sink.only().metadata["status"] == "incomplete"
    assert gate.available(customer) == GRANT - (472 + 1024)  # the input billed, no more

    gpt = tracker.wrap(provider.openai(), customer_id=customer)
    hook.before()
    with gpt.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as chat:  # type: ignore[call-overload]
        for _ in chat:
            break  # the API reports nothing before the end: nothing billed
    assert gate.available(customer) == GRANT - (472 + 1024)


def test_a_stream_never_iterated_releases_its_hold_when_collected(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.openai(), customer_id=customer)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    assert gate.available(customer) < GRANT
    del stream
    gc.collect()  # an openai Stream is in a reference cycle: freed by the cyclic collector
    assert gate.available(customer) == GRANT
    assert sink.events == []


def test_a_stream_that_fails_midway_settles_what_was_reported(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    frames = payloads.anthropic_events(error_after_start=True)
    provider = Provider(answer=lambda request: payloads.sse_response(list(frames), named=True))
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.anthropic(), customer_id=customer)
    with pytest.raises(anthropic.APIStatusError):
        list(client.messages.create(**CLAUDE_ARGS, stream=True))
    assert sink.only().metadata["status"] == "incomplete"
    assert gate.available(customer) == GRANT - (472 + 1024)


def test_a_streaming_response_settles_when_parsed_and_releases_when_dropped(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate).wrap(provider.openai(), customer_id=customer)
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES
    ) as raw:  # type: ignore[arg-type]
        raw.parse()
    assert gate.available(customer) == GRANT - 1163
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MESSAGES
    ) as raw:  # type: ignore[arg-type]
        raw.read()  # read as bytes: the tracker bills nothing
    assert gate.available(customer) < GRANT - 1163
    del raw
    gc.collect()
    assert gate.available(customer) == GRANT - 1163
    assert len(sink.events) == 1


def test_a_failing_store_never_breaks_a_stream(
    dodo: DodoClient, credits: str, customer: str, caplog: pytest.LogCaptureFixture
) -> None:
    from .test_gate import BrokenReleaseStore

    grant(dodo, credits, customer, GRANT)
    gate = CreditGate(dodo, credit_entitlement_id=credits, store=BrokenReleaseStore())
    provider = Provider(answer=serving(chat_body()))
    sink = RecordingSink()
    client = cutoff_tracker(sink, gate).wrap(provider.openai(), customer_id=customer)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)  # type: ignore[call-overload]
    with pytest.raises(CreditCutoffError):  # the one error on purpose: the cut-off
        consume(stream)
    assert sink.only().metadata["outputTokens"] == LIMIT
    assert "could not release a hold" in caplog.text
    assert Decimal(0) < gate.available(customer)
