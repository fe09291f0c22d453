"""The offline demo: its totals are exactly what the workload should bill."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from rich.console import Console

from dodo_ingest._demo import GRANTED_CREDITS, PROMPTS, REPLY, TOKENS_PER_CREDIT, run_demo
from dodo_ingest.testing import count_tokens


def _expected_tokens() -> dict[str, int]:
    reply = len(REPLY.split(" "))
    acme = sum(count_tokens(p) + reply for p in PROMPTS) + count_tokens(PROMPTS[0]) + reply
    globex = sum(count_tokens(p) + reply for p in (PROMPTS[0], PROMPTS[1], PROMPTS[3]))
    return {"cus_acme": acme, "cus_globex": globex}


def _row(output: str, customer: str, meter: str) -> str:
    match = re.search(rf"{customer}\s+│ {meter}\s+│\s+([\d,.]+) \w+ │\s+(\d+)", output)
    assert match, f"no row for {customer}/{meter} in:\n{output}"
    return match.group(1).replace(",", "")


@pytest.mark.parametrize("faults", [None, "5xx=0.2,429=0.1,lost_ack=0.1"])
def test_demo_bills_the_workload_exactly(faults: str | None) -> None:
    console = Console(record=True, width=120, force_terminal=False)
    assert run_demo(console, faults=faults) == 0
    output = console.export_text()
    tokens = _expected_tokens()
    for customer, expected in tokens.items():
        assert int(_row(output, customer, "LLM tokens")) == expected
        credits_left = Decimal(GRANTED_CREDITS) - Decimal(expected) / TOKENS_PER_CREDIT
        assert re.search(
            rf"{customer}\s+│\s+25.00 │\s+{credits_left.quantize(Decimal('0.01'))} │", output
        )
    assert int(_row(output, "cus_acme", "LLM requests")) == 5
    assert int(_row(output, "cus_globex", "LLM requests")) == 3
    assert int(_row(output, "cus_acme", "Audio streamed")) == 3 * 32_000
    assert int(_row(output, "cus_globex", "Audio streamed")) == 5 * 32_000
    assert Decimal(_row(output, "cus_acme", "GPU time")) >= Decimal("0.2")
    assert "All usage delivered exactly once" in output
    assert re.search(r"the server stored 12 and ignored [1-9]\d* duplicates", output)
