"""Gated calls racing for one customer's credits, from threads and from asyncio tasks: the
provider holds every admitted request open until all have been decided, so every admitted
hold is live at once and the gate alone bounds how many get through."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx2
import pytest

from dodo_ingest import AsyncDodoClient, CreditGate, DodoClient, InsufficientCreditsError
from dodo_ingest.devserver import DevServer

from . import payloads
from .conftest import RecordingSink
from .test_gate import (
    API_KEY,
    MESSAGES,
    OUTPUT_ONLY,
    Provider,
    credits,
    customer,
    dodo,
    gated,
    grant,
    server,
)

__all__ = ["credits", "customer", "dodo", "server"]  # fixtures shared with test_gate.py

CALLERS = 25
BALANCE = 50
MAX_TOKENS = 5
"""Each call reserves exactly 5 credits (one per output token, input free): 10 fit in 50."""
USAGE = {"prompt_tokens": 3, "completion_tokens": MAX_TOKENS, "total_tokens": 3 + MAX_TOKENS}


def _completion() -> httpx2.Response:
    return payloads.json_response(payloads.chat_completion(usage=USAGE))


def test_threads_never_admit_more_than_the_balance(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, BALANCE)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    decided = threading.Condition()
    release = threading.Event()
    counts = {"arrived": 0, "refused": 0, "answered": 0}

    def answer(request: httpx2.Request) -> httpx2.Response:
        with decided:
            counts["arrived"] += 1
            decided.notify_all()
        assert release.wait(30), "never released"
        return _completion()

    provider = Provider(answer=answer)
    sink = RecordingSink()
    client = gated(sink, gate, prices=OUTPUT_ONLY).wrap(provider.openai(), customer_id=customer)
    start = threading.Barrier(CALLERS)

    def call() -> None:
        start.wait(30)
        try:
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=MAX_TOKENS)  # type: ignore[arg-type]
        except InsufficientCreditsError:
            with decided:
                counts["refused"] += 1
                decided.notify_all()
        else:
            with decided:
                counts["answered"] += 1

    threads = [threading.Thread(target=call) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    with decided:
        all_decided = decided.wait_for(
            lambda: counts["arrived"] + counts["refused"] == CALLERS, timeout=30
        )
    release.set()
    for thread in threads:
        thread.join(30)
    assert all_decided, counts
    assert counts == {"arrived": 10, "refused": 15, "answered": 10}
    assert len(provider.requests) == 10  # refused calls never reached the provider
    assert len(sink.events) == 10
    assert gate.available(customer) == 0  # 10 calls x 5 credits settled
    assert gate.stats.balance_reads == 1


@pytest.mark.anyio
async def test_asyncio_tasks_never_admit_more_than_the_balance(
    server: DevServer, dodo: DodoClient, credits: str, customer: str
) -> None:
    grant(dodo, credits, customer, BALANCE)
    all_decided = asyncio.Event()
    release = asyncio.Event()
    counts = {"arrived": 0, "refused": 0}

    def check() -> None:
        if counts["arrived"] + counts["refused"] == CALLERS:
            all_decided.set()

    async def answer(request: httpx2.Request) -> httpx2.Response:
        counts["arrived"] += 1
        check()
        await release.wait()
        return _completion()

    async with AsyncDodoClient(api_key=API_KEY, base_url=server.base_url) as adodo:
        gate = CreditGate(adodo, credit_entitlement_id=credits)
        provider = Provider(answer=answer)
        sink = RecordingSink()
        client = gated(sink, gate, prices=OUTPUT_ONLY).wrap(
            provider.openai(asynchronous=True), customer_id=customer
        )

        async def call() -> None:
            try:
                await client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=MAX_TOKENS
                )
            except InsufficientCreditsError:
                counts["refused"] += 1
                check()

        tasks = [asyncio.create_task(call()) for _ in range(CALLERS)]
        await asyncio.wait_for(all_decided.wait(), timeout=30)
        release.set()
        await asyncio.gather(*tasks)
        assert counts == {"arrived": 10, "refused": 15}
        assert len(provider.requests) == 10 and len(sink.events) == 10
        assert await gate.aavailable(customer) == 0


@pytest.mark.anyio
async def test_open_streams_hold_their_credits_until_they_end(
    dodo: DodoClient, credits: str, customer: str
) -> None:
    """Streams answered at once but consumed later keep their holds in the meantime."""
    grant(dodo, credits, customer, BALANCE)
    gate = CreditGate(dodo, credit_entitlement_id=credits)
    provider = Provider()
    sink = RecordingSink()
    client = gated(sink, gate, prices=OUTPUT_ONLY).wrap(
        provider.openai(asynchronous=True), customer_id=customer
    )
    streams: list[Any] = []
    refused = 0
    for _ in range(CALLERS):
        try:
            streams.append(
                await client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, max_tokens=MAX_TOKENS, stream=True
                )
            )
        except InsufficientCreditsError:
            refused += 1
    assert (len(streams), refused) == (10, 15)
    assert len(provider.requests) == 10
    for stream in streams:
        async for _ in stream:
            pass
    # Each stream settled its real cost (3 output tokens), the unused rest of its hold freed.
    assert await gate.aavailable(customer) == BALANCE - 10 * 3
    assert [e.metadata["outputTokens"] for e in sink.events] == [3] * 10
