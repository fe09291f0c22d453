"""``dodo-ingest demo``: the whole product, offline, in a few seconds.

Starts the embedded dev server, creates meters and a credit entitlement, runs a short scripted
workload through the real blueprints (wrapped OpenAI and Anthropic clients answered by
:class:`~dodo_ingest.testing.MockLLMTransport`, a metered audio stream, timed GPU jobs),
flushes, and prints the totals the server computed and the customers' credit balances.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx2

if TYPE_CHECKING:
    from rich.console import Console

    from .client import DodoClient
    from .delivery import Ingestion

__all__ = ["DEMO_API_KEY", "run_demo"]

DEMO_API_KEY = "dodo_demo_offline_key"
CUSTOMERS = ("cus_acme", "cus_globex")
TOKENS_PER_CREDIT = 100
GRANTED_CREDITS = 25
PROMPTS = (
    "Summarise the attached quarterly report in three bullet points.",
    "Draft a polite reply declining the meeting on Friday.",
    "Translate 'usage-based billing' into French, German and Japanese.",
    "Suggest five names for a text-to-speech product.",
)
REPLY = (
    "Here is a concise answer prepared by the offline mock model so that every token "
    "in this demo is counted exactly and billed once."
)


@dataclass(frozen=True)
class _Meters:
    tokens: str
    audio: str
    gpu: str
    calls: str


def _create_meters(client: DodoClient) -> _Meters:
    from .client import MeterAggregation

    def create(name: str, event_name: str, unit: str, aggregation: MeterAggregation) -> str:
        meter = client.meters.create(
            name=name, event_name=event_name, measurement_unit=unit, aggregation=aggregation
        )
        return meter.id

    return _Meters(
        tokens=create(
            "LLM tokens", "llm.chat_completion", "tokens", MeterAggregation("sum", "totalTokens")
        ),
        audio=create("Audio streamed", "tts.audio", "bytes", MeterAggregation("sum", "bytes")),
        gpu=create("GPU time", "gpu.render", "seconds", MeterAggregation("sum", "durationSeconds")),
        calls=create("LLM requests", "llm.chat_completion", "requests", MeterAggregation("count")),
    )


def _audio_chunks(seconds: int) -> Iterator[bytes]:
    """Fake 16 kHz 16-bit mono audio, one 32 000-byte chunk per second."""
    for second in range(seconds):
        yield bytes([second % 256]) * 32_000


def _run_workload(ingestion: Ingestion, console: Console) -> dict[str, int]:
    from anthropic import Anthropic
    from openai import OpenAI

    from .blueprints.llm import LLMTracker
    from .blueprints.stream import meter_stream
    from .blueprints.time_range import time_range
    from .testing import MockLLMTransport

    transport = MockLLMTransport(reply=REPLY)
    tracker = LLMTracker(ingestion, event_name="llm.chat_completion")
    # In production: OpenAI() and Anthropic() with your keys; the wrapping is the same.
    openai = tracker.wrap(
        OpenAI(api_key="sk-offline", http_client=httpx2.Client(transport=transport)),
        customer_id="cus_acme",
        metadata={"feature": "assistant"},
    )
    anthropic = tracker.wrap(
        Anthropic(api_key="sk-offline", http_client=httpx2.Client(transport=transport)),
        customer_id="cus_globex",
        metadata={"feature": "support-bot"},
    )

    responses = [
        openai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
        for prompt in PROMPTS
    ]
    stream = openai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPTS[0]}], stream=True
    )
    for _chunk in stream:
        pass
    for prompt in PROMPTS[:2]:
        anthropic.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=256,
            messages=[{"role": "user", "content": prompt}],
        )
    with anthropic.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=256,
        messages=[{"role": "user", "content": PROMPTS[3]}],
    ) as claude_stream:
        for _text in claude_stream.text_stream:
            pass
    console.print(
        f"  [green]✓[/] {tracker.stats.events} LLM calls through wrapped OpenAI and Anthropic clients (2 streamed)"
    )

    for customer_id, seconds in (("cus_acme", 3), ("cus_globex", 5)):
        with meter_stream(ingestion, customer_id, "tts.audio", {"voice": "aria"}) as meter:
            for _audio in meter.wrap(_audio_chunks(seconds)):
                pass
    console.print("  [green]✓[/] 2 audio streams metered byte by byte")

    @time_range(ingestion, customer_id=lambda job: job["customer"], event_name="gpu.render")
    def render(job: dict[str, Any]) -> None:
        time.sleep(job["seconds"])

    for job in (
        {"customer": "cus_acme", "seconds": 0.2},
        {"customer": "cus_globex", "seconds": 0.3},
    ):
        render(job)
    console.print("  [green]✓[/] 2 GPU jobs timed with @time_range")

    # Tracking the same response again derives the same event id: the API ignores it.
    tracker.track(responses[0], customer_id="cus_acme")
    console.print(
        "  [green]✓[/] 1 response tracked a second time (same event id: not billed twice)"
    )
    return {"llm": tracker.stats.events, "failures": tracker.stats.failures}


def run_demo(console: Console, *, faults: str | None = None, seed: int | None = 7) -> int:
    """Run the demo, printing progress and results to ``console``; return the exit code.

    ``faults`` (e.g. ``"5xx=0.3,429=0.1,lost_ack=0.1"``) makes the dev server fail some ingest
    requests on purpose, to show retries keeping the totals exact.
    """
    from rich.table import Table

    from .client import DodoClient
    from .delivery import Ingestion
    from .devserver import DevServer

    started = time.perf_counter()
    server = DevServer(api_key=DEMO_API_KEY, faults=faults, retry_after=0.2, seed=seed)
    with server, DodoClient(DEMO_API_KEY, base_url=server.base_url) as client:
        console.print(
            f"[bold]dodo-ingest demo[/]: dev server on {server.base_url} (SQLite in memory"
            + (f", failing on purpose: {faults}" if faults else "")
            + ")"
        )
        meters = _create_meters(client)
        credits = client.credits.create_entitlement(
            name="AI credits", unit="credits", precision=2, description="1 credit = 100 tokens"
        )
        server.link_meter_to_credits(meters.tokens, credits.id, TOKENS_PER_CREDIT)
        for customer_id in CUSTOMERS:
            client.credits.create_ledger_entry(
                credits.id, customer_id, amount=GRANTED_CREDITS, reason="welcome grant"
            )
        console.print(
            f"  [green]✓[/] 4 meters; entitlement 'AI credits' ({TOKENS_PER_CREDIT} tokens per "
            f"credit), {GRANTED_CREDITS} credits granted to each customer"
        )

        with Ingestion(
            api_key=DEMO_API_KEY, base_url=server.base_url, flush_interval=0.2, retry_max_delay=1.0
        ) as ingestion:
            counts = _run_workload(ingestion, console)
            settled = ingestion.flush(timeout=30)
            stats = ingestion.stats
        server_stats = server.stats
        console.print(
            f"  [green]✓[/] delivered {stats.delivered} events "
            f"({stats.retried} retried, {stats.dead_lettered} dead-lettered, {stats.dropped} "
            f"dropped); the server stored {server_stats['events_ingested']} and ignored "
            f"{server_stats['duplicates_ignored']} duplicates"
        )

        usage = httpx2.get(f"{server.base_url}/_dev/usage", timeout=10).json()["items"]
        table = Table(title="Usage computed by the server")
        for column, justify in (
            ("customer", "left"),
            ("meter", "left"),
            ("value", "right"),
            ("events", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in sorted(usage, key=lambda r: (r["customer_id"], r["meter_name"])):
            table.add_row(
                row["customer_id"],
                row["meter_name"],
                f"{Decimal(row['value']):,} {row['measurement_unit']}",
                str(row["event_count"]),
            )
        console.print(table)

        balances = Table(title="Credit balances (AI credits)")
        for column in ("customer", "granted", "balance", "overage"):
            balances.add_column(column, justify="left" if column == "customer" else "right")
        for customer_id in CUSTOMERS:
            balance = client.credits.balance(credits.id, customer_id)
            balances.add_row(
                customer_id, f"{GRANTED_CREDITS:.2f}", f"{balance.balance}", f"{balance.overage}"
            )
        console.print(balances)

    ok = settled and stats.dead_lettered == 0 and stats.dropped == 0 and counts["failures"] == 0
    elapsed = time.perf_counter() - started
    if ok:
        console.print(f"[bold green]All usage delivered exactly once[/] in {elapsed:.1f} s.")
        return 0
    console.print("[bold red]Some usage was not delivered[/]: see the figures above.")
    return 1
